"""Overflow-safe, NaN-free normalisation onto unit vectors, shared by the spherical key spaces, and the exact
rescaling that keeps squared norms from overflowing."""

from __future__ import annotations

import torch


def unit_vectors(x: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """Normalise the last axis of `x` to unit length; where `x` is exactly zero, return `fallback` instead.

    Dividing by the largest entry first keeps the squared norm from overflowing for huge inputs. Vectors
    shorter than sqrt of the dtype's smallest normal number count as zero: below that, 1 / |x| and the
    gradient of x / |x| would overflow.
    """
    scale = x.abs().amax(dim=-1, keepdim=True)
    is_zero = scale <= torch.finfo(x.dtype).tiny ** 0.5
    scaled = x / torch.where(is_zero, torch.ones_like(scale), scale)
    norm = torch.linalg.vector_norm(scaled, dim=-1, keepdim=True)
    unit = scaled / torch.where(is_zero, torch.ones_like(norm), norm)
    return torch.where(is_zero, fallback, unit)


def soft_unit_vectors(x: torch.Tensor, softening: float) -> torch.Tensor:
    """x / sqrt(|x|^2 + softening^2) along the last axis: a unit vector for |x| >> softening, tending to 0 with x.

    Its derivative is bounded by 1 / softening, where x / |x| has none near 0. Dividing by max(max|x|, 1)
    first keeps the squared norm from overflowing for huge inputs; a NaN anywhere gives NaNs.
    """
    scale = x.detach().abs().amax(dim=-1, keepdim=True).clamp_min(1.0)
    scaled = x / scale
    return scaled / torch.hypot(torch.linalg.vector_norm(scaled, dim=-1, keepdim=True), softening / scale)


def power_of_two_scale(x: torch.Tensor) -> torch.Tensor:
    """The largest power of two 2^k <= max|x| along the last axis, and 1 where max|x| < 1 (detached).

    Dividing by a power of two is exact in binary floating point, so a caller that shrinks a huge vector by this
    scale before squaring it (which would overflow) gets, wherever no entry over- or underflows, bit for bit the
    result it would get without the scaling.
    """
    largest = x.detach().abs().amax(dim=-1, keepdim=True).clamp_min(1.0)
    mantissa, _ = torch.frexp(largest)
    # largest = mantissa 2^e with mantissa in [1/2, 1), so this quotient is exactly 2^(e - 1).
    return largest / (2 * mantissa)
