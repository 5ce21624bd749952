"""How the gradient grows backward in time through a Lie-access model's reads, at one training step of a run.

Loads a run's checkpoint, takes the training batch of the step after it, and runs that step's forward and
backward pass in float64 on the plain autograd loop. For each time step it prints the largest softmax temperature
and the smallest one over the batch, and the largest gradient of the loss with respect to the read head's
position there: a gradient that grows by orders of magnitude from the last time step back to the first is what
overflows float32 (see `float64_on_overflow` in `liemem.training.config`).

    python benchmarks/read_gradients.py RUN [--every 8]

To see the step where SLANTM-s on copy (large regime, the paper's settings) overflowed float32, stop that run at
its first overflow, which keeps the checkpoint of step 100:

    liemem train --preset paper --task copy --model slantm-s --regime large --no-float64-on-overflow --out RUN
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import torch

from liemem import engine, memory
from liemem.training.data import batch_loss, to_buckets, train_examples
from liemem.training.loop import restore_model


def read_gradients(run: Path) -> tuple[int, list[dict]]:
    """The step computed (the checkpoint's plus one) and, per time step, the temperatures and read gradient."""
    model, task, config, step = restore_model(run, device="cpu")
    model = model.double()
    # The plain loop calls memory.read_by_distance once per time step.
    os.environ[engine.SWITCH] = "autograd"
    small = config.regime == "small"
    index = step % config.small_regime_batches if small else step
    data_seed = config.seed if config.data_seed is None else config.data_seed
    examples = train_examples(
        task, config.train_lengths, index, config.batch_size, data_seed, config.one_length_per_batch
    )
    rows: list[dict] = []
    read = memory.read_by_distance

    def watched(state, query, key_space, parameters=None, weigh=None):
        row = {"slots": state.size}
        if parameters is not None:  # the softmax's temperature
            row["temperature"] = (parameters.min().item(), parameters.max().item())
        query.register_hook(lambda grad: row.__setitem__("gradient", grad.abs().max().item()))
        rows.append(row)
        return read(state, query, key_space, parameters, weigh)

    memory.read_by_distance = watched
    try:
        batch_loss(model, to_buckets(task, examples, torch.device("cpu"))).loss.backward()
    finally:
        memory.read_by_distance = read
    return step + 1, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a run directory with a checkpoint of a Lie-access model")
    parser.add_argument("--every", type=int, default=8, help="print every Nth time step (and the extremes)")
    args = parser.parse_args()
    step, rows = read_gradients(args.run)
    gradients = [row.get("gradient", 0.0) for row in rows]
    peak = max(range(len(rows)), key=gradients.__getitem__)
    print(f"training step {step}: {len(rows)} time steps, float64, plain loop")
    print("time step  slots  temperature (min, max)   largest |dL/dq|")
    for t, row in enumerate(rows):
        if t % args.every and t not in (peak, len(rows) - 1):
            continue
        low, high = row.get("temperature", (math.nan, math.nan))
        print(f"{t:9d}  {row['slots']:5d}  {low:10.3g} {high:10.3g}   {row.get('gradient', 0.0):14.3g}")
    last = next((g for g in reversed(gradients) if g > 0), 0.0)
    if last > 0:
        print(
            f"largest at time step {peak}: {gradients[peak]:.3g}, {math.log10(gradients[peak] / last):.1f} orders "
            f"of magnitude above the last time step's {last:.3g}"
        )


if __name__ == "__main__":
    main()
