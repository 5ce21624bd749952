"""Read weightings of a key-value memory: pure functions of distances (or scores) and strengths, and the
`Weighting` objects a Lie-access model reads with.

Each function returns weights that sum to 1 over the last axis. A floor of 1e-9 is added to every weight before
normalising, so that memories whose strengths have all underflowed to 0 still give a defined read. The nearest
distance (or largest score) the weights are taken relative to is `min(dim).values`, whose gradient goes to the
first slot attaining it; the hand-differentiated reads of `liemem.engine` differentiate it the same way.

A `Weighting` names a distance weighting, says how many columns of the controller's step projection it takes
per step (a temperature, a width), and turns those columns into the weights. Subclassing with a name registers
it, so that `LANTMConfig(weighting=name)` and `liemem train --set model_options.weighting=name` find it. Every
weighting runs on the plain autograd path; the engine's faster backends list the ones they have formulas for
(`liemem.engine.plan`), and run any other on the plain path, or refuse it by name when forced.
"""

from __future__ import annotations

import torch
from torch import nn

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


# The least squared width of the Cauchy weighting, for the same reason as the temperature's floor.
WIDTH_SQ_FLOOR = 1e-6


def cauchy(dist2: torch.Tensor, strengths: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """w_i proportional to s_i / (1 + d_i^2 / sigma^2), the Cauchy kernel of width sigma (`width`, broadcasting
    against `dist2`).

    Heavy-tailed like the inverse square, which it approaches as sigma goes to 0, but with a learned width that
    caps each slot's weight where the inverse square grows without bound: a head near two keys can weigh both.
    Every factor lies in (0, 1], so nothing overflows.
    """
    width_sq = (width * width).clamp_min(WIDTH_SQ_FLOOR)
    return _normalise(strengths * (width_sq / (width_sq + dist2)))


def exp_dot(scores: torch.Tensor, strengths: torch.Tensor) -> torch.Tensor:
    """w_i proportional to s_i exp(<q, k_i>) (the random-access memory of the paper's section 2), given scores."""
    return _normalise(strengths * torch.exp(scores - scores.max(dim=-1, keepdim=True).values))


_REGISTRY: dict[str, type[Weighting]] = {}


class Weighting:
    """A read weighting over squared distances, with the controller columns it takes each step.

    Subclasses set `columns` and implement `weights`; `parameters` maps their raw columns `[B, columns]` to
    what `weights` takes (by default softplus, a positive number per head, shaped `[B, 1, columns]`).
    """

    name: str = ""
    columns: int = 0

    def __init_subclass__(cls, name: str | None = None, **kwargs):
        super().__init_subclass__(**kwargs)
        if name is not None:
            if name in _REGISTRY:
                raise ValueError(f"a weighting named {name!r} is already registered ({_REGISTRY[name].__name__})")
            cls.name = name
            _REGISTRY[name] = cls

    def parameters(self, raw: torch.Tensor) -> torch.Tensor | None:
        """The per-step parameters `[B, 1, columns]` from the controller's raw columns `[B, columns]`, or None
        for a weighting that takes none."""
        return nn.functional.softplus(raw).unsqueeze(1) if self.columns else None

    def weights(self, dist2: torch.Tensor, strengths: torch.Tensor, parameters: torch.Tensor | None) -> torch.Tensor:
        """Weights `[B, H, N]` from squared distances `[B, H, N]`, strengths `[B, 1, N]` and `parameters`."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class InverseSquare(Weighting, name="inverse_square"):
    """The paper's LANTM read: `inverse_square`."""

    def weights(self, dist2, strengths, parameters):
        return inverse_square(dist2, strengths)


class Softmax(Weighting, name="softmax"):
    """The paper's "-s" read: `softmax` at a temperature softplus(column) the controller emits each step."""

    columns = 1

    def weights(self, dist2, strengths, parameters):
        return softmax(dist2, strengths, parameters)


class Cauchy(Weighting, name="cauchy"):
    """`cauchy` at a width softplus(column) the controller emits each step."""

    columns = 1

    def weights(self, dist2, strengths, parameters):
        return cauchy(dist2, strengths, parameters)


def names() -> list[str]:
    """The registered weightings' names."""
    return sorted(_REGISTRY)


def get(name: str) -> Weighting:
    """The weighting registered as `name`; `ValueError` listing the known names otherwise."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown weighting {name!r}; known: {', '.join(names())}")
    return _REGISTRY[name]()
