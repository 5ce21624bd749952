"""Hyperbolic key space: the Poincaré ball of curvature -1, the open unit ball of R^n."""

from __future__ import annotations

import geoopt
import torch

from ._normalize import power_of_two_scale
from ._random import random_tensor
from .base import KeySpace, _require_int

# How close to the unit sphere `project` puts a key. Hyperbolic space grows exponentially, so the ball's boundary
# is at infinite distance and points near it are where floating point runs out: a key at Euclidean norm 1 - m lies
# at hyperbolic distance about ln(2 / m) from the centre, and 1 - |x|^2, which every distance divides by, is known
# only to the rounding of |x|^2. At margin 1e-3 (distance 7.6) it is known to a few parts in 1e5 in float32;
# at 1e-5, two correct float32 computations of the same read parted by 0.3%, and their gradients with them. The
# margin is the same in float32 and float64, so that a model is the same function in both.
BOUNDARY_MARGIN = {torch.float64: 1e-3, torch.float32: 1e-3, torch.float16: 1e-2, torch.bfloat16: 1e-2}
# How close a point may come before it can no longer be told apart from the sphere: an isometry moving a key far
# out sets it here, strictly inside (distance 14.5 from the centre in float32, 28.3 in float64).
INTERIOR_MARGIN = {torch.float64: 1e-12, torch.float32: 1e-6, torch.float16: 1e-2, torch.bfloat16: 1e-2}

# How far from the centre a head's random access can aim (`PoincareBall.random_access_key`): inside the float32
# and float64 margin of `project` (distance 7.6), so that no key it names is clipped there. (The half-precision
# margin, at distance 5.3, clips the outermost of them.)
RANDOM_ACCESS_RADIUS = 6.0

# Below this value of s = sinh(d / 2)^2 the squared distance 4 asinh(sqrt(s))^2 is summed as a series in s, which
# has no square root whose derivative is infinite at s = 0 (x == y).
SMALL_S = {torch.float64: 1e-6, torch.float32: 1e-3, torch.float16: 1e-2, torch.bfloat16: 1e-2}
# asinh(u)^2 / u^2 = 1 - s / 3 + 8 s^2 / 45 - 4 s^3 / 35 + ..., s = u^2, and the slope
# d asinh(sqrt(s))^2 / ds = 1 - 2 s / 3 + 8 s^2 / 15 - 16 s^3 / 35 (the engine's readers take both from here).
ASINH_SQ_SERIES = (1.0, -1.0 / 3.0, 8.0 / 45.0, -4.0 / 35.0)
ASINH_SQ_SLOPE_SERIES = (1.0, -2.0 / 3.0, 8.0 / 15.0, -16.0 / 35.0)


def boundary_margin(dtype: torch.dtype) -> float:
    """The margin 1 - max|x| that `PoincareBall.project` keeps from the unit sphere in `dtype`."""
    return BOUNDARY_MARGIN.get(dtype, 1e-3)


def interior_margin(dtype: torch.dtype) -> float:
    """The least margin 1 - |x| at which a point of `dtype` is still told apart from the unit sphere."""
    return INTERIOR_MARGIN.get(dtype, 1e-6)


def _series(coefficients: tuple[float, ...], x: torch.Tensor) -> torch.Tensor:
    """sum_k coefficients[k] x^k by Horner's rule."""
    total = coefficients[-1]
    for coefficient in reversed(coefficients[:-1]):
        total = total * x + coefficient
    return total


def squared_distance(s: torch.Tensor, slope: bool = False):
    """F(s) = 4 asinh(sqrt(s))^2, the squared distance of two points with s = sinh(d / 2)^2 =
    |x - y|^2 / ((1 - |x|^2)(1 - |y|^2)), summed as a series below `SMALL_S`; with `slope`, also F'(s) =
    4 asinh(sqrt(s)) / sqrt(s (1 + s)), which the engine's readers use for their backward pass."""
    small = s < SMALL_S.get(s.dtype, 1e-3)
    # Each branch gets its argument only where it is selected: the unselected one's gradient, times the where's
    # zero, must stay finite (the series overflows past s = 1e13, which far keys in float32 reach).
    safe = torch.where(small, torch.ones_like(s), s)
    tiny = torch.where(small, s, torch.zeros_like(s))
    root = torch.sqrt(safe)
    angle = torch.asinh(root)
    value = 4 * torch.where(small, tiny * _series(ASINH_SQ_SERIES, tiny), angle.square())
    if not slope:
        return value
    derivative = 4 * torch.where(small, _series(ASINH_SQ_SLOPE_SERIES, tiny), angle / (root * torch.sqrt(1 + safe)))
    return value, derivative


def _at_distance(v: torch.Tensor, norm: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
    """The point at hyperbolic `distance` from the centre in the direction of `v` (of Euclidean norm `norm`).

    A point at Euclidean norm tanh(d / 2) lies at distance d; where v = 0 the factor is its limit 1/2 (both
    callers' distances grow as |v| near 0)."""
    positive = norm > 0
    safe = torch.where(positive, norm, torch.ones_like(norm))
    return v * torch.where(positive, torch.tanh(distance / 2) / safe, 0.5)


def clip_to_ball(x: torch.Tensor, radius: float) -> torch.Tensor:
    """x scaled radially onto the closed ball of `radius` where it lies outside; unchanged inside.

    The nearest point of that ball. Dividing by the largest entry first keeps the norm from overflowing for huge
    inputs; the zero vector stays zero. The derivative is bounded by 1 everywhere.
    """
    scale = x.detach().abs().amax(dim=-1, keepdim=True).clamp_min(1.0)
    scaled = x / scale
    norm = torch.linalg.vector_norm(scaled, dim=-1, keepdim=True)
    # At 0 the factor is min(1, radius / radius) = 1: the derivative of the identity, as everywhere inside.
    safe_norm = torch.where(norm > 0, norm, torch.full_like(norm, radius))
    return scaled * torch.minimum(scale, radius / safe_norm)


class PoincareBall(KeySpace):
    """Keys in the open unit ball of R^n with the hyperbolic distance of curvature -1.

        d(x, y) = 2 asinh(|x - y| / sqrt((1 - |x|^2) (1 - |y|^2)))

    the same value as geoopt's arcosh form, but in a form that is exact for nearby points and has no clamp:
    geoopt's `PoincareBall.dist` clamps its artanh, so that near the boundary it returns 16.6 where the distance is
    23.7, with gradient exactly 0. `dist2` sums a series near x == y, so that its gradient there is finite and 0.
    `project` keeps keys strictly inside the ball by `boundary_margin(dtype)`, in float32 too, and `check` accepts
    every point strictly inside (geoopt's own test refuses float32 keys beyond norm 0.996).
    """

    def __init__(self, n: int = 2):
        _require_int("PoincareBall", "dimension n", n, minimum=1)
        super().__init__(geoopt.PoincareBall(), n)

    def _gap_product(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(1 - |x|^2)(1 - |y|^2), each factor floored at the dtype's machine epsilon.

        The floor means a point on or beyond the sphere (not a key) lies at a large, finite distance, with a
        finite gradient, instead of an infinite or NaN one.
        """
        self._check_shape(x, y)
        eps = torch.finfo(x.dtype).eps
        return (1 - x.square().sum(dim=-1)).clamp_min(eps) * (1 - y.square().sum(dim=-1)).clamp_min(eps)

    def dist(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The hyperbolic distance; 0 with gradient 0 at x == y."""
        # The norm, not the square root of s: tiny distances keep full precision, and the norm's gradient at 0 is 0.
        return 2 * torch.asinh(torch.linalg.vector_norm(x - y, dim=-1) / torch.sqrt(self._gap_product(x, y)))

    def dist2(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """4 asinh(sqrt(s))^2, as 4 s (1 - s / 3 + ...) for small s: smooth at x == y."""
        return squared_distance((x - y).square().sum(dim=-1) / self._gap_product(x, y))

    def kernel_distance(self) -> str | None:
        """ "poincare", unless a subclass replaces `dist2`."""
        return "poincare" if type(self).dist2 is PoincareBall.dist2 else None

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The identity inside the ball of radius 1 - `boundary_margin`; outside it, onto that sphere radially."""
        self._check_shape(x)
        return clip_to_ball(x, 1 - boundary_margin(x.dtype))

    def random_access_key(self, raw: torch.Tensor) -> torch.Tensor:
        """The key at hyperbolic distance R tanh(|raw| / R) from the centre, in the direction of `raw`
        (R = `RANDOM_ACCESS_RADIUS`): about |raw| for small outputs, never past R.

        Clipping raw outputs at the margin, as `project` does, would send every large output of one direction to
        one point; keys written there coincide, and the inverse-square read's gradient, which grows as the
        distances between slots shrink, explodes. This map is one-to-one, with a derivative that is bounded and
        finite at 0."""
        self._check_shape(raw)
        scale = power_of_two_scale(raw)  # a float32 norm overflows past 1e19, and would put such keys at the centre
        norm = scale * torch.linalg.vector_norm(raw / scale, dim=-1, keepdim=True)
        return _at_distance(raw, norm, RANDOM_ACCESS_RADIUS * torch.tanh(norm / RANDOM_ACCESS_RADIUS))

    def off_space_reason(self, x: torch.Tensor) -> str | None:
        """Keys must lie strictly inside the unit ball."""
        norm = torch.linalg.vector_norm(x, dim=-1).max()
        if norm >= 1:
            return f"a key has Euclidean norm {float(norm):.9g}; keys of the Poincaré ball lie strictly inside 1"
        return None

    def random(self, *batch, dtype=None, device=None, generator=None) -> torch.Tensor:
        """Keys at hyperbolic distance |v| from the centre in the direction of v, v standard normal in R^n, and
        `project`ed: in high dimension (|v| near sqrt(n) > 7.6) most of them land on the margin's sphere."""
        v = random_tensor((*batch, self.dim), dtype=dtype, device=device, generator=generator)
        norm = torch.linalg.vector_norm(v, dim=-1, keepdim=True)
        return self.project(_at_distance(v, norm, norm))

    def origin(self, *batch, dtype=None, device=None) -> torch.Tensor:
        """The centre of the ball."""
        return torch.zeros(*batch, self.dim, dtype=dtype, device=device)

    def extra_repr(self) -> str:
        return f"n={self.dim}"
