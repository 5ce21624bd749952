"""Translations of the torus T^n: independent rotations of its n circles."""

from __future__ import annotations

import math

import torch

from manifolds import Torus
from manifolds._random import random_tensor

from ._vector import VectorGroup


def _wrap(angle: torch.Tensor) -> torch.Tensor:
    """Angles mapped into [-pi, pi], smoothly (no gradient jump away from the seam)."""
    return torch.atan2(torch.sin(angle), torch.cos(angle))


class TorusTranslation(VectorGroup, name="torus"):
    """The torus group (R / 2 pi Z)^n acting on `Torus(n)` by rotating circle i by angle g_i.

    Elements are angle vectors of size n, meaningful modulo 2 pi; `log` returns the representative in
    [-pi, pi], and interpolation takes the shorter arc in each circle. `from_controller` bounds the shift
    like the paper's translations: a / sqrt(1 + |a|^2) radians.
    """

    def __init__(self, n: int = 2):
        super().__init__(Torus(n), n, injectivity_radius=math.pi)

    def log(self, g):
        """The angles of g wrapped into [-pi, pi]."""
        self._check_element(g)
        return _wrap(g)

    def act(self, g, x):
        """Rotate each (cos, sin) pair of `x` by its angle in `g`."""
        self._check_element(g)
        self._check_trailing(x, self.key_space.dim, "keys")
        pairs = x.unflatten(-1, (self.algebra_dim, 2))
        cos, sin = torch.cos(g), torch.sin(g)
        first, second = pairs[..., 0], pairs[..., 1]
        rotated = torch.stack((cos * first - sin * second, sin * first + cos * second), dim=-1)
        return rotated.flatten(-2)

    def random(self, *batch, dtype=None, device=None, generator=None):
        """Uniformly distributed angles in (-pi, pi)."""
        shape = (*batch, self.algebra_dim)
        unit = random_tensor(shape, uniform=True, dtype=dtype, device=device, generator=generator)
        return (2 * unit - 1) * math.pi
