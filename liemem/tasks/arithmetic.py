"""Decimal arithmetic, zero padded: double and interleaved add (paper, table 1a, tasks 4 and 5). Numbers are drawn
uniformly from [0, 10^k), digit by digit, so any k works.

Interleaved add writes its numbers least significant digit first, as the paper and the authors' generator do.
Double writes them most significant digit first by default: the paper's text says least significant first, but
the authors' generator (`getdouble` in `data/generate.py`), which made the data behind table 1b, writes both x
and 2x most significant first. `digit_order="lsb"` gives the order of the paper's text.
"""

from __future__ import annotations

import numpy as np

from ..config import require_choice
from .base import Examples, Task, numbered_symbols

DIGITS = numbered_symbols(10)


def add_digits(*numbers: np.ndarray) -> np.ndarray:
    """The sum of numbers given as digit arrays `[n, k]` (least significant first), in k + 1 digits."""
    count, width = numbers[0].shape
    total = np.zeros((count, width + 1), dtype=np.int64)
    carry = np.zeros(count, dtype=np.int64)
    for position in range(width):
        column = carry + sum(number[:, position] for number in numbers)
        total[:, position] = column % 10
        carry = column // 10
    total[:, width] = carry
    return total


DIGIT_ORDERS = ("msb", "lsb")


class Double(Task, name="double"):
    """The k digits of x -> the k + 1 digits of 2x; k in 2-40 (test 41-80); `digit_order` 'msb' (the authors'
    data, the default) or 'lsb' (the paper's text) first."""

    number = 4
    symbols = DIGITS
    train_sizes = (2, 40)
    test_sizes = (41, 80)
    size_meaning = "digits"

    def __init__(self, digit_order: str = "msb"):
        require_choice(f"task {self.name!r}", "digit_order", digit_order, DIGIT_ORDERS)
        self.digit_order = digit_order

    def generate(self, size, count, rng):
        digits = rng.integers(0, 10, size=(count, self.check_size(size)), dtype=np.int64)
        doubled = add_digits(digits, digits)
        if self.digit_order == "msb":
            return Examples(digits[:, ::-1].copy(), doubled[:, ::-1].copy())
        return Examples(digits, doubled)


class InterleavedAdd(Task, name="interleaved_add"):
    """x0 y0 x1 y1 .. (k digits each) -> the k + 1 digits of x + y; k in 2-16 (test 17-32)."""

    number = 5
    symbols = DIGITS
    train_sizes = (2, 16)
    test_sizes = (17, 32)
    size_meaning = "digits per number"

    def generate(self, size, count, rng):
        digits = self.check_size(size)
        x = rng.integers(0, 10, size=(count, digits), dtype=np.int64)
        y = rng.integers(0, 10, size=(count, digits), dtype=np.int64)
        interleaved = np.stack((x, y), axis=2).reshape(count, 2 * digits)
        return Examples(interleaved, add_digits(x, y))
