"""Read weightings of a key-value memory, as pure functions of distances (or scores) and strengths.

Each returns weights that sum to 1 over the last axis. A floor of 1e-9 is added to every weight before
normalising, so that memories whose strengths have all underflowed to 0 still give a defined read. The nearest
distance (or largest score) the weights are taken relative to is `min(dim).values`, whose gradient goes to the
first slot attaining it; the fused kernels of `fused` differentiate it the same way.
"""

from __future__ import annotations

import torch

# The paper's code: w_i proportional to s_i / (d_i + 1e-10), plus 1e-9, L1-normalised.
INVERSE_SQUARE_EPS = 1e-10
WEIGHT_FLOOR = 1e-9


def inverse_square_eps(dtype: torch.dtype) -> float:
    """The paper's 1e-10, or the dtype's smallest normal number where 1e-10 would round to 0 (float16)."""
    return max(INVERSE_SQUARE_EPS, torch.finfo(dtype).tiny)


# The least temperature: keeps exp(-d / T) defined if softplus underflows to T = 0 (a pre-activation below
# about -100); any temperature above it is used as it is.
TEMPERATURE_FLOOR = 1e-6


def _normalise(weights: torch.Tensor) -> torch.Tensor:
    weights = weights + WEIGHT_FLOOR
    return weights / weights.sum(dim=-1, keepdim=True)


def inverse_square(dist2: torch.Tensor, strengths: torch.Tensor) -> torch.Tensor:
    """w_i proportional to s_i / d_i^2 (paper, section 4.2), given squared distances `dist2`.

    Computed as s_i (min_j d_j^2 + eps) / (d_i^2 + eps): every ratio lies in (0, 1], so a head sitting exactly
    on a key takes the limit value with a finite gradient instead of dividing by zero.
    """
    nearest = dist2.min(dim=-1, keepdim=True).values
    eps = inverse_square_eps(dist2.dtype)
    return _normalise(strengths * ((nearest + eps) / (dist2 + eps)))


def softmax(dist2: torch.Tensor, strengths: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """w_i proportional to s_i exp(-d_i^2 / T) (paper, section 4.2); `temperature` broadcasts against `dist2`.

    Distances are taken relative to the nearest key first, so the exponentials cannot all underflow.
    """
    excess = dist2 - dist2.min(dim=-1, keepdim=True).values
    return _normalise(strengths * torch.exp(-excess / temperature.clamp_min(TEMPERATURE_FLOOR)))


def exp_dot(scores: torch.Tensor, strengths: torch.Tensor) -> torch.Tensor:
    """w_i proportional to s_i exp(<q, k_i>) (the random-access memory of the paper's section 2), given scores."""
    return _normalise(strengths * torch.exp(scores - scores.max(dim=-1, keepdim=True).values))
