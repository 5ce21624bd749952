"""What a task is: a vocabulary, train and 2x test size ranges, and a generator of (input, target) pairs.

A task draws examples of one *size* at a time (the k, N or item count of the paper's table 1a), so every example
of a draw has the same input and target length. The model sees the input between a start and a separator
marker and must answer the target followed by an end marker; `encode` adds the markers, `decode` turns ids back
into the task's token strings.
"""

from __future__ import annotations

import abc
from typing import ClassVar, NamedTuple

import numpy as np

from ..config import ConfigError

MARKERS = ("<start>", "<sep>", "<end>")
# Sizes and vocabularies past these are refused by name rather than left to exhaust memory.
MAX_SIZE = 1_000_000
MAX_SYMBOLS = 1_000_000


class Examples(NamedTuple):
    """Examples of one size, as token ids without markers: `inputs [n, input_length]`, `targets [n, target_length]`."""

    inputs: np.ndarray
    targets: np.ndarray


class Task(abc.ABC):
    """Base class of the algorithmic tasks; subclasses are registered by the `name` given at class creation.

    Subclasses set `symbols` (the token strings, in id order), `train_sizes` and `test_sizes` (inclusive size
    ranges), `min_size` and `size_meaning`, and implement `generate`. Ids past the symbols are the markers.
    """

    name: ClassVar[str]
    number: ClassVar[float] = float("inf")  # its row in the paper's table 1a; others list after, as registered
    train_sizes: ClassVar[tuple[int, int]]
    test_sizes: ClassVar[tuple[int, int]]
    min_size: ClassVar[int] = 1
    size_meaning: ClassVar[str] = "input symbols"
    symbols: tuple[str, ...]

    def __init_subclass__(cls, name: str | None = None, **kwargs):
        super().__init_subclass__(**kwargs)
        if name is not None:
            from .registry import register  # the registry imports this module

            cls.name = name
            register(cls)

    @abc.abstractmethod
    def generate(self, size: int, count: int, rng: np.random.Generator) -> Examples:
        """`count` examples of `size`, drawn with `rng`."""

    @property
    def vocab_size(self) -> int:
        """Symbols plus the three markers: the vocabulary a model for this task needs."""
        return len(self.symbols) + len(MARKERS)

    @property
    def start(self) -> int:
        """Id of the marker before the input."""
        return len(self.symbols)

    @property
    def separator(self) -> int:
        """Id of the marker between the input and the answer."""
        return len(self.symbols) + 1

    @property
    def end(self) -> int:
        """Id of the marker the answer ends with."""
        return len(self.symbols) + 2

    def tokens(self) -> tuple[str, ...]:
        """Every token string in id order, the markers last."""
        return (*self.symbols, *MARKERS)

    def check_size(self, size) -> int:
        """`size` as an int, or `ConfigError` if this task cannot draw examples of it."""
        if isinstance(size, bool) or not isinstance(size, int | np.integer) or not self.min_size <= size <= MAX_SIZE:
            raise ConfigError(
                f"task {self.name!r}: size must be an integer in [{self.min_size}, {MAX_SIZE}], got {size!r}"
            )
        return int(size)

    def check_sizes(self, sizes, what: str = "lengths") -> tuple[int, int]:
        """A (low, high) size range checked against this task, or `ConfigError` naming what is wrong."""
        try:
            bounds = tuple(sizes)
        except TypeError:
            bounds = ()
        if len(bounds) != 2 or not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in bounds):
            raise ConfigError(f"task {self.name!r}: {what} must be a range A-B of integers, got {sizes!r}")
        low, high = (int(value) for value in bounds)
        if low > high:
            raise ConfigError(f"task {self.name!r}: {what} {low}-{high} is empty (the first bound is larger)")
        if low < self.min_size:
            raise ConfigError(
                f"task {self.name!r}: {what} must start at {self.min_size} or more ({self.size_meaning}), got {low}"
            )
        if high > MAX_SIZE:
            raise ConfigError(f"task {self.name!r}: {what} may go up to {MAX_SIZE}, got {high}")
        return low, high

    def sample(self, sizes: tuple[int, int], count: int, rng: np.random.Generator) -> list[Examples]:
        """`count` examples, each of a size drawn uniformly from `sizes`, grouped by size (ascending)."""
        low, high = self.check_sizes(sizes)
        drawn = rng.integers(low, high + 1, size=count)
        values, counts = np.unique(drawn, return_counts=True)
        return [self.generate(int(size), int(n), rng) for size, n in zip(values, counts, strict=True)]

    def encode(self, examples: Examples) -> tuple[np.ndarray, np.ndarray]:
        """Model inputs `[start, input..., separator]` and answer targets `[target..., end]`, as int64 arrays."""
        n = len(examples.inputs)
        column = np.full((n, 1), 0, dtype=np.int64)
        inputs = np.concatenate((column + self.start, examples.inputs, column + self.separator), axis=1)
        targets = np.concatenate((examples.targets, column + self.end), axis=1)
        return inputs, targets

    def decode(self, ids) -> list[str]:
        """Token strings of a sequence of ids."""
        tokens = self.tokens()
        return [tokens[int(i)] for i in ids]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(train_sizes={self.train_sizes}, test_sizes={self.test_sizes})"


def numbered_symbols(count: int) -> tuple[str, ...]:
    """Symbols '0', '1', ..., as the paper writes them."""
    return tuple(str(i) for i in range(count))
