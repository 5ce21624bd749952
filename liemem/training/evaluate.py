"""Fine and coarse scores (paper, section 5): greedy predictions on held-out examples, usually at 2x length."""

from __future__ import annotations

from typing import NamedTuple

import torch

from .. import footprint
from ..tasks import Task
from .data import Bucket, test_examples, to_buckets


class Scores(NamedTuple):
    """`fine`: fraction of answer symbols right; `coarse`: fraction of examples entirely right (end marker
    included in both)."""

    fine: float
    coarse: float
    samples: int

    def as_dict(self) -> dict:
        """The scores as plain data."""
        return {"fine": self.fine, "coarse": self.coarse, "samples": self.samples}

    def better_than(self, other: Scores | None) -> bool:
        """Whether these scores beat `other`: more examples right, then more symbols right."""
        return other is None or (self.coarse, self.fine) > (other.coarse, other.fine)


@torch.inference_mode()
def score(model: torch.nn.Module, buckets: list[Bucket]) -> Scores:
    """Greedy fine and coarse scores of `model` over `buckets`."""
    was_training = model.training
    model.eval()
    try:
        right_symbols = right_samples = symbols = samples = 0
        counts = []
        for bucket in buckets:
            predicted = model(bucket.inputs, bucket.targets.shape[1]).argmax(dim=-1)
            right = predicted == bucket.targets
            counts.append(torch.stack((right.sum(), right.all(dim=1).sum())))
            symbols += bucket.targets.numel()
            samples += bucket.targets.shape[0]
        if counts:
            right_symbols, right_samples = torch.stack(counts).sum(dim=0).tolist()  # one device sync
    finally:
        model.train(was_training)
    if samples == 0:
        raise ValueError("no examples to score")
    return Scores(right_symbols / symbols, right_samples / samples, samples)


def evaluate(
    model: torch.nn.Module,
    task: Task,
    sizes: tuple[int, int],
    count: int = 3_200,
    seed: int = 0,
    batch_size: int = 32,
    device: torch.device | str | None = None,
    one_length: bool = True,
) -> Scores:
    """Scores on `count` test examples drawn from `sizes` with `seed` (one size per batch of `batch_size`, or per
    example if not `one_length`; see `data.test_examples`), in buckets of `batch_size`. Raises
    `footprint.MemoryLimitError` first if the longest batch would not fit in the device's free memory."""
    if device is None:
        device = next(model.parameters()).device
    sizes = task.check_sizes(sizes)
    longest = footprint.longest_sequence(task, sizes)
    advice = "evaluate shorter lengths or in smaller batches"
    footprint.check(model, min(batch_size, count), longest, False, device, "evaluation", advice)
    groups = test_examples(task, sizes, count, seed, batch_size, one_length)
    return score(model, to_buckets(task, groups, device, batch_size))
