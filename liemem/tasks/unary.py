"""Tasks that write counts in unary with the symbol "@": repeat copy and priority sort (paper, table 1a, tasks 7
and 8)."""

from __future__ import annotations

import numpy as np

from ..config import require_int
from .base import MAX_SYMBOLS, Examples, Task, numbered_symbols

UNARY = "@"


class UnaryTask(Task):
    """`symbol_count` plain symbols (128 in the paper) and the unary mark "@", whose id follows them."""

    def __init__(self, symbol_count: int = 128):
        require_int(f"task {self.name!r}", "symbol_count", symbol_count, minimum=2, maximum=MAX_SYMBOLS)
        self.symbol_count = symbol_count
        self.symbols = (*numbered_symbols(symbol_count), UNARY)

    @property
    def unary(self) -> int:
        """Id of the unary mark "@"."""
        return self.symbol_count


class RepeatCopy(UnaryTask, name="repeat_copy"):
    """N in unary, then `block` symbols (20) -> the block N times; N in 1-5 (test 6-10)."""

    number = 7
    train_sizes = (1, 5)
    test_sizes = (6, 10)
    size_meaning = "repetitions"

    def __init__(self, symbol_count: int = 128, block: int = 20):
        super().__init__(symbol_count)
        require_int("task 'repeat_copy'", "block", block)
        self.block = block

    def generate(self, size, count, rng):
        repeats = self.check_size(size)
        block = rng.integers(0, self.symbol_count, size=(count, self.block), dtype=np.int64)
        marks = np.full((count, repeats), self.unary, dtype=np.int64)
        return Examples(np.concatenate((marks, block), axis=1), np.tile(block, (1, repeats)))


class PrioritySort(UnaryTask, name="priority_sort"):
    """k values, each preceded by its priority in unary (the priorities are a permutation of 0 .. k-1) -> the
    values in increasing priority; k in 2-10 (test 11-20). An input holds k + k(k-1)/2 tokens."""

    number = 8
    train_sizes = (2, 10)
    test_sizes = (11, 20)
    size_meaning = "values"

    def generate(self, size, count, rng):
        items = self.check_size(size)
        values = rng.integers(0, self.symbol_count, size=(count, items), dtype=np.int64)
        priorities = rng.permuted(np.tile(np.arange(items, dtype=np.int64), (count, 1)), axis=1)
        # Item j sits after its own marks and everything before it: j values and the marks of items 0 .. j.
        positions = np.arange(items) + np.cumsum(priorities, axis=1)
        inputs = np.full((count, items + items * (items - 1) // 2), self.unary, dtype=np.int64)
        np.put_along_axis(inputs, positions, values, axis=1)
        targets = np.take_along_axis(values, np.argsort(priorities, axis=1), axis=1)
        return Examples(inputs, targets)
