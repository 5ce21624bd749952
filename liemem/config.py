"""Model configurations: validation shared by every model, so a bad value is refused with a message naming it."""

from __future__ import annotations

import dataclasses
import math

CONTROLLER_KINDS = ("lstm", "feedforward")
INIT_SCHEMES = ("default", "uniform")


class ConfigError(ValueError):
    """A model configuration, or an override of one, that cannot be built."""


def require_int(owner: str, field: str, value, minimum: int = 1, maximum: int | None = None) -> None:
    """Raise `ConfigError` unless `value` is an integer in [minimum, maximum]."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{owner}: {field} must be an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ConfigError(f"{owner}: {field} must be {bound}, got {value}")


def require_float(owner: str, field: str, value, minimum: float = -math.inf, positive: bool = False) -> None:
    """Raise `ConfigError` unless `value` is a finite real number, at least `minimum` (or > 0 if `positive`)."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ConfigError(f"{owner}: {field} must be a finite number, got {value!r}")
    if value < minimum or (positive and value <= 0):
        raise ConfigError(f"{owner}: {field} must be {'> 0' if positive else f'>= {minimum}'}, got {value}")


def require_choice(owner: str, field: str, value, choices) -> None:
    """Raise `ConfigError` unless `value` is one of `choices`, listing them."""
    if value not in choices:
        raise ConfigError(f"{owner}: {field} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def require_bool(owner: str, field: str, value) -> None:
    """Raise `ConfigError` unless `value` is True or False."""
    if not isinstance(value, bool):
        raise ConfigError(f"{owner}: {field} must be true or false, got {value!r}")


def require_controller_fields(owner: str, config) -> None:
    """Check the fields every controller-driven model shares: `controller` ('lstm' or 'feedforward', which has
    one layer), `controller_size`, `controller_layers`, `embedding_size`, `memory_width` and `init`."""
    require_choice(owner, "controller", config.controller, CONTROLLER_KINDS)
    for field in ("controller_size", "controller_layers", "embedding_size", "memory_width"):
        require_int(owner, field, getattr(config, field))
    require_choice(owner, "init", config.init, INIT_SCHEMES)
    if config.controller == "feedforward" and config.controller_layers != 1:
        raise ConfigError(
            f"{owner}: controller_layers must be 1 with a feed-forward controller, got {config.controller_layers}"
        )


def field_names(config_class) -> list[str]:
    """The names a configuration class accepts."""
    return [field.name for field in dataclasses.fields(config_class)]


def replace(config, owner: str, /, **overrides):
    """`config` with `overrides` applied; an unknown name is refused with the list of valid ones."""
    valid = field_names(type(config))
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise ConfigError(f"{owner}: unknown option {', '.join(map(repr, unknown))}; valid options: {', '.join(valid)}")
    return dataclasses.replace(config, **overrides)
