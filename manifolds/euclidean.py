"""Euclidean key space R^n: the key space of the paper's LANTM (n = 2)."""

from __future__ import annotations

import geoopt
import torch

from ._random import random_tensor
from .base import ChordalKeySpace


class Euclidean(ChordalKeySpace):
    """Keys in R^n with the Euclidean distance.

    Wraps `geoopt.Euclidean(ndim=1)`: with geoopt's default `ndim=0` the distance would be element-wise.
    """

    def __init__(self, n: int = 2):
        super().__init__(geoopt.Euclidean(ndim=1), n)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """R^n is its own ambient space, so the projection is the identity."""
        self._check_shape(x)
        return x

    def random(self, *batch, dtype=None, device=None, generator=None) -> torch.Tensor:
        """Standard normal keys."""
        return random_tensor((*batch, self.dim), dtype=dtype, device=device, generator=generator)

    def origin(self, *batch, dtype=None, device=None) -> torch.Tensor:
        """The zero vector."""
        return torch.zeros(*batch, self.dim, dtype=dtype, device=device)

    def extra_repr(self) -> str:
        return f"n={self.dim}"
