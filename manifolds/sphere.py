"""Spherical key space S^(n-1) in R^n: the key space of the paper's SLANTM (n = 3)."""

from __future__ import annotations

import geoopt
import torch

from ._normalize import soft_unit_vectors, unit_vectors
from ._random import random_tensor
from .base import ChordalKeySpace, _require_int

DISTANCES = ("chordal", "geodesic")
# The heads' projection is x / sqrt(|x|^2 + 1e-10), the authors' `Normalize(2)` (eps 1e-10 on the squared norm):
# within 5e-7 of the sphere for |x| > 0.01, with a gradient bounded by 1e5 where an exact projection's 1 / |x|
# overflows the gradient norm (a mix of two nearly opposite keys).
KEY_SOFTENING = 1e-5


class Sphere(ChordalKeySpace):
    """Unit vectors in R^n.

    The default distance is chordal, |x - y| in R^n, as in the paper (section 5). `distance="geodesic"` gives
    the great-circle angle, computed as 2 atan2(|x - y|, |x + y|): unlike geoopt's clamped `acos`, it is 0 with
    gradient 0 at x == y, resolves angles far below 1e-4 in float32, and is exactly pi at antipodes.
    """

    def __init__(self, n: int = 3, distance: str = "chordal"):
        if distance not in DISTANCES:
            raise ValueError(f"Sphere: unknown distance {distance!r}; choose one of {', '.join(DISTANCES)}")
        _require_int("Sphere", "ambient dimension n", n, minimum=2)
        super().__init__(geoopt.Sphere(), n)
        self.distance = distance

    def dist(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Chordal or geodesic distance, as chosen at construction."""
        chord = super().dist(x, y)
        if self.distance == "chordal":
            return chord
        return 2 * torch.atan2(chord, torch.linalg.vector_norm(x + y, dim=-1))

    def dist2(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Squared distance; for the chordal distance a plain sum of squares."""
        if self.distance == "chordal":
            return super().dist2(x, y)
        return self.dist(x, y).square()

    @property
    def chordal(self) -> bool:
        """True for the chordal distance, unless a subclass replaces `dist2`."""
        return self.distance == "chordal" and type(self).dist2 is Sphere.dist2

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """L2 normalisation; the zero vector, where pi is undefined, maps to the origin."""
        self._check_shape(x)
        return unit_vectors(x, self.origin(dtype=x.dtype, device=x.device))

    def soft_project(self, x: torch.Tensor) -> torch.Tensor:
        """The heads' projection x / sqrt(|x|^2 + 1e-10), as the authors' code normalises keys (see `KeySpace`)."""
        self._check_shape(x)
        return soft_unit_vectors(x, KEY_SOFTENING)

    def random(self, *batch, dtype=None, device=None, generator=None) -> torch.Tensor:
        """Keys uniformly distributed on the sphere."""
        normal = random_tensor((*batch, self.dim), dtype=dtype, device=device, generator=generator)
        return self.project(normal)

    def origin(self, *batch, dtype=None, device=None) -> torch.Tensor:
        """The first basis vector e_1."""
        point = torch.zeros(*batch, self.dim, dtype=dtype, device=device)
        point[..., 0] = 1
        return point

    def extra_repr(self) -> str:
        return f"n={self.dim}, distance={self.distance!r}"
