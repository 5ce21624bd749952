"""Tasks by name, so configurations, the CLI and the suite script can refer to them."""

from __future__ import annotations

from ..config import ConfigError

_TASKS: dict[str, type] = {}


def register(task_class: type) -> None:
    """Make `task_class` available under its `name`; a second class of the same name is refused."""
    existing = _TASKS.get(task_class.name)
    identity = (task_class.__module__, task_class.__qualname__)
    if existing is not None and (existing.__module__, existing.__qualname__) != identity:
        raise ValueError(f"a task named {task_class.name!r} is already registered ({existing.__qualname__})")
    _TASKS[task_class.name] = task_class


def names() -> list[str]:
    """The registered task names: the paper's in the order of its table 1a, then the others as registered."""
    return sorted(_TASKS, key=lambda name: _TASKS[name].number)


def get(name: str, **options):
    """A task instance by name; `options` go to its constructor. Unknown names and options raise `ConfigError`."""
    if not isinstance(name, str) or name not in _TASKS:
        raise ConfigError(f"unknown task {name!r}; valid tasks: {', '.join(names())}")
    try:
        return _TASKS[name](**options)
    except TypeError as error:
        raise ConfigError(f"task {name!r}: bad options {options!r}: {error}") from None
