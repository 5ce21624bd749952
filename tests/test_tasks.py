"""The algorithmic tasks (`liemem.tasks`) against the paper's table 1a and the NTM's associative recall.

Every input -> target mapping is checked example by example against a reference written here with plain Python
loops and Python integers, which also parses the input and fails on any misplaced symbol. The file also covers
the registry, the size ranges and their validation, `sample`, `encode`/`decode` and the arithmetic edge cases.

Where the authors' code and the paper's text differ, the tasks follow the code: double writes its numbers most
significant digit first (the paper's order is the option `digit_order="lsb"`), and the size of bigram flip and
odd first counts symbols, an odd count rounded down to even.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from liemem import tasks
from liemem.config import ConfigError

PAPER_ORDER = (
    "copy",
    "reverse",
    "bigram_flip",
    "double",
    "interleaved_add",
    "odd_first",
    "repeat_copy",
    "priority_sort",
    "associative_recall",
)

# (train sizes, test sizes), as table 1a of the paper gives them (associative recall: the NTM paper's setup).
# Bigram flip and odd first count symbols, as the authors' generator does: the table's k in 1-16 (test 17-32)
# pairs are 2-32 (test 33-64) symbols, odd counts rounded down to even.
TABLE_SIZES = {
    "copy": ((2, 64), (65, 128)),
    "reverse": ((2, 64), (65, 128)),
    "bigram_flip": ((2, 32), (33, 64)),
    "odd_first": ((2, 32), (33, 64)),
    "double": ((2, 40), (41, 80)),
    "interleaved_add": ((2, 16), (17, 32)),
    "repeat_copy": ((1, 5), (6, 10)),
    "priority_sort": ((2, 10), (11, 20)),
    "associative_recall": ((2, 6), (7, 12)),
}

# Tasks whose size must be at least 2: two items to recall between, or one pair of symbols.
MIN_SIZE_2 = ("bigram_flip", "odd_first", "associative_recall")

DIGITS = tuple(str(i) for i in range(10))
MARKERS = ("<start>", "<sep>", "<end>")
SEEDS = st.integers(0, 2**32 - 1)


@dataclass(frozen=True)
class Case:
    """A task by name and constructor options, with the values the specification implies for them."""

    name: str
    options: dict = field(default_factory=dict)

    def task(self):
        return tasks.get(self.name, **self.options)

    @property
    def plain(self) -> int:
        """How many plain symbols the task draws from; they take ids 0 .. plain - 1."""
        if self.name in ("double", "interleaved_add"):
            return 10
        return self.options.get("symbol_count", 64 if self.name == "associative_recall" else 128)

    @property
    def block(self) -> int:
        return self.options.get("block", 20)

    @property
    def item_length(self) -> int:
        return self.options.get("item_length", 3)

    @property
    def digit_order(self) -> str:
        return self.options.get("digit_order", "msb")

    @property
    def symbols(self) -> tuple[str, ...]:
        plain = tuple(str(i) for i in range(self.plain))
        extra = {"repeat_copy": ("@",), "priority_sort": ("@",), "associative_recall": ("#", "?")}
        return plain + extra.get(self.name, ())

    def input_length(self, size: int) -> int:
        even = size - size % 2  # the paired tasks' symbols: an odd size is rounded down
        return {
            "copy": size,
            "reverse": size,
            "bigram_flip": even,
            "odd_first": even,
            "double": size,
            "interleaved_add": 2 * size,
            "repeat_copy": size + self.block,
            "priority_sort": size + size * (size - 1) // 2,
            "associative_recall": size * (self.item_length + 1) + 1 + self.item_length,
        }[self.name]

    def target_length(self, size: int) -> int:
        even = size - size % 2
        return {
            "copy": size,
            "reverse": size,
            "bigram_flip": even,
            "odd_first": even,
            "double": size + 1,
            "interleaved_add": size + 1,
            "repeat_copy": size * self.block,
            "priority_sort": size,
            "associative_recall": self.item_length,
        }[self.name]

    def sizes_of_input(self, length: int, sizes: tuple[int, int]) -> list[int]:
        """The sizes in `sizes` whose inputs have `length` tokens: one, or for the paired tasks up to two (an even
        size and the odd one above it); input lengths never shrink as the size grows."""
        matches = [size for size in range(sizes[0], sizes[1] + 1) if self.input_length(size) == length]
        assert matches, f"no size in {sizes} has inputs of {length} tokens"
        assert len(matches) <= 2 and (len(matches) == 1 or self.name in ("bigram_flip", "odd_first")), matches
        return matches

    def size_of_input(self, length: int, sizes: tuple[int, int]) -> int:
        """The one size whose inputs have `length` tokens (for tasks whose input lengths grow strictly)."""
        (size,) = self.sizes_of_input(length, sizes)
        return size

    def reference(self, tokens: list[int]) -> list[int]:
        """The target the specification gives for `tokens`; an input that breaks its format fails an assert."""
        return REFERENCES[self.name](tokens, self)

    def __str__(self) -> str:
        return self.name + "".join(f"-{key}={value}" for key, value in self.options.items())


def plain_symbols(tokens: list[int], case: Case) -> list[int]:
    assert all(0 <= t < case.plain for t in tokens), f"{tokens} holds ids outside 0 .. {case.plain - 1}"
    return tokens


def reference_copy(tokens, case):
    return list(plain_symbols(tokens, case))


def reference_reverse(tokens, case):
    plain_symbols(tokens, case)
    return [tokens[i] for i in range(len(tokens) - 1, -1, -1)]


def reference_bigram_flip(tokens, case):
    plain_symbols(tokens, case)
    assert len(tokens) % 2 == 0
    flipped = []
    for i in range(0, len(tokens), 2):
        flipped += [tokens[i + 1], tokens[i]]
    return flipped


def reference_odd_first(tokens, case):
    plain_symbols(tokens, case)
    assert len(tokens) % 2 == 0
    # The paper counts from 1: a1 a3 .. are the even indices here.
    return [tokens[i] for i in range(0, len(tokens), 2)] + [tokens[i] for i in range(1, len(tokens), 2)]


def number(digits: list[int]) -> int:
    """A Python int from decimal digits, least significant first."""
    return sum(digit * 10**place for place, digit in enumerate(digits))


def msb_number(digits: list[int]) -> int:
    """A Python int from decimal digits, most significant first (as written: int of the joined text)."""
    return int("".join(str(digit) for digit in digits))


def digits_of(value: int, width: int) -> list[int]:
    """The `width` decimal digits of `value`, least significant first, zero padded."""
    text = str(value).zfill(width)
    assert len(text) == width, f"{value} does not fit in {width} digits"
    return [int(character) for character in reversed(text)]


def msb_digits_of(value: int, width: int) -> list[int]:
    """The `width` decimal digits of `value`, most significant first, zero padded."""
    text = str(value).zfill(width)
    assert len(text) == width, f"{value} does not fit in {width} digits"
    return [int(character) for character in text]


def reference_double(tokens, case):
    plain_symbols(tokens, case)
    if case.digit_order == "msb":
        return msb_digits_of(2 * msb_number(tokens), len(tokens) + 1)
    assert case.digit_order == "lsb"
    return digits_of(2 * number(tokens), len(tokens) + 1)


def reference_interleaved_add(tokens, case):
    plain_symbols(tokens, case)
    assert len(tokens) % 2 == 0
    x, y = number(tokens[0::2]), number(tokens[1::2])
    return digits_of(x + y, len(tokens) // 2 + 1)


def reference_repeat_copy(tokens, case):
    unary = case.plain
    repeats = 0
    while repeats < len(tokens) and tokens[repeats] == unary:
        repeats += 1
    block = plain_symbols(tokens[repeats:], case)
    assert len(block) == case.block
    return block * repeats


def parse_priorities(tokens, case) -> tuple[list[int], list[int]]:
    """(priorities, values) of a priority sort input: each value preceded by as many "@" as its priority."""
    unary = case.plain
    priorities, values, run = [], [], 0
    for token in tokens:
        if token == unary:
            run += 1
        else:
            assert 0 <= token < case.plain
            priorities.append(run)
            values.append(token)
            run = 0
    assert run == 0, "the input ends with unary marks that no value follows"
    assert sorted(priorities) == list(range(len(values))), f"priorities {priorities} are no permutation of 0..k-1"
    return priorities, values


def reference_priority_sort(tokens, case):
    priorities, values = parse_priorities(tokens, case)
    by_priority = [None] * len(values)
    for priority, value in zip(priorities, values, strict=True):
        by_priority[priority] = value
    return by_priority


def parse_recall(tokens, case) -> tuple[list[tuple[int, ...]], int]:
    """(items, index of the queried item) of an associative recall input, checking its format."""
    item_mark, query_mark, length = case.plain, case.plain + 1, case.item_length
    items, i = [], 0
    while tokens[i] == item_mark:
        items.append(tuple(plain_symbols(tokens[i + 1 : i + 1 + length], case)))
        i += 1 + length
    assert tokens[i] == query_mark
    query = tuple(plain_symbols(tokens[i + 1 :], case))
    assert all(len(item) == length for item in items) and len(query) == length
    assert len(set(items)) == len(items), f"items {items} repeat"
    assert query in items
    return items, items.index(query)


def reference_associative_recall(tokens, case):
    items, query = parse_recall(tokens, case)
    assert query < len(items) - 1, "the last item is queried, which has no successor"
    return list(items[query + 1])


REFERENCES = {
    "copy": reference_copy,
    "reverse": reference_reverse,
    "bigram_flip": reference_bigram_flip,
    "odd_first": reference_odd_first,
    "double": reference_double,
    "interleaved_add": reference_interleaved_add,
    "repeat_copy": reference_repeat_copy,
    "priority_sort": reference_priority_sort,
    "associative_recall": reference_associative_recall,
}

DEFAULT_CASES = [Case(name) for name in PAPER_ORDER]
CASES = [
    *DEFAULT_CASES,
    Case("copy", {"symbol_count": 5}),
    Case("reverse", {"symbol_count": 2}),
    Case("bigram_flip", {"symbol_count": 3}),
    Case("odd_first", {"symbol_count": 7}),
    Case("double", {"digit_order": "msb"}),
    Case("double", {"digit_order": "lsb"}),
    Case("repeat_copy", {"symbol_count": 4, "block": 3}),
    Case("priority_sort", {"symbol_count": 3}),
    Case("associative_recall", {"symbol_count": 5, "item_length": 2}),
    Case("associative_recall", {"symbol_count": 16, "item_length": 1}),
]


def check_examples(case: Case, examples, size: int, count: int) -> None:
    """Shapes, dtypes and every example's target against the reference."""
    inputs, targets = examples
    assert np.issubdtype(inputs.dtype, np.integer) and np.issubdtype(targets.dtype, np.integer)
    assert inputs.shape == (count, case.input_length(size))
    assert targets.shape == (count, case.target_length(size))
    for row_in, row_out in zip(inputs.tolist(), targets.tolist(), strict=True):
        assert row_out == case.reference(row_in), f"{case}: input {row_in}"


# The references themselves, on inputs worked out by hand.


def test_references_on_hand_computed_examples():
    case = {name: Case(name) for name in PAPER_ORDER}
    assert case["copy"].reference([3, 127, 0]) == [3, 127, 0]
    assert case["reverse"].reference([3, 127, 0]) == [0, 127, 3]
    assert case["bigram_flip"].reference([1, 2, 3, 4, 5, 6]) == [2, 1, 4, 3, 6, 5]
    assert case["odd_first"].reference([1, 2, 3, 4, 5, 6]) == [1, 3, 5, 2, 4, 6]
    # Double, most significant digit first (the default) and least significant first.
    assert case["double"].reference([3, 7]) == [0, 7, 4]  # 37 * 2 = 74
    assert case["double"].reference([9, 9]) == [1, 9, 8]  # 99 * 2 = 198
    assert case["double"].reference([5, 0]) == [1, 0, 0]  # 50 * 2 = 100
    assert case["double"].reference([0, 4, 5]) == [0, 0, 9, 0]  # 045 * 2 = 0090
    lsb = Case("double", {"digit_order": "lsb"})
    assert lsb.reference([7, 3]) == [4, 7, 0]  # 37 * 2 = 74
    assert lsb.reference([9, 9]) == [8, 9, 1]  # 99 * 2 = 198
    assert lsb.reference([0, 5]) == [0, 0, 1]  # 50 * 2 = 100
    assert case["interleaved_add"].reference([1, 2, 3, 4]) == [3, 7, 0]  # 31 + 42 = 73
    assert case["interleaved_add"].reference([9, 1, 9, 0]) == [0, 0, 1]  # 99 + 1 = 100
    assert case["interleaved_add"].reference([5, 7, 9, 0]) == [2, 0, 1]  # 95 + 7 = 102
    assert case["repeat_copy"].reference([128, 128, *range(20)]) == [*range(20), *range(20)]
    # Priorities 2, 0, 1 for the values 5, 7, 9.
    assert case["priority_sort"].reference([128, 128, 5, 7, 128, 9]) == [7, 9, 5]
    assert case["priority_sort"].reference([128, 5, 6]) == [6, 5]
    recall = [64, 1, 2, 3, 64, 4, 5, 6, 64, 7, 8, 9, 65, 4, 5, 6]
    assert case["associative_recall"].reference(recall) == [7, 8, 9]


@pytest.mark.parametrize(
    ("name", "tokens"),
    [
        ("copy", [3, 128]),
        ("double", [3, 10]),
        ("repeat_copy", [128, 3, 128, *range(19)]),
        ("priority_sort", [128, 5, 128, 6]),  # priorities 1, 1 are no permutation
        ("priority_sort", [5, 6, 128]),  # unary marks with no value after them
        ("associative_recall", [64, 1, 2, 3, 64, 1, 2, 3, 65, 1, 2, 3]),  # repeated item
        ("associative_recall", [64, 1, 2, 3, 64, 4, 5, 6, 65, 4, 5, 6]),  # queries the last item
    ],
)
def test_references_reject_malformed_inputs(name, tokens):
    with pytest.raises(AssertionError):
        Case(name).reference(tokens)


# The registry.


def test_names_are_the_nine_tasks_in_the_paper_order():
    assert tasks.names() == list(PAPER_ORDER)


@pytest.mark.parametrize("name", PAPER_ORDER)
def test_get_builds_the_named_task(name):
    task = tasks.get(name)
    assert isinstance(task, tasks.Task)
    assert task.name == name


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown task 'sort'") as error:
        tasks.get("sort")
    for name in PAPER_ORDER:
        assert name in str(error.value)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("copy", {"bogus": 1}),
        ("double", {"symbol_count": 10}),
        ("double", {"digit_order": "middle"}),
        ("double", {"digit_order": "MSB"}),
        ("interleaved_add", {"digit_order": "msb"}),  # its order is the paper's and the authors' alike
        ("bigram_flip", {"digit_order": "msb"}),
        ("interleaved_add", {"block": 2}),
        ("copy", {"symbol_count": 1}),
        ("reverse", {"symbol_count": 2.5}),
        ("odd_first", {"symbol_count": True}),
        ("repeat_copy", {"block": 0}),
        ("repeat_copy", {"symbol_count": "8"}),
        ("priority_sort", {"symbol_count": 0}),
        ("associative_recall", {"item_length": 0}),
        ("associative_recall", {"symbol_count": 1}),
        ("associative_recall", {"block": 3}),
    ],
)
def test_bad_options_raise_config_error(name, options):
    with pytest.raises(ConfigError, match=name):
        tasks.get(name, **options)


# Vocabularies and size ranges.


@pytest.mark.parametrize("case", CASES, ids=str)
def test_symbols_and_markers(case):
    task = case.task()
    assert task.symbols == case.symbols
    assert task.vocab_size == len(case.symbols) + 3
    assert (task.start, task.separator, task.end) == (len(case.symbols), len(case.symbols) + 1, len(case.symbols) + 2)
    assert task.decode([task.start, task.separator, task.end]) == list(MARKERS)
    assert task.decode(np.arange(len(case.symbols))) == list(case.symbols)


def test_symbol_sets_of_the_table():
    assert tasks.get("copy").symbols == tuple(str(i) for i in range(128))
    assert tasks.get("double").symbols == DIGITS
    assert tasks.get("interleaved_add").symbols == DIGITS
    assert tasks.get("repeat_copy").symbols[-1] == "@" and len(tasks.get("repeat_copy").symbols) == 129
    assert tasks.get("priority_sort").symbols[-1] == "@" and len(tasks.get("priority_sort").symbols) == 129
    assert tasks.get("associative_recall").symbols[-2:] == ("#", "?")
    assert len(tasks.get("associative_recall").symbols) == 66


def test_decode_of_hand_written_ids():
    assert tasks.get("copy").decode([0, 127, 128, 129, 130]) == ["0", "127", "<start>", "<sep>", "<end>"]
    assert tasks.get("double").decode([4, 7, 0, 12]) == ["4", "7", "0", "<end>"]
    assert tasks.get("repeat_copy").decode(np.array([128, 128, 5])) == ["@", "@", "5"]
    assert tasks.get("associative_recall").decode([64, 1, 65, 66]) == ["#", "1", "?", "<start>"]


@pytest.mark.parametrize("name", PAPER_ORDER)
def test_size_ranges_match_the_table(name):
    task = tasks.get(name)
    train, test = TABLE_SIZES[name]
    assert tuple(task.train_sizes) == train
    assert tuple(task.test_sizes) == test
    # The test range is the next sizes up to twice the largest training size.
    assert test[0] == train[1] + 1 and test[1] == 2 * train[1]
    assert task.check_sizes(task.train_sizes) == train
    assert task.check_sizes(task.test_sizes) == test


def test_min_sizes():
    for name in PAPER_ORDER:
        assert tasks.get(name).min_size == (2 if name in MIN_SIZE_2 else 1), name


# Size validation.


@pytest.mark.parametrize(
    ("name", "sizes", "message"),
    [
        ("copy", (5, 2), "empty"),
        ("copy", (0, 3), "start at 1"),
        ("associative_recall", (1, 3), "start at 2"),
        ("copy", ("a", 3), "integers"),
        ("copy", (2.5, 4), "integers"),
        ("copy", (2, 4.0), "integers"),
        ("copy", (True, 3), "integers"),
        ("copy", (2,), "integers"),
        ("copy", (1, 2, 3), "integers"),
        ("copy", 5, "integers"),
        ("copy", None, "integers"),
        ("double", (-3, -1), "start at 1"),
        ("bigram_flip", (1, 16), "start at 2"),  # one symbol makes no pair
        ("odd_first", (1, 16), "start at 2"),
    ],
)
def test_check_sizes_rejects_bad_ranges(name, sizes, message):
    with pytest.raises(ConfigError, match=message) as error:
        tasks.get(name).check_sizes(sizes)
    assert repr(name) in str(error.value)


def test_check_sizes_accepts_single_sizes_and_numpy_integers():
    assert tasks.get("copy").check_sizes((1, 1)) == (1, 1)
    assert tasks.get("associative_recall").check_sizes([2, 2]) == (2, 2)
    bounds = tasks.get("double").check_sizes((np.int64(3), np.int32(7)))
    assert bounds == (3, 7) and all(type(bound) is int for bound in bounds)


@pytest.mark.parametrize("name", PAPER_ORDER)
@pytest.mark.parametrize("size", [0, -1, 2.5, True, "3", None])
def test_bad_sizes_are_refused(name, size):
    task = tasks.get(name)
    with pytest.raises(ConfigError):
        task.check_size(size)
    with pytest.raises(ConfigError):
        task.generate(size, 2, np.random.default_rng(0))


@pytest.mark.parametrize("name", ["bigram_flip", "odd_first"])
def test_paired_tasks_need_two_symbols(name):
    task = tasks.get(name)
    with pytest.raises(ConfigError, match="size must be an integer in \\[2, "):
        task.generate(1, 2, np.random.default_rng(0))
    assert task.generate(2, 3, np.random.default_rng(0)).inputs.shape == (3, 2)


def test_associative_recall_needs_two_items():
    task = tasks.get("associative_recall")
    with pytest.raises(ConfigError):
        task.generate(1, 2, np.random.default_rng(0))
    with pytest.raises(ConfigError):
        task.sample((1, 6), 2, np.random.default_rng(0))
    assert task.check_size(np.int64(2)) == 2


# The input -> target mappings.


@pytest.mark.parametrize("case", CASES, ids=str)
@given(data=st.data(), seed=SEEDS)
def test_generated_examples_match_the_reference(case, data, seed):
    task = case.task()
    size = data.draw(st.integers(task.min_size, TABLE_SIZES[case.name][1][1]), label="size")
    count = data.draw(st.integers(1, 5), label="count")
    check_examples(case, task.generate(size, count, np.random.default_rng(seed)), size, count)


@pytest.mark.parametrize("name", PAPER_ORDER)
def test_range_endpoints_match_the_reference(name):
    case = Case(name)
    task = case.task()
    rng = np.random.default_rng(7)
    for size in {task.min_size, *TABLE_SIZES[name][0], *TABLE_SIZES[name][1]}:
        check_examples(case, task.generate(size, 8, rng), size, 8)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_every_symbol_is_drawn_and_only_where_it_belongs(case):
    task = case.task()
    size = TABLE_SIZES[case.name][0][1]
    inputs, targets = task.generate(size, 400, np.random.default_rng(1))
    plain = set(range(case.plain))
    assert set(inputs.ravel().tolist()) == set(range(len(case.symbols)))
    # Targets hold only plain symbols: no unary or item marks, no markers.
    assert set(targets.ravel().tolist()) == plain


def test_repeat_copy_marks_lead_the_input():
    task = tasks.get("repeat_copy")
    inputs, targets = task.generate(3, 50, np.random.default_rng(2))
    assert (inputs[:, :3] == 128).all()
    assert (inputs[:, 3:] < 128).all()
    assert inputs.shape[1] == 23 and targets.shape[1] == 60


def test_priority_sort_draws_every_permutation():
    case = Case("priority_sort")
    inputs, _ = case.task().generate(3, 600, np.random.default_rng(3))
    orders = Counter(tuple(parse_priorities(row, case)[0]) for row in inputs.tolist())
    assert set(orders) == {(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)}
    assert min(orders.values()) > 50


def test_associative_recall_queries_every_item_but_the_last():
    case = Case("associative_recall")
    inputs, _ = case.task().generate(4, 600, np.random.default_rng(4))
    queried = Counter(parse_recall(row, case)[1] for row in inputs.tolist())
    assert set(queried) == {0, 1, 2}
    assert min(queried.values()) > 120


def test_associative_recall_items_are_distinct_even_when_few_exist():
    # One-symbol items from 2 symbols: the only two distinct items are (0,) and (1,), so many draws repeat.
    case = Case("associative_recall", {"symbol_count": 2, "item_length": 1})
    task = case.task()
    examples = task.generate(2, 200, np.random.default_rng(5))
    check_examples(case, examples, 2, 200)
    assert sorted(map(sorted, examples.inputs[:, [1, 3]].tolist())) == [[0, 1]] * 200
    with pytest.raises(ConfigError, match="3 distinct items"):
        task.generate(3, 1, np.random.default_rng(5))


# Arithmetic: uniform numbers, uniform digits, and carries that reach the last digit.


@pytest.mark.parametrize("digit_order", ["msb", "lsb"])
def test_double_draws_x_uniformly_below_10_to_the_k(digit_order):
    inputs, targets = tasks.get("double", digit_order=digit_order).generate(2, 20_000, np.random.default_rng(6))
    # Where the tens and the hundreds sit: first with the most significant digit first, last otherwise.
    tens, units, top_column = (0, 1, 0) if digit_order == "msb" else (1, 0, 2)
    x = 10 * inputs[:, tens] + inputs[:, units]
    counts = np.bincount(x, minlength=100)
    assert len(counts) == 100 and counts.min() > 120 and counts.max() < 290
    top = targets[:, top_column]
    assert set(top.tolist()) == {0, 1}
    # The top digit of 2x is 1 exactly when x >= 50, half the time.
    assert (top == (x >= 50)).all()
    assert abs(top.mean() - 0.5) < 0.03


def test_interleaved_add_draws_independent_uniform_numbers():
    inputs, targets = tasks.get("interleaved_add").generate(2, 20_000, np.random.default_rng(7))
    x = inputs[:, 0] + 10 * inputs[:, 2]
    y = inputs[:, 1] + 10 * inputs[:, 3]
    for value in (x, y):
        counts = np.bincount(value, minlength=100)
        assert len(counts) == 100 and counts.min() > 120 and counts.max() < 290
    assert abs(np.corrcoef(x, y)[0, 1]) < 0.05
    top = targets[:, 2]
    assert set(top.tolist()) == {0, 1}
    assert (top == (x + y >= 100)).all()
    # 4950 of the 10^4 pairs below 100 sum to 100 or more.
    assert abs(top.mean() - 0.495) < 0.03
    # A carry from the low digits passes through a middle 9 to the top: x0 + y0 >= 10 and x1 + y1 == 9.
    rippled = (inputs[:, 0] + inputs[:, 1] >= 10) & (inputs[:, 2] + inputs[:, 3] == 9)
    assert rippled.sum() > 500
    assert (targets[rippled, 1] == 0).all() and (targets[rippled, 2] == 1).all()


@pytest.mark.parametrize(
    ("name", "options", "lowest_column"),
    [("double", {}, -1), ("double", {"digit_order": "lsb"}, 0), ("interleaved_add", {}, 0)],
)
def test_digits_are_roughly_uniform(name, options, lowest_column):
    inputs, targets = tasks.get(name, **options).generate(5, 4000, np.random.default_rng(8))
    for column in inputs.T:
        counts = np.bincount(column, minlength=10)
        assert len(counts) == 10 and counts.min() > 300 and counts.max() < 500
    # The answer digits between the lowest and the top (a carry, 0 or 1) are uniform too.
    for column in targets[:, 1:-1].T:
        counts = np.bincount(column, minlength=10)
        assert len(counts) == 10 and counts.min() > 300 and counts.max() < 500
    top = targets[:, -1 - lowest_column]  # the other end: 0 or 1
    assert set(top.tolist()) == {0, 1}
    lowest = np.bincount(targets[:, lowest_column], minlength=10)
    if name == "double":
        # 2x is even: its lowest digit is one of 0, 2, 4, 6, 8, each a fifth of the time.
        assert lowest[1::2].sum() == 0 and lowest[0::2].min() > 650 and lowest[0::2].max() < 950
    else:
        assert lowest.min() > 300 and lowest.max() < 500


def test_double_writes_most_significant_digits_first_by_default():
    """The authors' generator writes x and 2x as text, most significant digit first; 'lsb' is the paper's text."""
    assert tasks.get("double").digit_order == "msb"
    msb = tasks.get("double").generate(12, 300, np.random.default_rng(21))
    explicit = tasks.get("double", digit_order="msb").generate(12, 300, np.random.default_rng(21))
    lsb = tasks.get("double", digit_order="lsb").generate(12, 300, np.random.default_rng(21))
    np.testing.assert_array_equal(msb.inputs, explicit.inputs)
    np.testing.assert_array_equal(msb.targets, explicit.targets)
    assert msb.inputs.shape == (300, 12) and msb.targets.shape == (300, 13)
    for row_in, row_out in zip(msb.inputs.tolist(), msb.targets.tolist(), strict=True):
        x = int("".join(map(str, row_in)))
        assert int("".join(map(str, row_out))) == 2 * x, row_in
        assert "".join(map(str, row_out)) == str(2 * x).zfill(13)  # zero padded on the left
    for row_in, row_out in zip(lsb.inputs.tolist(), lsb.targets.tolist(), strict=True):
        x = int("".join(map(str, reversed(row_in))))
        assert int("".join(map(str, reversed(row_out)))) == 2 * x, row_in
    # From one random stream the two orders draw the same numbers, written in opposite directions.
    np.testing.assert_array_equal(msb.inputs, lsb.inputs[:, ::-1])
    np.testing.assert_array_equal(msb.targets, lsb.targets[:, ::-1])
    # And the orders differ in fact: an example that reads the same both ways is rare at 12 digits.
    assert not np.array_equal(msb.inputs, lsb.inputs)


@pytest.mark.parametrize("name", ["bigram_flip", "odd_first"])
def test_paired_tasks_round_an_odd_size_down_to_even(name):
    case = Case(name)
    task = case.task()
    five = task.generate(5, 20, np.random.default_rng(22))
    assert five.inputs.shape == (20, 4) and five.targets.shape == (20, 4)  # 4 symbols: 2 pairs
    check_examples(case, five, 4, 20)
    # 33, the smallest test size, has 32 symbols: as many as the largest training size.
    assert task.generate(33, 3, np.random.default_rng(22)).inputs.shape == (3, 32)
    assert task.generate(64, 3, np.random.default_rng(22)).inputs.shape == (3, 64)
    # Size 5 is size 4 exactly: from the same random stream both draw the same examples.
    four = task.generate(4, 20, np.random.default_rng(22))
    np.testing.assert_array_equal(four.inputs, five.inputs)


@pytest.mark.parametrize(
    ("name", "sizes", "lengths"),
    [
        ("bigram_flip", (2, 32), range(2, 33, 2)),
        ("odd_first", (2, 32), range(2, 33, 2)),
        ("bigram_flip", (33, 64), range(32, 65, 2)),
        ("odd_first", (33, 64), range(32, 65, 2)),
    ],
)
def test_paired_tasks_draw_each_even_symbol_count_as_often_as_its_sizes(name, sizes, lengths):
    """Sizes drawn uniformly then rounded down to even: each inner even count comes from two sizes (2j and
    2j + 1), the lowest of a range that starts odd and the highest of one that ends even from one only."""
    groups = tasks.get(name).sample(sizes, 32_000, np.random.default_rng(23))
    counts = Counter()
    for examples in groups:
        assert examples.inputs.shape[1] % 2 == 0
        counts[examples.inputs.shape[1]] += len(examples.inputs)
    assert sorted(counts) == list(lengths)
    share = {length: count / 32_000 for length, count in counts.items()}
    single = 1 / (sizes[1] - sizes[0] + 1)  # one size's share
    low, high = lengths[0], lengths[-1]
    # Training: 2 comes from 2 and 3, 32 from 32 alone. Test: 32 from 33 alone, 64 from 64 alone.
    low_sizes = 2 if sizes[0] % 2 == 0 else 1
    assert share[low] == pytest.approx(low_sizes * single, rel=0.2)
    assert share[high] == pytest.approx(single, rel=0.2)
    for length in lengths[1:-1]:
        assert share[length] == pytest.approx(2 * single, rel=0.15), length


# Determinism and sampling.


@pytest.mark.parametrize("name", PAPER_ORDER)
def test_same_seed_same_examples_and_different_seeds_differ(name):
    task = tasks.get(name)
    size = TABLE_SIZES[name][0][1]
    first = task.generate(size, 16, np.random.default_rng(11))
    again = task.generate(size, 16, np.random.default_rng(11))
    other = task.generate(size, 16, np.random.default_rng(12))
    np.testing.assert_array_equal(first.inputs, again.inputs)
    np.testing.assert_array_equal(first.targets, again.targets)
    assert not np.array_equal(first.inputs, other.inputs)
    # The generator is the one passed in: a second draw from the same rng goes on with new examples.
    rng = np.random.default_rng(11)
    task.generate(size, 16, rng)
    assert not np.array_equal(task.generate(size, 16, rng).inputs, first.inputs)


@pytest.mark.parametrize("case", DEFAULT_CASES, ids=str)
@given(data=st.data(), seed=SEEDS)
def test_sample_groups_sizes_within_the_range(case, data, seed):
    task = case.task()
    largest = TABLE_SIZES[case.name][1][1]
    low = data.draw(st.integers(task.min_size, largest), label="low")
    high = data.draw(st.integers(low, largest), label="high")
    count = data.draw(st.integers(0, 12), label="count")
    groups = task.sample((low, high), count, np.random.default_rng(seed))
    assert sum(len(examples.inputs) for examples in groups) == count
    lengths = [examples.inputs.shape[1] for examples in groups]
    # Groups come by size, ascending: their lengths never fall, and a length repeats only where two sizes
    # share it (a paired task's even size and the odd one above it).
    assert lengths == sorted(lengths)
    for length, repeats in Counter(lengths).items():
        assert repeats <= len(case.sizes_of_input(length, (low, high))), (length, repeats)
    for length, examples in zip(lengths, groups, strict=True):
        size = case.sizes_of_input(length, (low, high))[0]
        check_examples(case, examples, size, len(examples.inputs))
    again = task.sample((low, high), count, np.random.default_rng(seed))
    assert len(again) == len(groups)
    for examples, repeat in zip(groups, again, strict=True):
        np.testing.assert_array_equal(examples.inputs, repeat.inputs)
        np.testing.assert_array_equal(examples.targets, repeat.targets)


def test_sample_draws_every_size_of_the_range():
    case = Case("copy")
    groups = case.task().sample((2, 9), 800, np.random.default_rng(13))
    counts = {case.size_of_input(examples.inputs.shape[1], (2, 9)): len(examples.inputs) for examples in groups}
    assert sorted(counts) == list(range(2, 10))
    assert min(counts.values()) > 60


@pytest.mark.parametrize("sizes", [(5, 2), (0, 3), (2.5, 4)])
def test_sample_refuses_bad_ranges(sizes):
    with pytest.raises(ConfigError):
        tasks.get("copy").sample(sizes, 4, np.random.default_rng(0))


# Markers.


@pytest.mark.parametrize("case", CASES, ids=str)
def test_encode_frames_inputs_and_targets_with_markers(case):
    task = case.task()
    size = TABLE_SIZES[case.name][0][0]
    examples = task.generate(size, 6, np.random.default_rng(14))
    inputs, targets = task.encode(examples)
    n_symbols = len(case.symbols)
    assert inputs.dtype == np.int64 and targets.dtype == np.int64
    assert inputs.shape == (6, case.input_length(size) + 2)
    assert targets.shape == (6, case.target_length(size) + 1)
    assert (inputs[:, 0] == n_symbols).all() and (inputs[:, -1] == n_symbols + 1).all()
    assert (targets[:, -1] == n_symbols + 2).all()
    np.testing.assert_array_equal(inputs[:, 1:-1], examples.inputs)
    np.testing.assert_array_equal(targets[:, :-1], examples.targets)
    # Markers appear nowhere else.
    assert (inputs[:, 1:-1] < n_symbols).all() and (targets[:, :-1] < n_symbols).all()
    decoded = task.decode(inputs[0])
    assert decoded[0] == "<start>" and decoded[-1] == "<sep>"
    assert task.decode(targets[0])[-1] == "<end>"


def test_encode_of_hand_built_examples():
    task = tasks.get("double")
    examples = tasks.Examples(np.array([[3, 7]]), np.array([[0, 7, 4]]))  # 37 * 2 = 74, most significant first
    inputs, targets = task.encode(examples)
    assert inputs.tolist() == [[10, 3, 7, 11]]
    assert targets.tolist() == [[0, 7, 4, 12]]
    assert task.decode(inputs[0]) == ["<start>", "3", "7", "<sep>"]
    assert task.decode(targets[0]) == ["0", "7", "4", "<end>"]
