"""The abstract Lie group: head movements of a Lie-access memory, acting on a key space.

Elements are tensors with leading batch axes and a fixed trailing `element_shape`; the Lie algebra is
R^algebra_dim in a basis the group chooses. A concrete group implements `exp`, `log`, `compose`, `inverse`,
`act` and `from_controller`; the rest has generic defaults that a group may override for speed.
"""

from __future__ import annotations

import abc
import math

import torch

from manifolds import KeySpace
from manifolds._random import random_tensor
from manifolds._tolerance import check_tolerance

from . import registry


class LieGroup(torch.nn.Module, abc.ABC):
    """A Lie group acting by isometries on `key_space`.

    Subclassing with a name registers the group: `class SO2(LieGroup, name="so2")` makes `groups.get("so2")`
    build it, the property tests check it, and code written against `LieGroup` accepts it. A group is an
    `nn.Module` so that a learnable part of its controller parametrisation (an angle bound, say) trains with
    the model.

    Attributes:
        key_space: the space the group acts on.
        algebra_dim: dimension of the Lie algebra, the size of `exp`'s argument.
        element_shape: trailing shape of one group element.
        controller_dim: size of the raw controller output that `from_controller` turns into an element.
        injectivity_radius: `log(exp(xi)) == xi` holds for |xi| below this (infinite for translations).
    """

    def __init__(
        self,
        key_space: KeySpace,
        algebra_dim: int,
        element_shape: tuple[int, ...],
        controller_dim: int,
        injectivity_radius: float = math.inf,
    ):
        super().__init__()
        self.key_space = key_space
        self.algebra_dim = algebra_dim
        self.element_shape = tuple(element_shape)
        self.controller_dim = controller_dim
        self.injectivity_radius = injectivity_radius

    def __init_subclass__(cls, name: str | None = None, **kwargs):
        super().__init_subclass__(**kwargs)
        if name is not None:
            registry.register(name, cls)

    # The move that `liemem.engine`'s compiled kernels have built in for this group (see `kernel_move`), declared
    # by the class whose formulas the kernels mirror. Read from the class's own namespace, so that a subclass,
    # which may change any formula, does not inherit it.
    KERNEL_MOVE: str | None = None

    def kernel_move(self) -> str | None:
        """The name of the head move the engine's kernels compute for this group exactly as its Python does
        (`liemem.engine.kernels.MOVES`), or None where the group's own Python must run. A group whose
        declared move holds only for some settings (a learnable bound) overrides this to say so."""
        return type(self).__dict__.get("KERNEL_MOVE")

    # --- the group's own operations ---------------------------------------------------------------------

    @abc.abstractmethod
    def exp(self, xi: torch.Tensor) -> torch.Tensor:
        """The element exp(xi) for algebra coordinates `xi` of shape `[..., algebra_dim]`."""

    @abc.abstractmethod
    def log(self, g: torch.Tensor) -> torch.Tensor:
        """Algebra coordinates of `g`: the inverse of `exp` within the injectivity radius."""

    @abc.abstractmethod
    def compose(self, g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """The product g.h; acting with g.h acts with h first, then with g."""

    @abc.abstractmethod
    def inverse(self, g: torch.Tensor) -> torch.Tensor:
        """The inverse element g^-1."""

    @abc.abstractmethod
    def act(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Move keys `x` (shape `[..., key_space.dim]`) by `g`; batch axes broadcast."""

    @abc.abstractmethod
    def from_controller(self, raw: torch.Tensor) -> torch.Tensor:
        """An element from an unconstrained controller output of shape `[..., controller_dim]`.

        Follows the paper's parametrisation, and is finite with finite gradients for every finite input.
        """

    def check(self, g: torch.Tensor) -> None:
        """Raise `ValueError` naming this group if `g` is not a tensor of its elements.

        Operations trust their inputs, for speed; call this where elements come from outside. A subclass with
        constraints on its elements (unit quaternions, say) extends it. On `meta` only the shape is checked.
        """
        if not isinstance(g, torch.Tensor):
            raise ValueError(f"{self!r}: expected a tensor of group elements, got {type(g).__name__}")
        self._check_element(g)
        if not g.is_floating_point():
            raise ValueError(f"{self!r}: elements must be floating point, got {g.dtype}")
        if g.device.type != "meta" and not bool(torch.isfinite(g).all()):
            raise ValueError(f"{self!r}: elements contain NaN or infinite values")

    # --- generic defaults -------------------------------------------------------------------------------

    def identity(self, *batch: int, dtype: torch.dtype | None = None, device=None) -> torch.Tensor:
        """The identity element, repeated to batch shape `batch`."""
        return self.exp(torch.zeros(*batch, self.algebra_dim, dtype=dtype, device=device))

    def random(self, *batch: int, dtype: torch.dtype | None = None, device=None, generator=None) -> torch.Tensor:
        """Random elements; by default exp of a standard normal algebra vector."""
        xi = random_tensor((*batch, self.algebra_dim), dtype=dtype, device=device, generator=generator)
        return self.exp(xi)

    def interpolate(self, g0: torch.Tensor, g1: torch.Tensor, r: float | torch.Tensor) -> torch.Tensor:
        """The geodesic g0 . exp(r log(g0^-1 g1)): g0 at r = 0, g1 at r = 1.

        `r` is a float or a tensor broadcasting over the batch axes.
        """
        step = self.log(self.compose(self.inverse(g0), g1))
        return self.compose(g0, self.exp(self._scale_algebra(step, r)))

    # --- helpers for subclasses -------------------------------------------------------------------------

    def _scale_algebra(self, xi: torch.Tensor, r: float | torch.Tensor) -> torch.Tensor:
        """`r * xi` with `r` broadcast over the batch axes of `xi`."""
        if isinstance(r, torch.Tensor):
            r = r.to(device=xi.device, dtype=xi.dtype).unsqueeze(-1)
        return r * xi

    def _check_unit(self, part: torch.Tensor, what: str) -> None:
        """Raise unless `part` has unit norm along its last axis (to the dtype's tolerance)."""
        if part.device.type == "meta" or part.numel() == 0:
            return
        error = (torch.linalg.vector_norm(part, dim=-1) - 1).abs().max()
        if error > check_tolerance(part.dtype):
            raise ValueError(f"{self!r}: not a group element, {what} is off unit norm by {float(error):.3g}")

    def _check_trailing(self, tensor: torch.Tensor, size: int, what: str) -> None:
        if tensor.ndim == 0 or tensor.shape[-1] != size:
            raise ValueError(f"{self!r}: {what} needs a last axis of size {size}, got shape {tuple(tensor.shape)}")

    def _check_element(self, g: torch.Tensor) -> None:
        n = len(self.element_shape)
        if g.ndim < n or tuple(g.shape[g.ndim - n :]) != self.element_shape:
            raise ValueError(f"{self!r}: elements need trailing shape {self.element_shape}, got shape {tuple(g.shape)}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"
