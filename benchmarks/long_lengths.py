"""The paper's LANTM runs on copy and reverse, scored far past their training lengths: 2x, 4x, 8x and 16x.

For each cell and seed it trains the paper's preset (`liemem train --preset paper`; a finished run is reused and
a stopped one resumes), then scores the best weights with `liemem eval --best --scale K` for each K: sizes
K u / 2 + 1 to K u, u the largest training size (64), so 16x is copy of 513 to 1,024 symbols. Each run's scores go
to `--results`/<task>-lantm-<regime>-seed<S>.json, with the commands that made them; a run already recorded is
skipped.

    python benchmarks/long_lengths.py [--tasks copy,reverse] [--regimes small,large] [--seeds 1,2,3]
                                      [--scales 2,4,8,16] [--runs runs/long] [--results results/long-lengths]
    python benchmarks/long_lengths.py --report [--results results/long-lengths]   # the records as a table
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time


def comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def liemem(*args: str) -> str:
    """Run the command line in a child process with one torch thread; return its standard output."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "liemem", *args]
    result = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr}")
    return result.stdout


def commit() -> str:
    result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    return result.stdout.strip() or "unknown"


def report(results: pathlib.Path) -> str:
    """The records under `results` as a Markdown table: fine/coarse percent at each scale, a row per run."""
    records = [json.loads(path.read_text()) for path in sorted(results.glob("*.json"))]
    records.sort(key=lambda r: (r["task"] != "copy", r["task"], r["regime"] != "small", r["seed"]))
    scales = sorted({key for record in records for key in record["scores"]}, key=lambda key: int(key[1:]))
    lines = ["| task | regime | seed | " + " | ".join(f"{key[1:]}x" for key in scales) + " |"]
    lines.append("|---" * (3 + len(scales)) + "|")
    for record in records:
        cells = []
        for key in scales:
            score = record["scores"].get(key)
            cells.append(f"{100 * score['fine']:.1f}/{100 * score['coarse']:.1f}" if score else "·")
        lines.append(f"| {record['task']} | {record['regime']} | {record['seed']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=comma_list, default=["copy", "reverse"])
    parser.add_argument("--regimes", type=comma_list, default=["small", "large"])
    parser.add_argument("--seeds", type=lambda text: [int(x) for x in comma_list(text)], default=[1])
    parser.add_argument("--scales", type=lambda text: [int(x) for x in comma_list(text)], default=[2, 4, 8, 16])
    parser.add_argument("--runs", default="runs/long", help="where the training runs go")
    parser.add_argument("--results", default="results/long-lengths", help="where the JSON records go")
    parser.add_argument("--report", action="store_true", help="print the records as a Markdown table, run nothing")
    args = parser.parse_args()
    results = pathlib.Path(args.results)
    if args.report:
        print(report(results))
        return
    results.mkdir(parents=True, exist_ok=True)
    cells = [(task, regime, seed) for seed in args.seeds for task in args.tasks for regime in args.regimes]
    for task, regime, seed in cells:
        name = f"{task}-lantm-{regime}-seed{seed}"
        if (results / f"{name}.json").exists():
            continue
        run = pathlib.Path(args.runs) / name
        train = ["train", "--preset", "paper", "--task", task, "--model", "lantm", "--regime", regime]
        train += ["--seed", str(seed), "--out", str(run), "--no-progress"]
        started = time.perf_counter()
        liemem(*train)
        summary = json.loads((run / "summary.json").read_text())
        record = {
            "task": task,
            "model": "lantm",
            "regime": regime,
            "seed": seed,
            "best": summary.get("best"),
            "train_command": "liemem " + " ".join(train),
            "scores": {},
            "commit": commit(),
        }
        for scale in args.scales:
            evaluation = ["eval", str(run), "--best", "--scale", str(scale)]
            scores = json.loads(liemem(*evaluation).strip().splitlines()[-1])
            record["scores"][f"x{scale}"] = {key: scores[key] for key in ("lengths", "fine", "coarse", "step")}
            record["scores"][f"x{scale}"]["command"] = "liemem " + " ".join(evaluation)
            print(
                f"{task} {regime} seed {seed} x{scale} (sizes {scores['lengths'][0]}-{scores['lengths'][1]}): "
                f"fine {100 * scores['fine']:.1f}, coarse {100 * scores['coarse']:.1f}",
                flush=True,
            )
        record["wall_seconds"] = round(time.perf_counter() - started, 1)
        (results / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
