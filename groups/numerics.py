"""Numerical constants and building blocks shared by the groups: Taylor switches and series, safe divisions,
bounded parametrisations. The engine's compiled kernels take their constants from here, so that a kernel and
the Python it mirrors cannot drift apart."""

from __future__ import annotations

import math

import torch

# Below these squared angles the closed forms give way to Taylor expansions. The closed forms are written in
# half-angle form (no cancellation), so the switch only has to avoid 0/0 and keep gradients accurate.
SMALL_ANGLE_SQ = {torch.float64: 1e-6, torch.float32: 1e-3, torch.float16: 1e-2, torch.bfloat16: 1e-2}

# Softening for axis normalisation: the axis is raw / sqrt(|raw|^2 + eps^2), the authors' `Normalize(2)` (eps^2 =
# 1e-10), within 5e-7 of unit length for |raw| > 0.01, and its gradient is bounded by 1 / eps instead of
# diverging at raw = 0, where an exact normalisation has no direction to give.
AXIS_SOFTENING = 1e-5


# Taylor series in theta^2, lowest order first, of the half-angle functions of SO(3)'s exponential:
# cos(theta / 2) = 1 - theta^2 / 8 + theta^4 / 384 and sin(theta / 2) / theta = 1/2 - theta^2 / 48 + theta^4 / 3840.
HALF_ANGLE_COS = (1.0, -1.0 / 8.0, 1.0 / 384.0)
HALF_ANGLE_SINC = (0.5, -1.0 / 48.0, 1.0 / 3840.0)


def series(coefficients: tuple[float, ...], x):
    """sum_k coefficients[k] x^k, by Horner's rule (`x` a tensor or a number)."""
    total = coefficients[-1]
    for coefficient in reversed(coefficients[:-1]):
        total = total * x + coefficient
    return total


def small_angle_mask(theta_sq: torch.Tensor) -> torch.Tensor:
    """Where `theta_sq` is small enough that the Taylor branch must be used."""
    return theta_sq < SMALL_ANGLE_SQ.get(theta_sq.dtype, 1e-3)


def where_not(mask: torch.Tensor, value: torch.Tensor, substitute: float = 1.0) -> torch.Tensor:
    """`value` with `substitute` at `mask`: the inner half of a double `where`.

    The branch a `where` does not select still runs in the backward pass; feeding it a harmless value keeps
    its gradient from turning into 0 * inf = NaN.
    """
    return torch.where(mask, torch.full_like(value, substitute), value)


def bounded_vector(raw: torch.Tensor) -> torch.Tensor:
    """The paper's bounded translation a / sqrt(1 + |a|^2), of norm below 1, overflow-safe for huge `raw`."""
    scale = _max_abs(raw).clamp_min(1.0)
    scaled = raw / scale
    return scaled / torch.hypot(torch.linalg.vector_norm(scaled, dim=-1, keepdim=True), scale.reciprocal())


def soft_unit_axis(raw: torch.Tensor) -> torch.Tensor:
    """A rotation axis from unconstrained `raw`: its direction, tending smoothly to 0 as `raw` does."""
    scale = _max_abs(raw).clamp_min(1.0)
    scaled = raw / scale
    return scaled / torch.hypot(torch.linalg.vector_norm(scaled, dim=-1, keepdim=True), AXIS_SOFTENING / scale)


def _max_abs(raw: torch.Tensor) -> torch.Tensor:
    """max_i |raw_i| along the last axis, as a constant: a scale that keeps squares from overflowing."""
    return raw.detach().abs().amax(dim=-1, keepdim=True)


class AngleBound(torch.nn.Module):
    """Maps an unconstrained scalar to a rotation angle: tanh(z), optionally times a learnable bound.

    With `learnable=True` the bound is pi * sigmoid(b - 5), as in the paper's angle-bounded SLANTM, with b drawn
    uniformly from [-1, 1] as the authors' code draws it: the bound starts between 0.008 and 0.057 rad.
    """

    def __init__(self, learnable: bool = False):
        super().__init__()
        if not isinstance(learnable, bool):
            raise ValueError(f"angle_bound must be True or False, got {learnable!r}")
        self.learnable = learnable
        if self.learnable:
            self.bound_logit = torch.nn.Parameter(torch.empty(()).uniform_(-1.0, 1.0))

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        """The angle for each entry of `raw`."""
        angle = torch.tanh(raw)
        if self.learnable:
            angle = angle * (math.pi * torch.sigmoid(self.bound_logit.to(raw) - 5.0))
        return angle

    def extra_repr(self) -> str:
        return f"learnable={self.learnable}"
