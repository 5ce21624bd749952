"""Products of Lie groups: G1 x G2 x ... acting factor by factor on the product of their key spaces."""

from __future__ import annotations

import math

import torch

from manifolds import ProductSpace

from . import registry
from .base import LieGroup

# What `ProductGroup()` builds with no factors named: rotations of the sphere times translations of the line, a
# cylinder of keys.
DEFAULT_FACTORS = ("so3", {"name": "translation", "n": 1})


def _build(factor) -> LieGroup:
    """A factor given as a group, a registered name, or a table {"name": ..., options...} (as configs write it)."""
    if isinstance(factor, LieGroup):
        return factor
    if isinstance(factor, str):
        return registry.get(factor)
    if isinstance(factor, dict) and isinstance(factor.get("name"), str):
        options = {key: value for key, value in factor.items() if key != "name"}
        return registry.get(factor["name"], **options)
    raise ValueError(f"product: a factor is a group, a group name or a table with a 'name', got {factor!r}")


class ProductGroup(LieGroup, name="product"):
    """G1 x G2 x ...: each factor moves its own part of a `ProductSpace` key.

    An element, an algebra vector and a controller output are the factors' own, flattened and concatenated in
    order, so every operation splits its argument, applies each factor's, and joins the results. Distances add
    in squares, so the product acts by isometries when every factor does. Factors are groups, registered names or
    tables `{name = "translation", n = 1}`: `groups.get("product", factors=["so3", {"name": "translation", "n":
    1}])`, or in a config, `group = "product"` with `group_options = {factors = [...]}`.
    """

    def __init__(self, factors=DEFAULT_FACTORS):
        if isinstance(factors, str | dict | LieGroup) or not factors:
            raise ValueError(f"product: factors must be a list of one or more groups, got {factors!r}")
        built = [_build(factor) for factor in factors]
        super().__init__(
            ProductSpace(*(group.key_space for group in built)),
            algebra_dim=sum(group.algebra_dim for group in built),
            element_shape=(sum(math.prod(group.element_shape) for group in built),),
            controller_dim=sum(group.controller_dim for group in built),
            injectivity_radius=min(group.injectivity_radius for group in built),
        )
        self.groups = torch.nn.ModuleList(built)
        self._element_sizes = [math.prod(group.element_shape) for group in built]

    def _elements(self, g: torch.Tensor) -> list[torch.Tensor]:
        """Each factor's elements of `g`, in their own shapes."""
        parts = g.split(self._element_sizes, dim=-1)
        return [part.unflatten(-1, group.element_shape) for part, group in zip(parts, self.groups, strict=True)]

    def _join(self, elements) -> torch.Tensor:
        parts = [
            element.flatten(element.ndim - len(group.element_shape))
            for element, group in zip(elements, self.groups, strict=True)
        ]
        return torch.cat(parts, dim=-1)

    def _split(self, tensor: torch.Tensor, sizes: list[int]) -> tuple[torch.Tensor, ...]:
        return tensor.split(sizes, dim=-1)

    def exp(self, xi):
        """Each factor's exp of its part of the algebra vector."""
        self._check_trailing(xi, self.algebra_dim, "exp's argument")
        parts = self._split(xi, [group.algebra_dim for group in self.groups])
        return self._join([group.exp(part) for group, part in zip(self.groups, parts, strict=True)])

    def log(self, g):
        """Each factor's log, concatenated."""
        self._check_element(g)
        return torch.cat([group.log(e) for group, e in zip(self.groups, self._elements(g), strict=True)], dim=-1)

    def compose(self, g, h):
        """Factor by factor."""
        self._check_element(g)
        self._check_element(h)
        pairs = zip(self.groups, self._elements(g), self._elements(h), strict=True)
        return self._join([group.compose(a, b) for group, a, b in pairs])

    def inverse(self, g):
        """Factor by factor."""
        self._check_element(g)
        return self._join([group.inverse(e) for group, e in zip(self.groups, self._elements(g), strict=True)])

    def act(self, g, x):
        """Each factor moves its own coordinates of the keys."""
        self._check_element(g)
        self._check_trailing(x, self.key_space.dim, "keys")
        keys = self.key_space.split(x)
        moved = [group.act(e, k) for group, e, k in zip(self.groups, self._elements(g), keys, strict=True)]
        return torch.cat(moved, dim=-1)

    def interpolate(self, g0, g1, r):
        """Factor by factor: each factor's geodesic, which is the product's."""
        self._check_element(g0)
        self._check_element(g1)
        pairs = zip(self.groups, self._elements(g0), self._elements(g1), strict=True)
        return self._join([group.interpolate(a, b, r) for group, a, b in pairs])

    def from_controller(self, raw):
        """Each factor's element from its share of the controller output."""
        self._check_trailing(raw, self.controller_dim, "controller output")
        parts = self._split(raw, [group.controller_dim for group in self.groups])
        return self._join([group.from_controller(part) for group, part in zip(self.groups, parts, strict=True)])

    def check(self, g):
        """Each factor's check of its part."""
        super().check(g)
        for group, element in zip(self.groups, self._elements(g), strict=True):
            group.check(element)

    def identity(self, *batch, dtype=None, device=None):
        """Every factor's identity."""
        return self._join([group.identity(*batch, dtype=dtype, device=device) for group in self.groups])

    def random(self, *batch, dtype=None, device=None, generator=None):
        """An element of each factor, drawn by the factor's own `random` in order (one generator for all)."""
        return self._join(
            [group.random(*batch, dtype=dtype, device=device, generator=generator) for group in self.groups]
        )

    def extra_repr(self) -> str:
        return " x ".join(repr(group) for group in self.groups)
