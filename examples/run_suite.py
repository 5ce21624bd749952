"""Run the task suite for chosen models and write a results table in the layout of the paper's table 1b.

    python examples/run_suite.py --models lantm slantm --regimes small large --out results/suite

Each (task, model, regime, seed) run trains with `examples/configs/<model>.toml` (or the model's defaults)
into its own directory, so an interrupted suite resumes where it stopped and finished runs are not redone.
As in the paper, a cell is the best of the run's evaluations on the 2x-length test set, and the best over the
seeds given; `results.json` also keeps each run's final scores. Runs use CUDA when present unless --device says.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import liemem
from liemem.training import TrainConfig, TrainingDiverged, load_config, train

CONFIGS = Path(__file__).resolve().parent / "configs"
PAPER_TASKS = (
    "copy", "reverse", "bigram_flip", "double", "interleaved_add", "odd_first", "repeat_copy", "priority_sort"
)  # fmt: skip
DISPLAY = {
    "lstm": "LSTM", "ram": "RAM", "ram-tape": "RAM/Tape", "lantm": "LANTM", "lantm-s": "LANTM-s",
    "slantm": "SLANTM", "slantm-s": "SLANTM-s", "ntm": "NTM",
}  # fmt: skip
REGIME_LETTER = {"small": "S", "large": "L"}


def percent(value: float) -> int:
    """A score as the paper prints it: whole percents, and 100 only when exact (99.5 and up shows as 99)."""
    return 100 if value == 1.0 else min(round(100 * value), 99)


def cell(scores: dict | None) -> str:
    """A table cell: "fine/coarse", "*" for 100/100, "-" for no score."""
    if scores is None:  # not run, or every seed diverged
        return "-"
    fine, coarse = percent(scores["fine"]), percent(scores["coarse"])
    return "*" if fine == coarse == 100 else f"{fine}/{coarse}"


def base_config(model: str) -> TrainConfig:
    """The model's configuration file in `configs/`, or the defaults for a model without one."""
    path = CONFIGS / f"{model}.toml"
    return load_config(path) if path.exists() else TrainConfig(model=model)


def table(results: dict, tasks: list[str], models: list[str], regimes: list[str]) -> str:
    """The results as a Markdown table: a row per task, a column per model and regime."""
    columns = [(model, regime) for model in models for regime in regimes]
    header = "| task | " + " | ".join(f"{DISPLAY.get(m, m)} {REGIME_LETTER[r]}" for m, r in columns) + " |"
    lines = [header, "|---" * (len(columns) + 1) + "|"]
    for number, task in enumerate(tasks, start=1):
        cells = [cell(results.get(task, {}).get(f"{model}/{regime}", {}).get("best")) for model, regime in columns]
        lines.append(f"| {number} {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    """Run every (task, model, regime, seed) asked for, rewriting the table after each cell."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lantm"], help=f"any of {', '.join(liemem.model_names())}")
    parser.add_argument("--tasks", nargs="+", default=list(PAPER_TASKS))
    parser.add_argument("--regimes", nargs="+", choices=("small", "large"), default=["small"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1])
    parser.add_argument("--steps", type=int, help="optimizer steps per run (default: the config's, 10,000)")
    parser.add_argument("--eval-samples", type=int, help="test examples per evaluation (default 3,200)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="results/suite")
    args = parser.parse_args(argv)

    out = Path(args.out)
    results: dict = {}
    for task in args.tasks:
        for model in args.models:
            for regime in args.regimes:
                runs = []
                for seed in args.seeds:
                    overrides = {"task": task, "regime": regime, "seed": seed, "device": args.device}
                    if args.steps is not None:
                        overrides["steps"] = args.steps
                    if args.eval_samples is not None:
                        overrides["eval_samples"] = args.eval_samples
                    config = dataclasses.replace(base_config(model), **overrides)
                    run_dir = out / task / f"{model}-{regime}-seed{seed}"
                    print(f"{task} / {model} / {regime} / seed {seed} -> {run_dir}", flush=True)
                    try:
                        summary = train(config, run_dir).as_dict()
                    except TrainingDiverged as error:  # recorded, and the suite goes on
                        print(error, flush=True)
                        runs.append({"seed": seed, "dir": str(run_dir), "diverged": str(error)})
                        continue
                    runs.append({"seed": seed, "dir": str(run_dir), **summary})
                finished = [run for run in runs if "best" in run]
                best = max(finished, key=lambda run: (run["best"]["coarse"], run["best"]["fine"]), default=None)
                entry = {"best": best["best"] if best else None, "runs": runs}
                results.setdefault(task, {})[f"{model}/{regime}"] = entry
                (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
                (out / "table.md").write_text(table(results, args.tasks, args.models, args.regimes))
    print(table(results, args.tasks, args.models, args.regimes), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
