"""Translations of R^n: the head movements of the paper's LANTM (n = 2)."""

from __future__ import annotations

import torch

from manifolds import Euclidean

from ._numerics import bounded_vector
from .base import LieGroup


class Translation(LieGroup, name="translation"):
    """The additive group R^n acting on `Euclidean(n)` by x -> x + g.

    Elements, algebra vectors and controller outputs are all vectors of size n; exp and log are identities.
    `from_controller` bounds a shift to norm below 1 by a / sqrt(1 + |a|^2), as the paper's code does.
    """

    def __init__(self, n: int = 2):
        space = Euclidean(n)
        super().__init__(space, algebra_dim=n, element_shape=(n,), controller_dim=n)

    def exp(self, xi):
        """exp(xi) = xi."""
        self._check_trailing(xi, self.algebra_dim, "exp's argument")
        return xi

    def log(self, g):
        """log(g) = g."""
        self._check_element(g)
        return g

    def compose(self, g, h):
        """g + h."""
        self._check_element(g)
        self._check_element(h)
        return g + h

    def inverse(self, g):
        """-g."""
        self._check_element(g)
        return -g

    def act(self, g, x):
        """x + g."""
        self._check_element(g)
        self._check_trailing(x, self.key_space.dim, "keys")
        return x + g

    def from_controller(self, raw):
        """The bounded shift a / sqrt(1 + |a|^2)."""
        self._check_trailing(raw, self.controller_dim, "controller output")
        return bounded_vector(raw)

    def interpolate(self, g0, g1, r):
        """The straight line g0 + r (g1 - g0)."""
        self._check_element(g0)
        self._check_element(g1)
        return g0 + self._scale_algebra(g1 - g0, r)

    def identity(self, *batch, dtype=None, device=None):
        """The zero shift."""
        return torch.zeros(*batch, self.algebra_dim, dtype=dtype, device=device)

    def extra_repr(self) -> str:
        return f"n={self.algebra_dim}"
