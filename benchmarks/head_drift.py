"""Where a Lie-access run's read head goes while it answers copy or reverse: how far, in slots, it lands from the key
it should read at each answer step, at the training length and beyond.

A run that fits its training lengths but does not extrapolate usually walks the written trail with a step that is
a few percent off the write head's: harmless over 8 slots, fatal over 16. This prints, for each length, the share
of answer symbols right, the mean length of a write step and of an answer-phase read step, and the distance from
the read head to its target key at every answer step, in units of the mean write step.

    python benchmarks/head_drift.py RUN [--lengths 8 16] [--samples 64]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from liemem.training.loop import restore_model

TASKS = ("copy", "reverse")


def target_slots(task: str, symbols: int) -> list[int]:
    """The memory slot each answer symbol is read from: slot 0 is the initial one, slot 1 holds the start marker,
    slot i + 1 the i-th input symbol (1-based)."""
    if task not in TASKS:
        raise SystemExit(f"head_drift: task {task!r} is not one of {', '.join(TASKS)}")
    order = range(1, symbols + 1) if task == "copy" else range(symbols, 0, -1)
    return [i + 1 for i in order]


class Drift(NamedTuple):
    write_step: float  # mean length of a write step between symbol slots
    write_step_spread: float  # its standard deviation
    read_step: float  # mean length of a read step between answer steps
    misses: list[float]  # per answer symbol: mean distance from the read head to its target key, in write steps


def drift(keys: torch.Tensor, read_positions: torch.Tensor, input_steps: int, slots: list[int]) -> Drift:
    """Drift of a traced batch: `keys` `[B, slots, d]`, `read_positions` `[B, steps, d]` (after each step's move),
    `input_steps` steps before the answers, `slots` the target slot of each answer symbol."""
    symbols = keys[:, 2:]  # the slots of the input symbols
    writes = (symbols[:, 1:] - symbols[:, :-1]).norm(dim=-1)
    answers = read_positions[:, input_steps : input_steps + len(slots)]
    reads = (answers[:, 1:] - answers[:, :-1]).norm(dim=-1)
    unit = writes.mean()
    misses = [((answers[:, j] - keys[:, slot]).norm(dim=-1).mean() / unit).item() for j, slot in enumerate(slots)]
    return Drift(unit.item(), writes.std().item(), reads.mean().item(), misses)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--lengths", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--samples", type=int, default=64)
    args = parser.parse_args()
    model, task, config, step = restore_model(args.run, device="cpu", best=True)
    if not hasattr(model, "trace"):
        raise SystemExit(f"head_drift: model {config.model!r} has no Lie-access heads to trace")
    print(f"{args.run}: {config.model} on {config.task}, best weights (step {step})")
    for length in args.lengths:
        examples = task.generate(length, args.samples, np.random.default_rng(0))
        inputs, targets = (torch.from_numpy(a) for a in task.encode(examples))
        with torch.no_grad():
            trace = model.trace(inputs, targets.shape[1])
        right = (trace.logits.argmax(-1) == targets).float().mean().item()
        result = drift(
            trace.keys, trace.read_positions, trace.write_positions.shape[1], target_slots(config.task, length)
        )
        misses = " ".join(f"{m:.2f}" for m in result.misses)
        print(
            f"length {length}: {100 * right:.1f}% of answer symbols right; write step {result.write_step:.3f} "
            f"(sd {result.write_step_spread:.3f}), read step {result.read_step:.3f}; read head to target key, in "
            f"write steps, per answer symbol: {misses}"
        )


if __name__ == "__main__":
    main()
