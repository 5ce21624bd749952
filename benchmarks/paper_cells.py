"""Train cells of the paper's table 1b with the authors' kept settings, over seeds, one process per run.

    python benchmarks/paper_cells.py --cells copy:lantm reverse:lantm:init=uniform --seeds 1 2 3 \
        --workers 2 --out runs/cells --results results/fidelity/after

A cell is `task:model[:regime][:field=value ...]`; its settings are the paper preset of the cell
(`liemem.presets.paper`: the authors' kept grid point, learning rate, decay delay, initialisation, SLANTM's angle
bound, RAM's key width and sharpening, the LSTM's sizes), and `field=value` pairs override them (`init`, `lr`,
`decay_after`, `steps`, or any model option). Each run is `liemem train` in its own process with one torch
thread, so that runs in parallel do not fight over cores; a finished run is not redone, a stopped one resumes
from its checkpoint. Each run's scores go to `<results>/<task>-<model>-<regime>[-overrides]-seed<S>.json`, and a
table is printed at the end: per seed, the best fine/coarse at the 2x lengths over the evaluations after step
5,000, as the authors' code scores a run (it evaluates at steps 5,500 to 10,000), beside the paper's figure.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its sibling module, however this file is loaded

from child_runs import best_evaluation, last_error, machine, parse_value, read_evaluations, toml_value, train_in_child

from liemem import presets
from liemem.config import ConfigError

ROOT = Path(__file__).resolve().parent.parent
PAPER_EVAL_AFTER = 5000
TRAIN_FIELDS = {
    "lr": float,
    "warmup_steps": int,
    "decay_after": int,
    "steps": int,
    "regime": str,
    "clip_norm": float,
    "dtype": str,
}


def paper_score(task: str, model: str, regime: str) -> str:
    """The paper's table 1b entry for a cell as "fine/coarse" in percent ("?" where the table has none)."""
    try:
        fine, coarse = presets.paper_score(task, model, regime)
    except ConfigError:
        return "?"
    return f"{round(100 * fine)}/{round(100 * coarse)}"


def parse_cell(text: str) -> tuple[str, str, str, dict]:
    """'task:model[:regime][:field=value ...]' as (task, model, regime, overrides)."""
    parts = text.split(":")
    if len(parts) < 2:
        raise SystemExit(f"bad cell {text!r}: expected task:model[:regime][:field=value ...]")
    task, model, rest = parts[0], parts[1], parts[2:]
    regime = "small"
    if rest and "=" not in rest[0]:
        regime, rest = rest[0], rest[1:]
    overrides = {}
    for item in rest:
        name, separator, value = item.partition("=")
        if not separator:
            raise SystemExit(f"bad override {item!r} in cell {text!r}: expected field=value")
        overrides[name] = parse_value(value)
    return task, model, regime, overrides


def kept_settings(task: str, model: str, regime: str) -> tuple[dict, dict]:
    """The training fields and model options of the authors' kept run for a cell (`liemem.presets.paper`)."""
    config = presets.paper(task, model, regime)
    train = {
        "lr": config.lr,
        "warmup_steps": config.warmup_steps,
        "clip_norm": config.clip_norm,
        "decay_after": config.decay_after,
        "regime": regime,
    }
    return train, dict(config.model_options)


def run_name(task: str, model: str, regime: str, overrides: dict, seed: int) -> str:
    extra = "".join(f"-{k}={v}" for k, v in sorted(overrides.items()))
    return f"{task}-{model}-{regime}{extra}-seed{seed}"


def run_one(task, model, regime, overrides, seed, runs: Path, results: Path, python: str) -> dict:
    """Train one cell and seed in a child process; its result record (also written as JSON)."""
    name = run_name(task, model, regime, overrides, seed)
    record_path = results / f"{name}.json"
    if record_path.exists():
        record = json.loads(record_path.read_text())
        record.setdefault("paper_best", paper_best(record.get("evals", [])))
        return record
    train, options = kept_settings(task, model, regime)
    for key, value in overrides.items():
        (train if key in TRAIN_FIELDS else options)[key] = value
    out = (runs / name).resolve()
    out.mkdir(parents=True, exist_ok=True)
    lines = [f'task = "{task}"', f'model = "{model}"', f"seed = {seed}"]
    lines += [f"{key} = {toml_value(value)}" for key, value in train.items()]
    lines += ["", "[model_options]"] + [f"{key} = {toml_value(value)}" for key, value in options.items()]
    config = out / "cell.toml"
    config.write_text("\n".join(lines) + "\n")
    done, seconds = train_in_child(config, out, python)
    record = {
        "task": task,
        "model": model,
        "regime": regime,
        "seed": seed,
        "overrides": overrides,
        "settings": {**train, "model_options": options},
        "exit_status": done.returncode,
        "wall_seconds": seconds,
        "machine": machine(),
        "commit": _commit(python),
    }
    summary = out / "summary.json"
    if done.returncode == 0 and summary.exists():
        data = json.loads(summary.read_text())
        record["best"] = data["best"]
        record["final"] = {k: data[k] for k in ("step", "fine", "coarse")}
    else:
        record["error"] = last_error(done)
    record["evals"] = read_evaluations(out / "metrics.jsonl")
    record["paper_best"] = paper_best(record["evals"])
    results.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record, indent=1) + "\n")
    return record


def paper_best(evaluations: list, after: int = PAPER_EVAL_AFTER) -> dict | None:
    """The best of the evaluations after step `after` (most examples right, then most symbols), as
    {"step", "fine", "coarse"}; None if there is none."""
    return best_evaluation(evaluations, after)


def _commit(python: str) -> str:
    """The commit of the liemem that `python` imports (PYTHONPATH may point at another checkout)."""
    try:
        where = subprocess.run(
            [python, "-c", "import liemem, os; print(os.path.dirname(liemem.__file__))"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path.home(),
        ).stdout.strip()
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=where, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def score_text(scores: dict | None) -> str:
    return "-" if not scores else f"{100 * scores['fine']:.1f}/{100 * scores['coarse']:.1f}"


def plot_curves(records: dict, cells: list, seeds: list, out: Path) -> None:
    """One panel per cell: fine (dashed) and coarse (solid) at the 2x lengths against the step, a line per seed,
    with the paper's coarse score as a grey line."""
    from matplotlib.figure import Figure

    columns = min(len(cells), 3)
    rows = -(-len(cells) // columns)
    figure = Figure(figsize=(4.2 * columns, 3.0 * rows), dpi=100, layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).flatten()
    for ax, (task, model, regime, overrides) in zip(axes, cells, strict=False):
        for index, seed in enumerate(seeds):
            evaluations = records.get(run_name(task, model, regime, overrides, seed), {}).get("evals", [])
            if not evaluations:
                continue
            steps, fine, coarse = zip(*evaluations, strict=True)
            color = f"C{index}"
            ax.plot(steps, [100 * c for c in coarse], color=color, label=f"seed {seed}")
            ax.plot(steps, [100 * f for f in fine], color=color, linestyle="--", linewidth=0.8)
        paper = paper_score(task, model, regime)
        if "/" in paper:
            ax.axhline(float(paper.split("/")[1]), color="grey", linewidth=0.8)
        ax.set_title(f"{model} {task} {regime}" + "".join(f" {k}={v}" for k, v in overrides.items()), fontsize=9)
        ax.set_ylim(-2, 102)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("% at 2x (coarse solid, fine dashed)", fontsize=7)
        ax.legend(fontsize=7, loc="lower right")
    for ax in axes[len(cells) :]:
        ax.set_visible(False)
    figure.savefig(out)


def _load(folder: Path) -> dict:
    """The records in `folder`, by run name."""
    records = {}
    for path in sorted(folder.glob("*.json")):
        record = json.loads(path.read_text())
        record.setdefault("paper_best", paper_best(record.get("evals", [])))
        records[path.stem] = record
    return records


def _cell_text(record: dict | None) -> str:
    if record is None:
        return "not run"
    if "best" in record:
        return score_text(record.get("paper_best"))
    stopped = re.search(r"stopped at step (\d+)", record.get("error", ""))
    return f"stopped at step {stopped.group(1)}" if stopped else "failed"


def table(records: dict, cells: list, seeds: list, before: dict | None = None) -> str:
    """A Markdown table: per cell, the paper's score, then each seed's best fine/coarse after step 5,000 (with
    `before`, its seeds first)."""
    rounds = [("before", before), ("after", records)] if before is not None else [("", records)]
    header = [f"{name} seed {seed}".strip() for name, _ in rounds for seed in seeds]
    lines = ["| cell | paper | " + " | ".join(header) + " |", "|---|---|" + "---|" * len(header)]
    for task, model, regime, overrides in cells:
        names = [run_name(task, model, regime, overrides, seed) for seed in seeds]
        texts = [_cell_text(found.get(name)) for _, found in rounds for name in names]
        label = f"{model} {task} {regime}" + "".join(f" {k}={v}" for k, v in overrides.items())
        lines.append(f"| {label} | {paper_score(task, model, regime)} | " + " | ".join(texts) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", nargs="+", required=True, help="task:model[:regime][:field=value ...]")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--workers", type=int, default=1, help="runs at a time, one torch thread each")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "cells", help="run directories")
    parser.add_argument("--results", type=Path, required=True, help="one JSON record per run")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs liemem")
    parser.add_argument("--plot", type=Path, help="also draw the cells' learning curves into this image file")
    parser.add_argument("--before", type=Path, help="records of an earlier round, shown beside these in the table")
    parser.add_argument("--report", action="store_true", help="only print the table of the records there are")
    args = parser.parse_args(argv)
    cells = [parse_cell(text) for text in args.cells]
    for task, model, regime, _ in cells:
        try:
            presets.paper(task, model, regime)
        except ConfigError as error:
            raise SystemExit(str(error)) from None
    jobs = [(cell, seed) for cell in cells for seed in args.seeds]
    if args.report:
        records = _load(args.results)
        jobs = []
    else:
        records = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.workers) as pool:
        futures = {
            pool.submit(run_one, *cell, seed, args.out, args.results, args.python): (cell, seed) for cell, seed in jobs
        }
        for future in concurrent.futures.as_completed(futures):
            (task, model, regime, overrides), seed = futures[future]
            record = future.result()
            records[run_name(task, model, regime, overrides, seed)] = record
            status = score_text(record.get("paper_best")) if "best" in record else f"failed: {record.get('error')}"
            print(
                f"{run_name(task, model, regime, overrides, seed)}: {status} ({record['wall_seconds']} s)", flush=True
            )
    print()
    print(table(records, cells, args.seeds, _load(args.before) if args.before else None))
    if args.plot:
        plot_curves(records, cells, args.seeds, args.plot)
        print(f"learning curves: {args.plot}")


if __name__ == "__main__":
    main()
