"""Abelian groups whose elements are their own algebra coordinates: R^n and the torus (R / 2 pi Z)^n."""

from __future__ import annotations

import torch

from .base import LieGroup
from .numerics import bounded_vector


class VectorGroup(LieGroup):
    """A group of n-vectors under addition, acting on a key space a subclass chooses.

    exp is the identity, compose adds, inverse negates; `log` is where subclasses differ (the torus wraps
    angles). `from_controller` bounds a shift to norm below 1 by a / sqrt(1 + |a|^2), as the paper's code does.
    """

    def __init__(self, key_space, n: int, injectivity_radius: float):
        super().__init__(
            key_space, algebra_dim=n, element_shape=(n,), controller_dim=n, injectivity_radius=injectivity_radius
        )

    def exp(self, xi):
        """exp(xi) = xi (a copy, so that editing the result leaves `xi` alone)."""
        self._check_trailing(xi, self.algebra_dim, "exp's argument")
        return xi.clone()

    def compose(self, g, h):
        """g + h."""
        self._check_element(g)
        self._check_element(h)
        return g + h

    def inverse(self, g):
        """-g."""
        self._check_element(g)
        return -g

    def from_controller(self, raw):
        """The bounded shift a / sqrt(1 + |a|^2)."""
        self._check_trailing(raw, self.controller_dim, "controller output")
        return bounded_vector(raw)

    def interpolate(self, g0, g1, r):
        """The straight line g0 + r log(g1 - g0)."""
        self._check_element(g0)
        self._check_element(g1)
        return g0 + self._scale_algebra(self.log(g1 - g0), r)

    def identity(self, *batch, dtype=None, device=None):
        """The zero vector."""
        return torch.zeros(*batch, self.algebra_dim, dtype=dtype, device=device)

    def extra_repr(self) -> str:
        return f"n={self.algebra_dim}"
