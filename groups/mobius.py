"""Möbius transformations PSU(1,1) of the Poincaré disk: its orientation-preserving isometries, ≅ PSL(2, R)."""

from __future__ import annotations

import math

import torch

from manifolds import PoincareBall
from manifolds._normalize import power_of_two_scale
from manifolds._random import random_tensor
from manifolds._tolerance import check_tolerance
from manifolds.poincare import clip_to_ball, interior_margin

from .base import LieGroup
from .numerics import AngleBound, bounded_vector, series, small_angle_mask, where_not

# With D = |beta|^2 - theta^2, exp's coefficients are c(D) = cosh sqrt(D) and s(D) = sinh sqrt(D) / sqrt(D) (cos and
# sin of sqrt(-D) where D < 0), entire functions of D; near D = 0 they are summed as series. log inverts s:
# 1 / s = asinh(sqrt(Q)) / sqrt(Q), or asin(sqrt(-Q)) / sqrt(-Q), with Q = D s^2; both are one series in Q.
# Below the switch (|D| < 1e-3 in float32, 1e-6 in float64) the cubic terms fall under the rounding.
_COSH_SERIES = (1.0, 1.0 / 2.0, 1.0 / 24.0)
_SINHC_SERIES = (1.0, 1.0 / 6.0, 1.0 / 120.0)
_INVERSE_SINHC_SERIES = (1.0, -1.0 / 6.0, 3.0 / 40.0)


def _multiply(ar, ai, br, bi):
    """The complex product (ar + i ai)(br + i bi), as its real and imaginary parts."""
    return ar * br - ai * bi, ar * bi + ai * br


def _coefficients(delta: torch.Tensor):
    """c(delta) and s(delta) of the comment above, finite with finite gradients for every finite delta."""
    small = small_angle_mask(delta.abs())
    safe = where_not(small, delta)
    hyperbolic = safe > 0
    # Each closed form gets the argument only where it is selected: cosh of a large unselected root would be
    # infinite, and its gradient, multiplied by the where's zero, NaN.
    root_h = torch.sqrt(torch.where(hyperbolic, safe, 1.0))
    root_t = torch.sqrt(torch.where(hyperbolic, 1.0, -safe))
    c = torch.where(hyperbolic, torch.cosh(root_h), torch.cos(root_t))
    s = torch.where(hyperbolic, torch.sinh(root_h) / root_h, torch.sin(root_t) / root_t)
    return (
        torch.where(small, series(_COSH_SERIES, delta), c),
        torch.where(small, series(_SINHC_SERIES, delta), s),
    )


class Mobius(LieGroup, name="mobius"):
    """z -> (a z + b) / (conj(b) z + conj(a)) with |a|^2 - |b|^2 = 1, acting on `PoincareBall(2)`.

    An element is the matrix [[a, b], [conj(b), conj(a)]] of SU(1, 1), stored as (Re a, Im a, Re b, Im b); g and -g
    are the same transformation, and `log` picks the representative with Re a >= 0. The algebra is
    (theta, Re beta, Im beta), for [[i theta, beta], [conj(beta), -i theta]]: exp(theta, 0, 0) rotates the disk about
    its centre by 2 theta, and exp(0, t, 0) moves the centre to tanh(t), at hyperbolic distance 2 t. `log` inverts
    `exp` for |xi| < pi / 2 (a rotation by less than pi).

    `from_controller` takes 3 numbers: a rotation about the centre by tanh(z) (times a learnable bound pi *
    sigmoid(b - 5) when `angle_bound=True`) from the last, then a hyperbolic translation whose length is the
    paper's bounded step, |a| / sqrt(1 + |a|^2) < 1, from the first two. The action keeps keys strictly inside the
    disk: points that a transformation sends so far out that floating point cannot tell them from the circle
    (`manifolds.poincare.INTERIOR_MARGIN`) are set at that margin.
    """

    def __init__(self, angle_bound: bool = False):
        space = PoincareBall(2)
        super().__init__(space, algebra_dim=3, element_shape=(4,), controller_dim=3, injectivity_radius=math.pi / 2)
        self.angle = AngleBound(learnable=angle_bound)

    def exp(self, xi):
        """a = c + i theta s, b = beta s, with c and s functions of |beta|^2 - theta^2 (series near 0)."""
        self._check_trailing(xi, 3, "exp's argument")
        theta, beta_r, beta_i = xi.unbind(dim=-1)
        c, s = _coefficients(beta_r.square() + beta_i.square() - theta.square())
        return torch.stack((c, theta * s, beta_r * s, beta_i * s), dim=-1)

    def log(self, g):
        """(theta, beta) = (Im a, b) / s, with 1 / s from Q = Re(a)^2 - 1 (series near 0); exact up to Re a = 0."""
        self._check_element(g)
        g = torch.where(g[..., :1] < 0, -g, g)
        ar, ai, br, bi = g.unbind(dim=-1)
        q = (ar - 1) * (ar + 1)  # sinh^2 or -sin^2 of the half-length; exact where Re a is near 1
        small = small_angle_mask(q.abs())
        safe = where_not(small, q)
        hyperbolic = safe > 0
        # acosh(Re a) / sqrt(Q), with sqrt(Q) as a product of roots: Q itself overflows in float32 for translations
        # longer than 89. atan2(sin, cos) rather than asin: well conditioned up to a half turn, where Re a = 0.
        ar_h = torch.where(hyperbolic & ~small, ar, 2.0)
        root_h = torch.sqrt(ar_h - 1) * torch.sqrt(ar_h + 1)
        root_t = torch.sqrt(torch.where(hyperbolic, 1.0, -safe))
        inverse_s = torch.where(hyperbolic, torch.acosh(ar_h) / root_h, torch.atan2(root_t, ar) / root_t)
        inverse_s = torch.where(small, series(_INVERSE_SINHC_SERIES, q), inverse_s)
        return torch.stack((ai, br, bi), dim=-1) * inverse_s.unsqueeze(-1)

    def compose(self, g, h):
        """The matrix product: a = a_g a_h + b_g conj(b_h), b = a_g b_h + b_g conj(a_h)."""
        self._check_element(g)
        self._check_element(h)
        gar, gai, gbr, gbi = g.unbind(dim=-1)
        har, hai, hbr, hbi = h.unbind(dim=-1)
        a1, a2 = _multiply(gar, gai, har, hai), _multiply(gbr, gbi, hbr, -hbi)
        b1, b2 = _multiply(gar, gai, hbr, hbi), _multiply(gbr, gbi, har, -hai)
        return torch.stack((a1[0] + a2[0], a1[1] + a2[1], b1[0] + b2[0], b1[1] + b2[1]), dim=-1)

    def inverse(self, g):
        """(conj(a), -b)."""
        self._check_element(g)
        return torch.cat((g[..., :1], -g[..., 1:]), dim=-1)

    def act(self, g, x):
        """(a z + b) / (conj(b) z + conj(a)) for z = x_1 + i x_2, kept strictly inside the disk."""
        self._check_element(g)
        self._check_trailing(x, 2, "keys")
        # g and g / r act alike for real r; shrinking by a power of two keeps |den|^2 finite for far translations
        # (entries past 1e19 in float32) and changes no rounding anywhere else.
        ar, ai, br, bi = (g / power_of_two_scale(g)).unbind(dim=-1)
        zr, zi = x.unbind(dim=-1)
        num_r, num_i = _multiply(ar, ai, zr, zi)
        den_r, den_i = _multiply(br, -bi, zr, zi)
        num_r, num_i, den_r, den_i = num_r + br, num_i + bi, den_r + ar, den_i - ai
        # num / den = num conj(den) / |den|^2; |den| >= |a| - |b| |z| > 0 inside the disk.
        out_r, out_i = _multiply(num_r, num_i, den_r, -den_i)
        size = den_r.square() + den_i.square()
        moved = torch.stack((out_r / size, out_i / size), dim=-1)
        return clip_to_ball(moved, 1 - interior_margin(moved.dtype))

    def from_controller(self, raw):
        """A rotation by the bounded angle of raw[..., 2], then a translation of bounded length along raw[..., :2]."""
        self._check_trailing(raw, 3, "controller output")
        step = bounded_vector(raw[..., :2])  # the translation's hyperbolic length is |step| = 2 |beta|
        translation = self.exp(torch.cat((torch.zeros_like(step[..., :1]), step / 2), dim=-1))
        half = self.angle(raw[..., 2]) / 2
        return self.compose(translation, self._rotation(half))

    def _rotation(self, half_angle: torch.Tensor) -> torch.Tensor:
        """The rotation about the centre by twice `half_angle`: a = exp(i half_angle), b = 0."""
        zero = torch.zeros_like(half_angle)
        return torch.stack((torch.cos(half_angle), torch.sin(half_angle), zero, zero), dim=-1)

    def check(self, g):
        """Raise `ValueError` unless |a|^2 - |b|^2 = 1, to the dtype's tolerance relative to |a|^2."""
        super().check(g)
        if g.device.type == "meta" or g.numel() == 0:
            return
        a_sq = g[..., :2].square().sum(dim=-1)
        error = ((a_sq - g[..., 2:].square().sum(dim=-1) - 1).abs() / a_sq).max()
        if error > check_tolerance(g.dtype):
            raise ValueError(f"{self!r}: not a group element, |a|^2 - |b|^2 is off 1 by {float(error):.3g} relative")

    def identity(self, *batch, dtype=None, device=None):
        """a = 1, b = 0."""
        element = torch.zeros(*batch, 4, dtype=dtype, device=device)
        element[..., 0] = 1
        return element

    def random(self, *batch, dtype=None, device=None, generator=None):
        """A uniform rotation about the centre, then the translation taking the centre to a random key."""
        unit = random_tensor(batch, uniform=True, dtype=dtype, device=device, generator=generator)
        rotation = self._rotation((2 * unit - 1) * (math.pi / 2))
        point = self.key_space.random(*batch, dtype=rotation.dtype, device=rotation.device, generator=generator)
        # The translation taking 0 to p is [[1, p], [conj(p), 1]] / sqrt(1 - |p|^2).
        scale = torch.rsqrt(1 - point.square().sum(dim=-1, keepdim=True))
        one = torch.ones_like(point[..., :1])
        translation = torch.cat((one, torch.zeros_like(one), point), dim=-1) * scale
        return self.compose(translation, rotation)

    def extra_repr(self) -> str:
        return f"angle_bound={self.angle.learnable}"
