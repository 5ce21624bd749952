"""Rigid motions SE(2) of the plane: rotations and translations acting on R^2."""

from __future__ import annotations

import math

import torch

from manifolds import Euclidean
from manifolds._random import random_tensor

from .base import LieGroup
from .numerics import AngleBound, bounded_vector, small_angle_mask, where_not


def _rotate(cos: torch.Tensor, sin: torch.Tensor, x: torch.Tensor, y: torch.Tensor):
    return cos * x - sin * y, sin * x + cos * y


def _exp_parts(vx, vy, theta):
    """Components (cos, sin, t_x, t_y) of exp(v_x, v_y, theta)."""
    theta_sq = theta.square()
    small = small_angle_mask(theta_sq)
    theta_safe = where_not(small, theta)
    half_sin = torch.sin(theta_safe / 2)
    sinc = torch.where(small, 1 - theta_sq / 6 + theta_sq.square() / 120, torch.sin(theta_safe) / theta_safe)
    cosc = torch.where(  # (1 - cos theta) / theta, written without cancellation
        small, theta * (0.5 - theta_sq / 24 + theta_sq.square() / 720), 2 * half_sin.square() / theta_safe
    )
    return (torch.cos(theta), torch.sin(theta), *_rotate(sinc, cosc, vx, vy))


def _log_parts(cos, sin, tx, ty):
    """Algebra components (v_x, v_y, theta) of the element (cos, sin, t_x, t_y)."""
    theta = torch.atan2(sin, cos)
    half = theta / 2
    theta_sq = theta.square()
    small = small_angle_mask(theta_sq)
    half_tan = torch.tan(where_not(small, half))
    # alpha = (theta / 2) cot(theta / 2), the diagonal of V^-1.
    alpha = torch.where(small, 1 - theta_sq / 12 - theta_sq.square() / 720, half / half_tan)
    return (*_rotate(alpha, -half, tx, ty), theta)


class SE2(LieGroup, name="se2"):
    """Planar rigid motions x -> R(theta) x + t acting on `Euclidean(2)`.

    Elements are (cos theta, sin theta, t_x, t_y); the algebra is (v_x, v_y, omega), as in jaxlie.
    `from_controller` takes 3 numbers: a translation bounded like the paper's, a / sqrt(1 + |a|^2), and an
    angle tanh(z), times a learnable bound pi * sigmoid(b - 5) when `angle_bound=True`.
    """

    def __init__(self, angle_bound: bool = False):
        super().__init__(Euclidean(2), algebra_dim=3, element_shape=(4,), controller_dim=3, injectivity_radius=math.pi)
        self.angle = AngleBound(learnable=angle_bound)

    def exp(self, xi):
        """Rotation by omega and translation V(omega) v, V the integrated rotation."""
        self._check_trailing(xi, 3, "exp's argument")
        return torch.stack(_exp_parts(*xi.unbind(dim=-1)), dim=-1)

    def log(self, g):
        """(V(theta)^-1 t, theta) with theta in [-pi, pi]."""
        self._check_element(g)
        return torch.stack(_log_parts(*g.unbind(dim=-1)), dim=-1)

    def interpolate(self, g0, g1, r):
        """g0 . exp(r log(g0^-1 g1)), computed on the components without building intermediate elements."""
        self._check_element(g0)
        self._check_element(g1)
        c0, s0, x0, y0 = g0.unbind(dim=-1)
        c1, s1, x1, y1 = g1.unbind(dim=-1)
        if isinstance(r, torch.Tensor):
            r = r.to(device=g0.device, dtype=g0.dtype)
        # g0^-1 g1 = (R0^T R1, R0^T (t1 - t0))
        delta = (*_rotate(c0, -s0, c1, s1), *_rotate(c0, -s0, x1 - x0, y1 - y0))
        vx, vy, theta = _log_parts(*delta)
        c, s, tx, ty = _exp_parts(r * vx, r * vy, r * theta)
        cos, sin = _rotate(c0, s0, c, s)
        tx, ty = _rotate(c0, s0, tx, ty)
        return torch.stack((cos, sin, tx + x0, ty + y0), dim=-1)

    def compose(self, g, h):
        """(R_g R_h, R_g t_h + t_g)."""
        self._check_element(g)
        self._check_element(h)
        gc, gs, gx, gy = g.unbind(dim=-1)
        hc, hs, hx, hy = h.unbind(dim=-1)
        cos, sin = _rotate(gc, gs, hc, hs)
        tx, ty = _rotate(gc, gs, hx, hy)
        return torch.stack((cos, sin, tx + gx, ty + gy), dim=-1)

    def inverse(self, g):
        """(R^T, -R^T t)."""
        self._check_element(g)
        cos, sin, tx, ty = g.unbind(dim=-1)
        ix, iy = _rotate(cos, -sin, tx, ty)
        return torch.stack((cos, -sin, -ix, -iy), dim=-1)

    def act(self, g, x):
        """R x + t."""
        self._check_element(g)
        self._check_trailing(x, 2, "keys")
        cos, sin, tx, ty = g.unbind(dim=-1)
        rx, ry = _rotate(cos, sin, x[..., 0], x[..., 1])
        return torch.stack((rx + tx, ry + ty), dim=-1)

    def from_controller(self, raw):
        """A bounded translation from raw[..., :2] after a rotation by the bounded angle of raw[..., 2]."""
        self._check_trailing(raw, 3, "controller output")
        shift = bounded_vector(raw[..., :2])
        angle = self.angle(raw[..., 2])
        return torch.cat((torch.cos(angle)[..., None], torch.sin(angle)[..., None], shift), dim=-1)

    def check(self, g):
        """Raise `ValueError` unless the rotation part (cos, sin) of `g` has unit norm."""
        super().check(g)
        self._check_unit(g[..., :2], "the rotation (cos, sin)")

    def random(self, *batch, dtype=None, device=None, generator=None):
        """A uniform rotation angle and a standard normal translation."""
        unit = random_tensor(batch, uniform=True, dtype=dtype, device=device, generator=generator)
        angle = (2 * unit - 1) * math.pi
        shift = random_tensor((*batch, 2), dtype=dtype, device=device, generator=generator)
        return torch.stack((torch.cos(angle), torch.sin(angle), shift[..., 0], shift[..., 1]), dim=-1)

    def extra_repr(self) -> str:
        return f"angle_bound={self.angle.learnable}"
