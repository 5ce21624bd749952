"""Torus key space T^n, the product of n circles, embedded in R^(2n)."""

from __future__ import annotations

import math

import geoopt
import torch

from ._normalize import unit_vectors
from ._random import random_tensor
from .base import ChordalKeySpace, _require_int


class Torus(ChordalKeySpace):
    """n circles, each stored as a unit vector (cos theta_i, sin theta_i); a key has 2n coordinates.

    Storing points on their embedding rather than as angles makes the random-access interpolation of the
    paper (a straight line in ambient space, then the projection pi) well defined across the angle seam.
    The distance is chordal in R^(2n), sqrt(sum_i 2 - 2 cos(theta_i - phi_i)): smooth, and unchanged when
    every point is shifted by the same angles.
    """

    def __init__(self, n: int = 2):
        _require_int("Torus", "number of circles n", n, minimum=1)
        super().__init__(geoopt.ProductManifold(*[(geoopt.Sphere(), 2)] * n), 2 * n)
        self.n = n

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise each (cos, sin) pair; a zero pair maps to angle 0."""
        self._check_shape(x)
        pairs = x.unflatten(-1, (self.n, 2))
        fallback = torch.zeros(2, dtype=x.dtype, device=x.device)
        fallback[0] = 1
        return unit_vectors(pairs, fallback).flatten(-2)

    def from_angles(self, theta: torch.Tensor) -> torch.Tensor:
        """Keys from angles of shape `[..., n]`."""
        return torch.stack((theta.cos(), theta.sin()), dim=-1).flatten(-2)

    def to_angles(self, x: torch.Tensor) -> torch.Tensor:
        """Angles in (-pi, pi] of keys `x`, shape `[..., n]`."""
        pairs = x.unflatten(-1, (self.n, 2))
        return torch.atan2(pairs[..., 1], pairs[..., 0])

    def random(self, *batch, dtype=None, device=None, generator=None) -> torch.Tensor:
        """Keys with independent, uniformly distributed angles."""
        unit = random_tensor((*batch, self.n), uniform=True, dtype=dtype, device=device, generator=generator)
        return self.from_angles((2 * unit - 1) * math.pi)

    def origin(self, *batch, dtype=None, device=None) -> torch.Tensor:
        """All angles zero."""
        return self.from_angles(torch.zeros(*batch, self.n, dtype=dtype, device=device))

    def extra_repr(self) -> str:
        return f"n={self.n}"
