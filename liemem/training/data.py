"""Batches for training and evaluation, drawn deterministically from a seed.

Training batch i is drawn from its own random stream (seed, i), so a run can start or resume at any step
without replaying the ones before it, and the small regime's data is exactly the large regime's first batches.
Examples of different lengths never share a tensor: a batch is a list of *buckets*, each holding examples of
one shape, so no padding or mask touches any example's loss.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from ..tasks import Examples, Task

TRAIN_STREAM, TEST_STREAM, CURRICULUM_STREAM = 0, 1, 2


class Bucket(NamedTuple):
    """Examples of one shape: model inputs `[n, input_length]` (markers included), targets `[n, answer_length]`."""

    inputs: torch.Tensor
    targets: torch.Tensor


def generator(seed: int, stream: int, index: int = 0) -> np.random.Generator:
    """The random stream of one training batch, or of a test set."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, index)))


def train_examples(
    task: Task,
    sizes: tuple[int, int],
    batch_index: int,
    batch_size: int,
    seed: int,
    one_length: bool = True,
    stream: int = TRAIN_STREAM,
) -> list[Examples]:
    """Training batch `batch_index`: one size drawn for the whole batch (the paper's way), or one per example.
    The curriculum's batches come from a `stream` of their own, so the training data after it is unchanged."""
    rng = generator(seed, stream, batch_index)
    if one_length:
        size = int(rng.integers(sizes[0], sizes[1] + 1))
        return [task.generate(size, batch_size, rng)]
    return task.sample(sizes, batch_size, rng)


def curriculum_sizes(sizes: tuple[int, int], step: int, curriculum_steps: int) -> tuple[int, int]:
    """The training sizes at optimizer step `step` (1-based) of a curriculum over `curriculum_steps` steps: the
    longest size grows linearly from the shortest, at step 1, to the longest, at the curriculum's end."""
    shortest, longest = sizes
    return (shortest, shortest + (longest - shortest) * step // curriculum_steps)


def test_examples(
    task: Task, sizes: tuple[int, int], count: int, seed: int, batch_size: int = 32, one_length: bool = True
) -> list[Examples]:
    """A test set of `count` examples, in groups of one size each, ordered by size.

    As the authors' test files are made, each batch of `batch_size` examples has one size drawn uniformly from
    `sizes` (so a 3,200-example set of 64 sizes leaves some out and repeats others); with `one_length` false,
    each example has its own size.
    """
    rng = generator(seed, TEST_STREAM)
    if not one_length:
        return task.sample(sizes, count, rng)
    groups = []
    for start in range(0, count, batch_size):
        size = int(rng.integers(sizes[0], sizes[1] + 1))
        groups.append(task.generate(size, min(batch_size, count - start), rng))
    return sorted(groups, key=lambda examples: examples.inputs.shape[1])


def to_buckets(
    task: Task, groups: list[Examples], device: torch.device | str, batch_size: int | None = None
) -> list[Bucket]:
    """Encode groups of equal-shape examples as tensors on `device`, split into buckets of at most `batch_size`."""
    buckets = []
    for examples in groups:
        inputs, targets = task.encode(examples)
        step = batch_size or len(inputs)
        for start in range(0, len(inputs), step):
            buckets.append(
                Bucket(
                    torch.from_numpy(inputs[start : start + step]).to(device, non_blocking=True),
                    torch.from_numpy(targets[start : start + step]).to(device, non_blocking=True),
                )
            )
    return buckets


class BatchLoss(NamedTuple):
    """A batch's mean loss per answer symbol, and how many of its symbols and examples greedy decoding gets right
    (as 0-d tensors, so that reading them costs no extra device sync)."""

    loss: torch.Tensor
    right_symbols: torch.Tensor
    right_examples: torch.Tensor
    symbols: int
    examples: int


def symbol_loss(model: torch.nn.Module, buckets: list[Bucket]) -> torch.Tensor:
    """Cross-entropy per answer symbol, averaged over every symbol of every bucket (the paper's objective).

    Each example's terms are the same whichever bucket it sits in, since buckets are run separately.
    """
    return batch_loss(model, buckets).loss


def batch_loss(model: torch.nn.Module, buckets: list[Bucket]) -> BatchLoss:
    """`symbol_loss`, with the greedy predictions' hits counted as the evaluation counts them."""
    total, symbols, examples = 0.0, 0, 0
    hits = []
    for bucket in buckets:
        logits = model(bucket.inputs, bucket.targets.shape[1])
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()  # the log-softmax of half-precision logits loses the small probabilities
        total = total + torch.nn.functional.cross_entropy(
            logits.flatten(0, 1), bucket.targets.flatten(), reduction="sum"
        )
        right = logits.detach().argmax(dim=-1) == bucket.targets
        hits.append(torch.stack((right.sum(), right.all(dim=1).sum())))
        symbols += bucket.targets.numel()
        examples += bucket.targets.shape[0]
    right_symbols, right_examples = torch.stack(hits).sum(dim=0)
    return BatchLoss(total / symbols, right_symbols, right_examples, symbols, examples)
