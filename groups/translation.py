"""Translations of R^n: the head movements of the paper's LANTM (n = 2)."""

from __future__ import annotations

import math

from manifolds import Euclidean

from ._vector import VectorGroup


class Translation(VectorGroup, name="translation"):
    """The additive group R^n acting on `Euclidean(n)` by x -> x + g.

    Elements, algebra vectors and controller outputs are all vectors of size n; exp and log are identities.
    `from_controller` bounds a shift to norm below 1 by a / sqrt(1 + |a|^2), as the paper's code does.
    """

    KERNEL_MOVE = "translation"

    def __init__(self, n: int = 2):
        super().__init__(Euclidean(n), n, injectivity_radius=math.inf)

    def log(self, g):
        """log(g) = g (a copy)."""
        self._check_element(g)
        return g.clone()

    def act(self, g, x):
        """x + g."""
        self._check_element(g)
        self._check_trailing(x, self.key_space.dim, "keys")
        return x + g
