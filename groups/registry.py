"""Groups by name: `get("so3")` builds one; subclasses register themselves with `class G(LieGroup, name=...)`."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import LieGroup

_REGISTRY: dict[str, type[LieGroup]] = {}


def register(name: str, cls: type[LieGroup]) -> type[LieGroup]:
    """Make `cls` available as `get(name)`. Registering a second class under a taken name is an error."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"group name must be a non-empty string, got {name!r}")
    # Read the markers directly: at class creation, ABCMeta has not yet filled in __abstractmethods__.
    missing = sorted(attr for attr in dir(cls) if getattr(getattr(cls, attr, None), "__isabstractmethod__", False))
    if missing:
        raise TypeError(f"cannot register abstract group {cls.__name__} as {name!r}: it lacks {', '.join(missing)}")
    known = _REGISTRY.get(name)
    same_definition = known is not None and (known.__module__, known.__qualname__) == (cls.__module__, cls.__qualname__)
    if known is not None and not same_definition:  # a re-executed module may register its class again
        raise ValueError(f"group name {name!r} is already taken by {known.__module__}.{known.__qualname__}")
    _REGISTRY[name] = cls
    return cls


def names() -> list[str]:
    """The registered group names, sorted."""
    return sorted(_REGISTRY)


def get(name: str, **kwargs) -> LieGroup:
    """Build the group registered as `name` with constructor arguments `kwargs`.

    An unknown name or an argument the group does not take raises `ValueError` saying what is valid.
    """
    cls = _REGISTRY.get(name)
    if cls is None:
        raise ValueError(f"unknown group {name!r}; known groups: {', '.join(names())}")
    signature = inspect.signature(cls.__init__)
    try:
        signature.bind(None, **kwargs)
    except TypeError:
        accepted = [p for p in list(signature.parameters)[1:] if p not in ("args", "kwargs")]
        wrong = sorted(set(kwargs) - set(accepted))
        raise ValueError(
            f"group {name!r} does not take argument(s) {', '.join(map(repr, wrong)) or '(missing arguments)'}; "
            f"it takes: {', '.join(accepted) or 'no arguments'}"
        ) from None
    return cls(**kwargs)
