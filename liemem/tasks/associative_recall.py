"""The Neural Turing Machine's associative recall: a list of items, then one of them; answer the item after it.

An item is `item_length` symbols (3 in the NTM paper) from `symbol_count` (64, as many as a 6-bit row has).
Each item is introduced by "#", the query by "?". The items of one example are distinct, so the answer is
unique. Train on 2-6 items, test on 7-12.
"""

from __future__ import annotations

import numpy as np

from ..config import ConfigError, require_int
from .base import MAX_SYMBOLS, Examples, Task, numbered_symbols

ITEM_MARK, QUERY_MARK = "#", "?"
REDRAWS = 8


class AssociativeRecall(Task, name="associative_recall"):
    """#item1 #item2 .. #itemk ?item_q -> item_(q+1); the size is k, 2-6 (test 7-12)."""

    train_sizes = (2, 6)
    test_sizes = (7, 12)
    min_size = 2
    size_meaning = "items"

    def __init__(self, symbol_count: int = 64, item_length: int = 3):
        require_int("task 'associative_recall'", "symbol_count", symbol_count, minimum=2, maximum=MAX_SYMBOLS)
        require_int("task 'associative_recall'", "item_length", item_length)
        if symbol_count**item_length >= 2**62:
            raise ConfigError(
                f"task 'associative_recall': {symbol_count}^{item_length} possible items is more than it can draw from"
            )
        self.symbol_count = symbol_count
        self.item_length = item_length
        self.symbols = (*numbered_symbols(symbol_count), ITEM_MARK, QUERY_MARK)

    def check_sizes(self, sizes, what: str = "lengths") -> tuple[int, int]:
        low, high = super().check_sizes(sizes, what)
        if high > self.symbol_count**self.item_length:
            raise ConfigError(
                f"task 'associative_recall': {what} go up to {high} items, but only "
                f"{self.symbol_count**self.item_length} distinct items exist"
            )
        return low, high

    def distinct_items(self, count: int, items: int, rng: np.random.Generator) -> np.ndarray:
        """`[count, items, item_length]` symbols, the items of each row distinct (rows with a repeat are redrawn)."""
        codes = self.symbol_count**self.item_length
        if items > codes:
            raise ConfigError(f"task 'associative_recall': {items} distinct items do not exist among {codes}")
        drawn = rng.integers(0, codes, size=(count, items), dtype=np.int64)
        for _ in range(REDRAWS):
            ordered = np.sort(drawn, axis=1)
            repeated = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
            if not repeated.any():
                break
            drawn[repeated] = rng.integers(0, codes, size=(int(repeated.sum()), items), dtype=np.int64)
        else:  # many items among few codes: redrawing whole rows would rarely succeed, so sample without replacement
            for row in np.flatnonzero(repeated):
                drawn[row] = rng.choice(codes, size=items, replace=False)
        places = self.symbol_count ** np.arange(self.item_length, dtype=np.int64)
        return drawn[:, :, None] // places % self.symbol_count

    def generate(self, size, count, rng):
        items = self.check_size(size)
        listed = self.distinct_items(count, items, rng)
        query = rng.integers(0, items - 1, size=count)
        rows = np.arange(count)
        item_mark = np.full((count, items, 1), self.symbol_count, dtype=np.int64)
        query_mark = np.full((count, 1), self.symbol_count + 1, dtype=np.int64)
        inputs = np.concatenate(
            (np.concatenate((item_mark, listed), axis=2).reshape(count, -1), query_mark, listed[rows, query]), axis=1
        )
        return Examples(inputs, listed[rows, query + 1])
