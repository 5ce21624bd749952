"""The abstract key space: where a Lie-access memory stores its keys and moves its heads.

A `KeySpace` wraps a geoopt manifold for the geometry geoopt gets right (projection, membership tests) and
supplies its own distance where geoopt's is numerically unfit for reading memory (see `Sphere`). Points are
tensors whose last axis holds the key; all leading axes are batch axes and broadcast.
"""

from __future__ import annotations

import abc

import geoopt
import torch

from ._tolerance import check_tolerance


def _require_int(owner: str, what: str, value, minimum: int) -> None:
    """Raise `ValueError` unless `value` is an integer of at least `minimum`."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{owner}: {what} must be an integer >= {minimum}, got {value!r}")


class KeySpace(torch.nn.Module, abc.ABC):
    """A manifold of memory keys with the distance used to read memory.

    Subclasses set `manifold` and `dim` and implement `dist`, `project`, `random` and `origin`; they may
    override `dist2` where the squared distance has a cheaper or smoother formula than squaring `dist`.
    """

    manifold: geoopt.Manifold
    dim: int

    def __init__(self, manifold: geoopt.Manifold, dim: int):
        super().__init__()
        _require_int(type(self).__name__, "key dimension", dim, minimum=1)
        # Kept outside the module tree: geoopt's manifolds are modules, and the Poincaré ball's curvature is a
        # parameter, which would otherwise join the model's parameters and its checkpoints.
        object.__setattr__(self, "manifold", manifold)
        self.dim = dim

    @abc.abstractmethod
    def dist(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Distance between keys `x` and `y` (broadcasting over leading axes), with a finite gradient at x == y."""

    def dist2(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Squared distance, which the inverse-square and softmax reads differentiate. This default squares
        `dist`, so its gradient at x == y is 0 wherever `dist`'s is finite there; spaces whose distance has a
        closed form smooth at x == y (a chordal formula, a series) override it."""
        return self.dist(x, y).square()

    @property
    def chordal(self) -> bool:
        """Whether `dist2` is the squared chordal distance |x - y|^2, so that a reader may use a fused kernel."""
        return False

    def random_access_key(self, raw: torch.Tensor) -> torch.Tensor:
        """The key a head's random access aims at, from the controller's unconstrained `raw` output (ambient
        coordinates): the paper's pi(k), here `soft_project`. A space where that projection sends many outputs to
        one point overrides it (the Poincaré ball, whose projection clips at its margin)."""
        return self.soft_project(raw)

    def kernel_distance(self) -> str | None:
        """The name of the squared distance the engine's fast readers compute exactly as `dist2` does
        (`liemem.engine.cells.DISTANCES`: "chordal" or "poincare"), or None where `dist2` itself must run."""
        return "chordal" if self.chordal else None

    @abc.abstractmethod
    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The projection pi from ambient coordinates onto the key space (paper, section 4.3)."""

    def soft_project(self, x: torch.Tensor) -> torch.Tensor:
        """pi as the heads apply it to random-access keys and to mixed positions, every step of training.

        `project` itself by default. A space where pi has no bounded derivative (the sphere at 0, where a mix
        of two nearly opposite keys lands) overrides it with a softened pi whose gradient stays bounded.
        """
        return self.project(x)

    @abc.abstractmethod
    def random(
        self,
        *batch: int,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Random keys of shape `[*batch, dim]`, drawn from a natural distribution on the space."""

    @abc.abstractmethod
    def origin(
        self, *batch: int, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """A fixed reference key, repeated to shape `[*batch, dim]`."""

    def _check_shape(self, *keys: torch.Tensor) -> None:
        for x in keys:
            if x.ndim == 0 or x.shape[-1] != self.dim:
                raise ValueError(f"{self!r}: keys need a last axis of size {self.dim}, got shape {tuple(x.shape)}")

    def check(self, x: torch.Tensor) -> None:
        """Raise `ValueError` naming this key space if `x` is not a tensor of keys lying on it.

        Values on the `meta` device cannot be inspected, so there only the shape is checked.
        """
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{self!r}: expected a tensor of keys, got {type(x).__name__}")
        self._check_shape(x)
        if not x.is_floating_point():
            raise ValueError(f"{self!r}: keys must be floating point, got {x.dtype}")
        if x.device.type == "meta" or x.numel() == 0:
            return
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{self!r}: keys contain NaN or infinite values")
        reason = self.off_space_reason(x.detach())
        if reason is not None:
            raise ValueError(f"{self!r}: point is not on the key space ({reason})")

    def off_space_reason(self, x: torch.Tensor) -> str | None:
        """Why finite keys `x` of the right shape are not on the space, or None where they are.

        By default the wrapped geoopt manifold's membership test, within the dtype's tolerance. A space whose
        geoopt test is unfit (too strict a margin, say) overrides it.
        """
        tol = check_tolerance(x.dtype)
        ok, reason = self.manifold.check_point_on_manifold(x, explain=True, atol=tol, rtol=tol)
        return None if ok else reason

    def extra_repr(self) -> str:
        return f"dim={self.dim}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


class ChordalKeySpace(KeySpace):
    """A key space embedded in R^dim whose reading distance is the chordal one, |x - y| in the embedding."""

    def dist(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Chordal distance |x - y|; its gradient at x == y is 0."""
        self._check_shape(x, y)
        return torch.linalg.vector_norm(x - y, dim=-1)

    def dist2(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Squared chordal distance |x - y|^2, a plain sum of squares."""
        self._check_shape(x, y)
        return (x - y).square().sum(dim=-1)

    @property
    def chordal(self) -> bool:
        """True unless a subclass replaces `dist2`."""
        return type(self).dist2 is ChordalKeySpace.dist2
