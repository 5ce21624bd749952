"""Train a Lie-access machine whose heads move by a group defined outside the library: SO(2) on the circle.

    python examples/train_custom_group.py [--steps 1500] [--out runs/so2-copy]

Importing `custom_group` registers the group "so2"; from then on "so2" is a model name like any other, and
the training loop, checkpoints and evaluation need nothing more. It trains on copy with short sequences and
prints the scores at twice the training length. The command line trains it too once it imports the module
(with the paper's decay and evaluation settings rather than this script's):

    liemem train --import examples/custom_group.py --model so2 --train-lengths 2-8 --test-lengths 9-16 \
        --steps 1500 --out runs/so2-copy
    liemem eval runs/so2-copy --import examples/custom_group.py
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import custom_group  # noqa: F401  (registers "so2")

from liemem.training import TrainConfig, train


def main(argv=None) -> int:
    """Train "so2" on copy and print the run's summary as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--eval-samples", type=int, default=640)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="runs/so2-copy")
    args = parser.parse_args(argv)
    config = TrainConfig(
        task="copy",
        model="so2",
        train_lengths=(2, 8),
        test_lengths=(9, 16),
        steps=args.steps,
        decay_after=args.steps // 2,
        eval_every=max(args.steps // 5, 1),
        eval_samples=args.eval_samples,
        device=args.device,
    )
    print(json.dumps(train(config, args.out).as_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
