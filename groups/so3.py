"""Rotations SO(3) acting on the sphere S^2: the head movements of the paper's SLANTM."""

from __future__ import annotations

import math

import torch

from manifolds import Sphere
from manifolds._normalize import unit_vectors
from manifolds._random import random_tensor

from .base import LieGroup
from .numerics import HALF_ANGLE_COS, HALF_ANGLE_SINC, AngleBound, series, small_angle_mask, soft_unit_axis, where_not


class SO3(LieGroup, name="so3"):
    """3-D rotations acting on unit vectors of R^3.

    Elements are unit quaternions (w, x, y, z); q and -q are the same rotation, and `log` picks the
    representative with w >= 0, so it returns a rotation vector of angle at most pi. The algebra is the
    rotation vector (axis times angle), and `act(exp(theta * axis), x)` is Rodrigues' formula of the paper.

    `from_controller` takes 4 numbers: an axis (normalised from the first three) and an angle tanh(z), times a
    learnable bound pi * sigmoid(b - 5) when `angle_bound=True`. `distance` picks the sphere's metric.
    """

    def __init__(self, angle_bound: bool = False, distance: str = "chordal"):
        space = Sphere(3, distance=distance)
        super().__init__(space, algebra_dim=3, element_shape=(4,), controller_dim=4, injectivity_radius=math.pi)
        self.angle = AngleBound(learnable=angle_bound)

    KERNEL_MOVE = "rotation"

    def kernel_move(self) -> str | None:
        """The kernels' rotation, which has no learnable bound to differentiate."""
        return None if self.angle.learnable else super().kernel_move()

    def exp(self, xi):
        """The unit quaternion (cos(theta/2), sin(theta/2) xi / theta) with theta = |xi|."""
        self._check_trailing(xi, 3, "exp's argument")
        theta_sq = xi.square().sum(dim=-1, keepdim=True)
        small = small_angle_mask(theta_sq)
        theta = torch.sqrt(where_not(small, theta_sq))
        real = torch.where(small, series(HALF_ANGLE_COS, theta_sq), torch.cos(theta / 2))
        factor = torch.where(small, series(HALF_ANGLE_SINC, theta_sq), torch.sin(theta / 2) / theta)
        return torch.cat((real, factor * xi), dim=-1)

    def log(self, g):
        """The rotation vector of `g`, of angle in [0, pi]; correct near the identity and near pi."""
        self._check_element(g)
        g = torch.where(g[..., :1] < 0, -g, g)
        real, vec = g[..., :1], g[..., 1:]
        vec_sq = vec.square().sum(dim=-1, keepdim=True)
        small = small_angle_mask(vec_sq)
        vec_norm = torch.sqrt(where_not(small, vec_sq))
        # 2 atan(x) / (x w) with x = |v| / w, and its series 2 / w (1 - x^2 / 3 + x^4 / 5) near x = 0.
        real_safe = where_not(~small, real)
        ratio_sq = vec_sq / real_safe.square()
        taylor = 2 / real_safe * (1 - ratio_sq / 3 + ratio_sq.square() / 5)
        factor = torch.where(small, taylor, 2 * torch.atan2(vec_norm, real) / vec_norm)
        return factor * vec

    def compose(self, g, h):
        """The quaternion (Hamilton) product."""
        self._check_element(g)
        self._check_element(h)
        g, h = torch.broadcast_tensors(g, h)
        g_real, g_vec = g[..., :1], g[..., 1:]
        h_real, h_vec = h[..., :1], h[..., 1:]
        real = g_real * h_real - (g_vec * h_vec).sum(dim=-1, keepdim=True)
        vec = g_real * h_vec + h_real * g_vec + torch.linalg.cross(g_vec, h_vec)
        return torch.cat((real, vec), dim=-1)

    def inverse(self, g):
        """The conjugate quaternion."""
        self._check_element(g)
        return torch.cat((g[..., :1], -g[..., 1:]), dim=-1)

    def act(self, g, x):
        """Rotate `x`: x + w t + v x t with t = 2 v x x."""
        self._check_element(g)
        self._check_trailing(x, 3, "keys")
        real, vec = g[..., :1], g[..., 1:]
        vec, x = torch.broadcast_tensors(vec, x)
        twice_cross = 2 * torch.linalg.cross(vec, x)
        return x + real * twice_cross + torch.linalg.cross(vec, twice_cross)

    def interpolate(self, g0, g1, r):
        """Spherical linear interpolation of quaternions: the exact geodesic, in closed form.

        Equal to g0 . exp(r log(g0^-1 g1)) but needs no group products: a0 q0 + a1 q1 with
        a_c = sin(c Omega) / sin(Omega), Omega half the rotation angle between g0 and g1.
        """
        self._check_element(g0)
        self._check_element(g1)
        if isinstance(r, torch.Tensor):
            r = r.to(device=g0.device, dtype=g0.dtype).unsqueeze(-1)
        g1 = torch.where((g0 * g1).sum(dim=-1, keepdim=True) < 0, -g1, g1)  # the shorter of the two arcs
        chord = torch.linalg.vector_norm(g1 - g0, dim=-1, keepdim=True)
        omega = 2 * torch.atan2(chord, torch.linalg.vector_norm(g1 + g0, dim=-1, keepdim=True))
        omega_sq = omega.square()
        small = small_angle_mask(omega_sq)
        sin_omega = torch.sin(where_not(small, omega))

        def weight(c):  # sin(c Omega) / sin(Omega), and its series in Omega^2 near 0
            c_sq = c * c
            series = c * (1 - (c_sq - 1) * omega_sq / 6 + (3 * c_sq * c_sq - 10 * c_sq + 7) * omega_sq.square() / 360)
            return torch.where(small, series, torch.sin(c * omega) / sin_omega)

        return weight(1 - r) * g0 + weight(r) * g1

    def from_controller(self, raw):
        """exp(axis * angle), axis from raw[..., :3], angle from raw[..., 3]."""
        self._check_trailing(raw, 4, "controller output")
        return self.exp(soft_unit_axis(raw[..., :3]) * self.angle(raw[..., 3:]))

    def check(self, g):
        """Raise `ValueError` unless `g` holds unit quaternions."""
        super().check(g)
        self._check_unit(g, "the quaternion")

    def identity(self, *batch, dtype=None, device=None):
        """The quaternion (1, 0, 0, 0)."""
        element = torch.zeros(*batch, 4, dtype=dtype, device=device)
        element[..., 0] = 1
        return element

    def random(self, *batch, dtype=None, device=None, generator=None):
        """Rotations uniformly distributed on SO(3) (normalised Gaussian quaternions)."""
        normal = random_tensor((*batch, 4), dtype=dtype, device=device, generator=generator)
        return unit_vectors(normal, self.identity(dtype=normal.dtype, device=normal.device))

    def extra_repr(self) -> str:
        return f"angle_bound={self.angle.learnable}, distance={self.key_space.distance!r}"
