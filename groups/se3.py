"""Rigid motions SE(3) of space: rotations and translations acting on R^3."""

from __future__ import annotations

import math

import torch

from manifolds import Euclidean
from manifolds._random import random_tensor

from .base import LieGroup
from .numerics import bounded_vector, small_angle_mask, where_not
from .so3 import SO3

# Series in theta^2 near 0 of B = (1 - cos theta) / theta^2, C = (theta - sin theta) / theta^3 (the left Jacobian
# V = I + B W + C W^2, W the cross-product matrix of the rotation vector) and D = (1 - (theta / 2) cot(theta / 2))
# / theta^2 (its inverse, V^-1 = I - W / 2 + D W^2).
_B_SERIES = (1 / 2, -1 / 24, 1 / 720)
_C_SERIES = (1 / 6, -1 / 120, 1 / 5040)
_D_SERIES = (1 / 12, 1 / 720, 1 / 30240)


def _series(coefficients, theta_sq):
    a, b, c = coefficients
    return a + theta_sq * (b + theta_sq * c)


def _apply(omega, v, first, second):
    """v + first * (omega x v) + second * (omega x (omega x v))."""
    cross = torch.linalg.cross(omega, v)
    return v + first * cross + second * torch.linalg.cross(omega, cross)


class SE3(LieGroup, name="se3"):
    """Rigid motions x -> R x + t acting on `Euclidean(3)`.

    Elements are (q, t): a unit quaternion (w, x, y, z) as in `SO3`, then the translation, 7 numbers. The algebra
    is (v, omega), translation part first, as in jaxlie: exp(v, omega) rotates by the rotation vector omega and
    translates by V(omega) v, V the integrated rotation. `from_controller` takes 7 numbers: a translation bounded
    like the paper's, a / sqrt(1 + |a|^2), from the first three, and `SO3.from_controller`'s axis and angle from
    the other four (with a learnable angle bound when `angle_bound=True`).
    """

    def __init__(self, angle_bound: bool = False):
        super().__init__(Euclidean(3), algebra_dim=6, element_shape=(7,), controller_dim=7, injectivity_radius=math.pi)
        self.rotation = SO3(angle_bound=angle_bound)

    def exp(self, xi):
        """(exp(omega), V(omega) v), with the series of V's coefficients near the identity."""
        self._check_trailing(xi, 6, "exp's argument")
        v, omega = xi[..., :3], xi[..., 3:]
        theta_sq = omega.square().sum(dim=-1, keepdim=True)
        small = small_angle_mask(theta_sq)
        safe_sq = where_not(small, theta_sq)  # the unselected branches must stay finite in the backward pass too
        theta = torch.sqrt(safe_sq)
        first = torch.where(small, _series(_B_SERIES, theta_sq), 2 * torch.sin(theta / 2).square() / safe_sq)
        second = torch.where(small, _series(_C_SERIES, theta_sq), (theta - torch.sin(theta)) / (safe_sq * theta))
        return torch.cat((self.rotation.exp(omega), _apply(omega, v, first, second)), dim=-1)

    def log(self, g):
        """(V(omega)^-1 t, omega), omega the rotation vector of angle in [0, pi] (`SO3.log`, exact near pi)."""
        self._check_element(g)
        omega = self.rotation.log(g[..., :4])
        theta_sq = omega.square().sum(dim=-1, keepdim=True)
        small = small_angle_mask(theta_sq)
        half = torch.sqrt(where_not(small, theta_sq)) / 2
        # (theta / 2) cot(theta / 2) as cos / sin of the half angle: defined up to theta = pi, where it is 0.
        half_cot = half * torch.cos(half) / torch.sin(half)
        third = torch.where(small, _series(_D_SERIES, theta_sq), (1 - half_cot) / where_not(small, theta_sq))
        return torch.cat((_apply(omega, g[..., 4:], -0.5, third), omega), dim=-1)

    def compose(self, g, h):
        """(q_g q_h, R_g t_h + t_g)."""
        self._check_element(g)
        self._check_element(h)
        rotation = self.rotation.compose(g[..., :4], h[..., :4])
        return torch.cat((rotation, self.rotation.act(g[..., :4], h[..., 4:]) + g[..., 4:]), dim=-1)

    def inverse(self, g):
        """(q*, -R^T t)."""
        self._check_element(g)
        conjugate = self.rotation.inverse(g[..., :4])
        return torch.cat((conjugate, -self.rotation.act(conjugate, g[..., 4:])), dim=-1)

    def act(self, g, x):
        """R x + t."""
        self._check_element(g)
        self._check_trailing(x, 3, "keys")
        return self.rotation.act(g[..., :4], x) + g[..., 4:]

    def from_controller(self, raw):
        """The rotation of `SO3.from_controller` (raw[..., 3:]), then a bounded translation (raw[..., :3])."""
        self._check_trailing(raw, 7, "controller output")
        return torch.cat((self.rotation.from_controller(raw[..., 3:]), bounded_vector(raw[..., :3])), dim=-1)

    def check(self, g):
        """Raise `ValueError` unless the rotation part of `g` is a unit quaternion."""
        super().check(g)
        self._check_unit(g[..., :4], "the rotation's quaternion")

    def identity(self, *batch, dtype=None, device=None):
        """The quaternion (1, 0, 0, 0) and no translation."""
        element = torch.zeros(*batch, 7, dtype=dtype, device=device)
        element[..., 0] = 1
        return element

    def random(self, *batch, dtype=None, device=None, generator=None):
        """A uniform rotation and a standard normal translation."""
        rotation = self.rotation.random(*batch, dtype=dtype, device=device, generator=generator)
        shift = random_tensor((*batch, 3), dtype=rotation.dtype, device=rotation.device, generator=generator)
        return torch.cat((rotation, shift), dim=-1)

    def extra_repr(self) -> str:
        return f"angle_bound={self.rotation.angle.learnable}"
