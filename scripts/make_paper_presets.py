"""Writes `liemem/presets/paper.json`: every cell of the paper's table 1b with the authors' kept settings.

    python scripts/make_paper_presets.py [--paper ../shared/paper] [--check]

The source is the project's transcription of the paper's table 1b and of the authors' run files
(`table-1b.tsv`, `grid-winners.tsv`; their README explains the columns). The settings are written in liemem's
own vocabulary, as `TrainConfig` fields, so the package needs nothing outside itself. `--check` exits with
status 1 when the shipped file differs from what the source gives.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "liemem" / "presets" / "paper.json"
DEFAULT_SOURCE = ROOT.parent / "shared" / "paper"
INIT_NAMES = {"torch-default": "default", "uniform[-1,1]": "uniform"}
TABLE_COLUMNS = {
    "lstm": "LSTM", "ram": "RAM", "ram-tape": "RAM/Tape", "lantm": "LANTM", "lantm-s": "LANTM-s",
    "slantm": "SLANTM", "slantm-s": "SLANTM-s",
}  # fmt: skip
# What every run of the authors' code shares (their options.lua and run files): 1,000 iterations of 10 steps,
# the rate at full strength from the first step, gradients clipped to a global norm of 32, and evaluations every 50
# iterations counted after iteration 500.
SHARED = {"steps": 10_000, "batch_size": 32, "warmup_steps": 0, "clip_norm": 32.0, "eval_every": 500,
          "best_after": 5_000, "eval_samples": 3_200}  # fmt: skip
ITERATION_STEPS = 10
LIE_ACCESS_MODELS = ("lantm", "lantm-s", "slantm", "slantm-s")


def read_rows(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def paper_score(text: str) -> dict:
    """'fine/coarse' in percent, or '*' for exactly 100/100, as fractions."""
    if text == "*":
        return {"fine": 1.0, "coarse": 1.0}
    fine, coarse = text.split("/")
    return {"fine": int(fine) / 100, "coarse": int(coarse) / 100}


def settings(row: dict, sizes: dict) -> dict:
    """The `TrainConfig` fields of one kept run."""
    options: dict = {"init": INIT_NAMES[row["init"]]}
    if row["model"] in LIE_ACCESS_MODELS:  # their read head starts half way to random access
        options["read_gate_bias"] = 0.0
    if row["angle_bound"]:
        options["group_options"] = {"angle_bound": row["angle_bound"] == "true"}
    if row["key_dim"]:
        options["key_dim"] = int(row["key_dim"])
    if row["sharpening"]:
        options["sharpening"] = row["sharpening"] == "true"
    if row["lstm_layers"]:
        options.update(
            layers=int(row["lstm_layers"]), hidden_size=int(row["rnn_size"]), embedding_size=int(row["embedding_size"])
        )
    train, test = sizes[row["task"]]
    return {
        "task": row["task"],
        "model": row["model"],
        "regime": row["regime"],
        "lr": float(row["learning_rate"]),
        "decay_after": ITERATION_STEPS * int(row["decay_delay_iters"]),
        "train_lengths": list(train),
        "test_lengths": list(test),
        **SHARED,
        "model_options": options,
    }


def build(source: Path) -> dict:
    """The presets file's contents from the two tables in `source`."""
    from liemem import tasks  # the paper's sizes are the tasks' defaults, fixed here in the presets

    sizes = {name: (tasks.get(name).train_sizes, tasks.get(name).test_sizes) for name in tasks.names()}
    scores = {row["task"]: row for row in read_rows(source / "table-1b.tsv")}
    cells = []
    for row in read_rows(source / "grid-winners.tsv"):
        column = f"{TABLE_COLUMNS[row['model']]} {row['regime'][0].upper()}"
        cells.append({"settings": settings(row, sizes), "paper": paper_score(scores[row["task"]][column])})
    return {
        "about": "The paper's table 1b (best of its grid and seeds 1-3, at the 2x lengths) and the settings of the "
        "run the authors kept for each cell. Written by scripts/make_paper_presets.py.",
        "cells": cells,
    }


def render(data: dict) -> str:
    """One cell per line, so that a change to a cell is a one-line difference."""
    cells = ",\n".join("  " + json.dumps(cell) for cell in data["cells"])
    return f'{{\n "about": {json.dumps(data["about"])},\n "cells": [\n{cells}\n ]\n}}\n'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paper", type=Path, default=DEFAULT_SOURCE, help="folder of the two TSV tables")
    parser.add_argument("--check", action="store_true", help="only compare with the shipped file")
    args = parser.parse_args()
    text = render(build(args.paper))
    if args.check:
        same = TARGET.exists() and TARGET.read_text() == text
        print("up to date" if same else f"{TARGET} differs from {args.paper}")
        return 0 if same else 1
    TARGET.write_text(text)
    print(TARGET)
    return 0


if __name__ == "__main__":
    sys.exit(main())
