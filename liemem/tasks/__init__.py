"""The algorithmic tasks of the paper (table 1a) and the NTM's associative recall, registered by name.

`tasks.get("copy")` gives a `Task`; a new task is a `Task` subclass declared with `name="..."`.
"""

from . import arithmetic, associative_recall, symbols, unary  # noqa: F401  (importing registers the tasks)
from .base import MARKERS, Examples, Task
from .registry import get, names

__all__ = ["MARKERS", "Examples", "Task", "get", "names"]
