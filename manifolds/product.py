"""Products of key spaces: a key is the concatenation of one key of each factor."""

from __future__ import annotations

import geoopt
import torch

from .base import KeySpace


class ProductSpace(KeySpace):
    """K1 x K2 x ... with distance sqrt(sum of the factors' squared distances).

    Keys are `[..., dim]` with dim the sum of the factors' dimensions, each factor's coordinates in order. Wraps
    `geoopt.ProductManifold` of the factors' manifolds for membership tests. The distance is chordal (a reader may
    take the fused kernels) when every factor's is, since then it is |x - y| in the concatenated coordinates.
    """

    def __init__(self, *factors: KeySpace):
        if not factors or not all(isinstance(factor, KeySpace) for factor in factors):
            raise ValueError(f"ProductSpace: factors must be one or more key spaces, got {factors!r}")
        manifold = geoopt.ProductManifold(*((factor.manifold, factor.dim) for factor in factors))
        super().__init__(manifold, sum(factor.dim for factor in factors))
        self.factors = torch.nn.ModuleList(factors)
        self.sizes = [factor.dim for factor in factors]

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Each factor's coordinates of keys `x`."""
        self._check_shape(x)
        return x.split(self.sizes, dim=-1)

    def off_space_reason(self, x: torch.Tensor) -> str | None:
        """The first factor's reason, named by its place, where a factor's keys are off that factor."""
        for index, (factor, part) in enumerate(zip(self.factors, self.split(x), strict=True)):
            reason = factor.off_space_reason(part)
            if reason is not None:
                return f"factor {index + 1}, {factor!r}: {reason}"
        return None

    def dist(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """sqrt(sum_i d_i(x_i, y_i)^2), through the square root's safe form at x == y (a zero gradient there)."""
        squared = self.dist2(x, y)
        positive = squared > 0
        return torch.where(positive, torch.sqrt(torch.where(positive, squared, torch.ones_like(squared))), 0.0)

    def dist2(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The sum of the factors' squared distances."""
        pairs = zip(self.factors, self.split(x), self.split(y), strict=True)
        return sum(factor.dist2(a, b) for factor, a, b in pairs)

    @property
    def chordal(self) -> bool:
        """True when every factor's distance is chordal."""
        return all(factor.chordal for factor in self.factors)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Each factor's projection of its coordinates."""
        return torch.cat([factor.project(part) for factor, part in zip(self.factors, self.split(x), strict=True)], -1)

    def soft_project(self, x: torch.Tensor) -> torch.Tensor:
        """Each factor's softened projection."""
        parts = zip(self.factors, self.split(x), strict=True)
        return torch.cat([factor.soft_project(part) for factor, part in parts], -1)

    def random_access_key(self, raw: torch.Tensor) -> torch.Tensor:
        """Each factor's random-access key."""
        parts = zip(self.factors, self.split(raw), strict=True)
        return torch.cat([factor.random_access_key(part) for factor, part in parts], -1)

    def random(self, *batch, dtype=None, device=None, generator=None) -> torch.Tensor:
        """Each factor's random keys, concatenated."""
        parts = [factor.random(*batch, dtype=dtype, device=device, generator=generator) for factor in self.factors]
        return torch.cat(parts, dim=-1)

    def origin(self, *batch, dtype=None, device=None) -> torch.Tensor:
        """Each factor's origin, concatenated."""
        return torch.cat([factor.origin(*batch, dtype=dtype, device=device) for factor in self.factors], dim=-1)

    def extra_repr(self) -> str:
        return " x ".join(repr(factor) for factor in self.factors)
