"""Rearranging symbols: copy, reverse, bigram flip and odd first (paper, table 1a, tasks 1, 2, 3 and 6)."""

from __future__ import annotations

import numpy as np

from ..config import require_int
from .base import MAX_SYMBOLS, Examples, Task, numbered_symbols


class SymbolTask(Task):
    """A task over `symbol_count` plain symbols (128 in the paper), drawn uniformly and independently."""

    def __init__(self, symbol_count: int = 128):
        require_int(f"task {self.name!r}", "symbol_count", symbol_count, minimum=2, maximum=MAX_SYMBOLS)
        self.symbol_count = symbol_count
        self.symbols = numbered_symbols(symbol_count)

    def draw(self, count: int, length: int, rng: np.random.Generator) -> np.ndarray:
        """`[count, length]` symbols, uniform and independent."""
        return rng.integers(0, self.symbol_count, size=(count, length), dtype=np.int64)


class Copy(SymbolTask, name="copy"):
    """a1 .. ak -> a1 .. ak, k in 2-64 (test 65-128)."""

    number = 1
    train_sizes = (2, 64)
    test_sizes = (65, 128)

    def generate(self, size, count, rng):
        inputs = self.draw(count, self.check_size(size), rng)
        return Examples(inputs, inputs.copy())


class Reverse(SymbolTask, name="reverse"):
    """a1 .. ak -> ak .. a1, k in 2-64 (test 65-128)."""

    number = 2
    train_sizes = (2, 64)
    test_sizes = (65, 128)

    def generate(self, size, count, rng):
        inputs = self.draw(count, self.check_size(size), rng)
        return Examples(inputs, inputs[:, ::-1].copy())


class PairedSymbolTask(SymbolTask):
    """A task on an even number of symbols. The size counts symbols, 2-32 (test 33-64), and an odd size is rounded
    down to even, as the authors' generator does (`seq_len // 2 * 2`): drawn uniformly, training sizes are then
    2, 4, ..., 30 twice as often as 32, and 3% of the test batches have 32 symbols."""

    train_sizes = (2, 32)
    test_sizes = (33, 64)
    min_size = 2
    size_meaning = "symbols (an odd count is rounded down to even)"

    def pairs(self, size) -> int:
        """The number of symbol pairs for `size` symbols (checked): an odd size is rounded down."""
        return self.check_size(size) // 2


class BigramFlip(PairedSymbolTask, name="bigram_flip"):
    """a1 a2 a3 a4 .. -> a2 a1 a4 a3 ..; 2-32 symbols (test 33-64)."""

    number = 3

    def generate(self, size, count, rng):
        pairs = self.pairs(size)
        inputs = self.draw(count, 2 * pairs, rng)
        targets = inputs.reshape(count, pairs, 2)[:, :, ::-1].reshape(count, 2 * pairs)
        return Examples(inputs, targets.copy())


class OddFirst(PairedSymbolTask, name="odd_first"):
    """a1 a2 .. a2k -> a1 a3 .. a2k-1 a2 a4 .. a2k; 2-32 symbols (test 33-64)."""

    number = 6

    def generate(self, size, count, rng):
        inputs = self.draw(count, 2 * self.pairs(size), rng)
        return Examples(inputs, np.concatenate((inputs[:, 0::2], inputs[:, 1::2]), axis=1))
