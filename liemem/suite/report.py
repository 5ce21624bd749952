"""A suite's records set beside the paper's table 1b: `table.md` and a figure, written from the records alone.

Each cell of the table is the best run over the seeds recorded for it (most examples right, then most
symbols), as the paper takes the best of its seeds. A cell more than `MISS_POINTS` coarse points below the
paper's is marked. Nothing is typed by hand: run `liemem suite --report DIR` again and the table comes out
the same.
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import presets
from .plan import PAPER_TASKS

MISS_POINTS = 5
COLUMNS = ("lstm", "ram", "ram-tape", "lantm", "lantm-s", "slantm", "slantm-s")  # the paper's order
DISPLAY = {
    "lstm": "LSTM", "ram": "RAM", "ram-tape": "RAM/Tape", "lantm": "LANTM", "lantm-s": "LANTM-s",
    "slantm": "SLANTM", "slantm-s": "SLANTM-s",
}  # fmt: skip
REGIMES = ("small", "large")
TABLE_FILE = "table.md"
FIGURE_FILE = "table.png"
CURVES_FILE = "curves.png"
CURVE_CELLS = 9  # learning curves of the cells furthest below the paper


def load_records(folder: str | Path) -> list[dict]:
    """The finished runs' records in `folder` (files that are not records are ignored)."""
    records = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and {"task", "model", "regime", "seed", "preset"} <= set(record):
            records.append(record)
    return records


def _rank(record: dict) -> tuple:
    best = record.get("best")
    return (-1.0, -1.0) if best is None else (best["coarse"], best["fine"])


def best_runs(records: list[dict], preset: str) -> dict[tuple[str, str, str], tuple[dict, int]]:
    """For each (task, model, regime), its best run of `preset` and how many seeds were recorded."""
    cells: dict[tuple[str, str, str], list[dict]] = {}
    for record in records:
        if record["preset"] == preset:
            cells.setdefault((record["task"], record["model"], record["regime"]), []).append(record)
    return {key: (max(runs, key=_rank), len(runs)) for key, runs in cells.items()}


def percent(value: float) -> int:
    """A score as the paper prints it: whole percents, and 100 only when exact (99.5 and up shows as 99)."""
    return 100 if value >= 1.0 else min(round(100 * value), 99)


def score_text(fine: float, coarse: float) -> str:
    """'fine/coarse' in the paper's style: '*' for exactly 100/100."""
    fine, coarse = percent(fine), percent(coarse)
    return "*" if fine == coarse == 100 else f"{fine}/{coarse}"


def _ours(record: dict | None, key: str = "best") -> str:
    if record is None:
        return "·"
    if record.get(key) is None:
        return "diverged" if record.get("diverged") else "failed"
    return score_text(record[key]["fine"], record[key]["coarse"])


def below_paper(folder: str | Path, points: float = MISS_POINTS) -> set[tuple[str, str, str]]:
    """The cells whose best recorded run (preset 'paper', any seed) is more than `points` coarse points below
    the paper's: the ones that get more seeds, as the paper took the best of seeds 1-3."""
    found = set()
    for (task, model, regime), (record, _) in best_runs(load_records(folder), "paper").items():
        paper_coarse = presets.paper_score(task, model, regime)[1]
        best = record.get("best")
        if best is None or 100 * best["coarse"] < 100 * paper_coarse - points:
            found.add((task, model, regime))
    return found


def _grid(title: str, rows: list[str], columns: list[tuple[str, str]], text) -> list[str]:
    header = f"| {title} | " + " | ".join(f"{DISPLAY.get(m, m)} {r[0].upper()}" for m, r in columns) + " |"
    lines = [header, "|---" * (len(columns) + 1) + "|"]
    for number, task in enumerate(rows, start=1):
        lines.append(
            f"| {number} {task} | " + " | ".join(text(task, model, regime) for model, regime in columns) + " |"
        )
    return lines


def table(records: list[dict]) -> str:
    """The Markdown report: ours beside the paper's table 1b, ours at 4x, every seed of the cells run with more
    than one, and liemem's defaults in one run; for a folder of geometries (runs with liemem's defaults of models
    outside the paper's table), only the table by geometry."""
    if not any(record["preset"] == "paper" for record in records) and geometry_models(records):
        return "\n".join(geometry_table(records)) + "\n"
    paper_runs = best_runs(records, "paper")
    columns = [(model, regime) for model in COLUMNS for regime in REGIMES]
    misses = 0

    def beside(task, model, regime):
        nonlocal misses
        found = paper_runs.get((task, model, regime))
        paper = score_text(*presets.paper_score(task, model, regime))
        if found is None:
            return f"· ({paper})"
        record, _ = found
        best = record.get("best")
        mark = best is None or 100 * best["coarse"] < 100 * presets.paper_score(task, model, regime)[1] - MISS_POINTS
        misses += mark
        return f"**{_ours(record)}** ({paper})" if mark else f"{_ours(record)} ({paper})"

    lines = [
        "# Table 1b, reproduced",
        "",
        "Written by `liemem suite --report` from the run records in this folder; do not edit by hand.",
        "",
        "## At 2x the training sizes, the paper's test (ours, then the paper's in brackets)",
        "",
        "Fine/coarse accuracy (%) on 3,200 test examples; `*` is 100/100. Each of our cells is the best run over",
        "the seeds recorded, trained with the authors' kept settings for the cell (`liemem train --preset paper`),",
        "scored as their code scores a run (the best evaluation after step 5,000). The paper's cell is the best of",
        f"its grid (36 runs). **Bold**: more than {MISS_POINTS} coarse points below the paper. `·`: not run yet.",
        "",
    ]
    lines += _grid("task", list(PAPER_TASKS), columns, beside)
    done = sum(1 for key in paper_runs if key[0] in PAPER_TASKS)
    seeds = sum(count for _, count in paper_runs.values())
    lines += ["", f"Cells run: {done} of {len(PAPER_TASKS) * len(columns)} ({seeds} runs); more than {MISS_POINTS} "
              f"coarse points below the paper: {misses}.", ""]  # fmt: skip

    lines += ["## At 4x the training sizes (sizes 2u+1 to 4u, u the largest training size)", ""]
    lines += ["The best run of each cell above (its best weights), on 3,200 examples beyond the paper's test.", ""]
    lines += _grid(
        "task", list(PAPER_TASKS), columns, lambda t, m, r: _ours(paper_runs.get((t, m, r), (None,))[0], "x4")
    )

    lines += _seed_table(records)

    default_runs = best_runs(records, "defaults")
    if default_runs:
        models = [m for m in COLUMNS if any(key[1] == m for key in default_runs)]
        regimes = [r for r in REGIMES if any(key[2] == r for key in default_runs)]
        lines += ["", "## One run with liemem's defaults, no grid search (at 2x, the paper's in brackets)", ""]
        lines += ["`liemem train --task T --model M` with nothing else (seed 1), scored on its best evaluation.", ""]

        def defaults(task, model, regime):
            found = default_runs.get((task, model, regime))
            paper = score_text(*presets.paper_score(task, model, regime))
            return f"{_ours(found[0] if found else None)} ({paper})"

        lines += _grid("task", list(PAPER_TASKS), [(m, r) for m in models for r in regimes], defaults)
    return "\n".join(lines) + "\n"


SOLVED = 0.9  # a task counts as solved at this coarse score at 2x, the bar a geometry must clear on all eight


def geometry_models(records: list[dict]) -> list[str]:
    """The models of the runs with liemem's defaults in the small regime, when one of them is outside the paper's
    table (a geometry of liemem's own): the paper's first, in its order, then the others by name."""
    names = {r["model"] for r in records if r["preset"] == "defaults" and r["regime"] == "small"}
    if not names - set(COLUMNS):
        return []
    return [m for m in COLUMNS if m in names] + sorted(names - set(COLUMNS))


def _best_coarse(record: dict | None, key: str) -> float | None:
    return None if record is None or record.get(key) is None else record[key]["coarse"]


def geometry_table(records: list[dict]) -> list[str]:
    """Tasks by geometry: each cell the best of its seeds (the one the 2x test ranks first), its coarse % at 2x,
    then at 4x, and how many seeds; then, per geometry, the tasks it solves."""
    models = geometry_models(records)
    runs = {(task, model): found for (task, model, regime), found in best_runs(records, "defaults").items()}
    solved = dict.fromkeys(models, 0)

    def cell(task, model, _regime):
        found = runs.get((task, model))
        if found is None:
            return "·"
        record, seeds = found
        at_2x, at_4x = _best_coarse(record, "best"), _best_coarse(record, "x4")
        if at_2x is None:
            return _ours(record)
        solved[model] += at_2x >= SOLVED
        text = f"{percent(at_2x)} / {'·' if at_4x is None else percent(at_4x)}"
        text = f"**{text}**" if at_2x >= SOLVED else text
        return text if seeds == 1 else f"{text} ({seeds})"

    lines = [
        "# Geometries on the paper's eight tasks",
        "",
        "Written by `liemem suite --report` from the run records in this folder; do not edit by hand.",
        "",
        "Coarse accuracy (%) at 2x the training sizes (the paper's test), then at 4x (sizes 2u+1 to 4u), of the best",
        "run over the seeds recorded (in brackets where more than one), each trained with liemem's defaults in the",
        f"small regime (`liemem train --preset defaults --task T --model M`). **Bold**: solved, at least"
        f" {percent(SOLVED)}% coarse at 2x. `·`: not run yet.",
        "",
    ]
    lines += _grid("task", list(PAPER_TASKS), [(m, "small") for m in models], cell)
    lines += ["| solved | " + " | ".join(f"{solved[m]} of {len(PAPER_TASKS)}" for m in models) + " |"]
    done = sum(1 for key in runs if key[1] in models)
    seeds = sum(count for key, (_, count) in runs.items() if key[1] in models)
    lines += ["", f"Cells run: {done} of {len(PAPER_TASKS) * len(models)} ({seeds} runs).", ""]
    return lines


def _seed_table(records: list[dict]) -> list[str]:
    """Every run of the cells recorded with more than one seed (preset 'paper'), seed by seed."""
    cells: dict[tuple[str, str, str], dict[int, dict]] = {}
    for record in records:
        if record["preset"] == "paper":
            cells.setdefault((record["model"], record["regime"], record["task"]), {})[record["seed"]] = record
    order = {name: index for index, name in enumerate((*COLUMNS, *REGIMES, *PAPER_TASKS))}
    shown = sorted((key for key, runs in cells.items() if len(runs) > 1), key=lambda key: [order[k] for k in key])
    if not shown:
        return []
    seeds = sorted({seed for key in shown for seed in cells[key]})
    lines = ["", "## Seed by seed, the cells run with more than one seed (at 2x)", ""]
    lines += ["| cell | paper | " + " | ".join(f"seed {seed}" for seed in seeds) + " |"]
    lines += ["|---|---|" + "---|" * len(seeds)]
    for model, regime, task in shown:
        paper = score_text(*presets.paper_score(task, model, regime))
        runs = cells[(model, regime, task)]
        scores = " | ".join(_ours(runs.get(seed)) for seed in seeds)
        lines.append(f"| {DISPLAY[model]} {regime[0].upper()} {task} | {paper} | {scores} |")
    return lines


def write_report(folder: str | Path) -> tuple[Path, ...]:
    """Write `table.md`, `table.png` and `curves.png` (the learning curves of the cells furthest below the paper)
    into `folder` from its records; their paths. A folder of geometries gets `table.md` and `table.png`, its
    scores by task and geometry."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no such folder: {folder}")
    records = load_records(folder)
    (folder / TABLE_FILE).write_text(table(records))
    if not any(record["preset"] == "paper" for record in records) and geometry_models(records):
        _geometry_figure(records, folder / FIGURE_FILE)
        return folder / TABLE_FILE, folder / FIGURE_FILE
    _figure(records, folder / FIGURE_FILE)
    _curves(records, folder / CURVES_FILE)
    return folder / TABLE_FILE, folder / FIGURE_FILE, folder / CURVES_FILE


def furthest_below(records: list[dict], count: int = CURVE_CELLS) -> list[tuple[str, str, str]]:
    """The cells (preset 'paper') whose best coarse score is furthest below the paper's, worst first; ties go
    to the larger fine gap. Cells at or above the paper are left out."""
    gaps = []
    for (task, model, regime), (record, _) in best_runs(records, "paper").items():
        fine, coarse = presets.paper_score(task, model, regime)
        best = record.get("best") or {"fine": 0.0, "coarse": 0.0}
        gap = (coarse - best["coarse"], fine - best["fine"])
        if gap[0] > 0 or gap[1] > 0:
            gaps.append((gap, (task, model, regime)))
    return [cell for _, cell in sorted(gaps, key=lambda item: (-item[0][0], -item[0][1], item[1]))[:count]]


def _curves(records: list[dict], path: Path) -> None:
    """A panel per cell furthest below the paper: coarse (solid) and fine (dashed) at 2x against the step, a line
    per seed, and the paper's coarse (grey) and fine (dotted) scores."""
    from matplotlib.figure import Figure

    cells = furthest_below(records)
    columns = 3
    rows = max(1, -(-len(cells) // columns))
    figure = Figure(figsize=(4.3 * columns, 2.9 * rows), dpi=100, layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).flatten()
    for ax, (task, model, regime) in zip(axes, cells, strict=False):
        runs = sorted(
            (r for r in records if (r["task"], r["model"], r["regime"], r["preset"]) == (task, model, regime, "paper")),
            key=lambda r: r["seed"],
        )
        for index, record in enumerate(runs):
            if record.get("evals"):
                steps, fine, coarse = zip(*record["evals"], strict=True)
                ax.plot(steps, [100 * c for c in coarse], color=f"C{index}", label=f"seed {record['seed']}")
                ax.plot(steps, [100 * f for f in fine], color=f"C{index}", linestyle="--", linewidth=0.8)
        paper_fine, paper_coarse = presets.paper_score(task, model, regime)
        ax.axhline(100 * paper_coarse, color="grey", linewidth=0.8)
        ax.axhline(100 * paper_fine, color="grey", linewidth=0.8, linestyle=":")
        ax.set_title(f"{DISPLAY[model]} {regime[0].upper()}, {task}", fontsize=9)
        ax.set_ylim(-2, 102)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("% at 2x", fontsize=8)
        if ax.get_legend_handles_labels()[0]:  # records without a learning curve draw no line to name
            ax.legend(fontsize=7, loc="upper left")
    for ax in axes[len(cells) :]:
        ax.set_visible(False)
    if not cells:
        axes[0].set_visible(True)
        axes[0].text(0.5, 0.5, "no cell below the paper", ha="center", va="center")
    figure.suptitle("the cells furthest below the paper: coarse solid, fine dashed; the paper's in grey", fontsize=10)
    figure.savefig(path)


def _figure(records: list[dict], path: Path) -> None:
    """Left: our best coarse score against the paper's, a point per cell. Right: the difference, cell by cell."""
    import numpy as np
    from matplotlib.figure import Figure

    runs = best_runs(records, "paper")
    columns = [(model, regime) for model in COLUMNS for regime in REGIMES]
    figure = Figure(figsize=(14, 5.2), dpi=100, layout="constrained")
    scatter, grid = figure.subplots(1, 2, width_ratios=(1, 1.6))
    for index, model in enumerate(COLUMNS):
        for regime, marker in zip(REGIMES, ("o", "s"), strict=True):
            points = [
                (100 * presets.paper_score(t, m, r)[1], 100 * (rec.get("best") or {"coarse": 0.0})["coarse"])
                for (t, m, r), (rec, _) in runs.items()
                if m == model and r == regime
            ]
            if points:
                x, y = zip(*points, strict=True)
                scatter.scatter(x, y, color=f"C{index}", marker=marker, label=f"{DISPLAY[model]} {regime[0].upper()}")
    scatter.plot([0, 100], [0, 100], color="grey", linewidth=0.8)
    scatter.plot([MISS_POINTS, 100], [0, 100 - MISS_POINTS], color="grey", linewidth=0.6, linestyle=":")
    scatter.set(xlabel="paper: coarse % at 2x", ylabel="liemem: best coarse % at 2x", xlim=(-3, 103), ylim=(-3, 103))
    scatter.set_title("a point per cell of table 1b", fontsize=10)
    scatter.legend(fontsize=7, ncol=2, loc="upper left")
    difference = np.full((len(PAPER_TASKS), len(columns)), np.nan)
    for row, task in enumerate(PAPER_TASKS):
        for column, (model, regime) in enumerate(columns):
            found = runs.get((task, model, regime))
            if found:
                ours = (found[0].get("best") or {"coarse": 0.0})["coarse"]
                difference[row, column] = 100 * (ours - presets.paper_score(task, model, regime)[1])
    image = grid.imshow(difference, cmap="RdBu", vmin=-100, vmax=100, aspect="auto")
    for (row, column), value in np.ndenumerate(difference):
        if not np.isnan(value):
            grid.text(column, row, f"{value:+.0f}", ha="center", va="center", fontsize=7)
    grid.set_xticks(range(len(columns)), [f"{DISPLAY[m]} {r[0].upper()}" for m, r in columns], rotation=60, fontsize=8)
    grid.set_yticks(range(len(PAPER_TASKS)), PAPER_TASKS, fontsize=8)
    grid.set_title("coarse points, liemem minus the paper (blank: not run)", fontsize=10)
    figure.colorbar(image, ax=grid, shrink=0.8)
    figure.savefig(path)


def _geometry_figure(records: list[dict], path: Path) -> None:
    """Best coarse % by task and geometry, at 2x (left) and 4x (right); blank where not run."""
    import numpy as np
    from matplotlib.figure import Figure

    models = geometry_models(records)
    runs = {(task, model): record for (task, model, _), (record, _) in best_runs(records, "defaults").items()}
    figure = Figure(figsize=(5 + 1.6 * len(models), 4.6), dpi=100, layout="constrained")
    for ax, key, title in zip(figure.subplots(1, 2), ("best", "x4"), ("2x (the paper's test)", "4x"), strict=True):
        scores = np.full((len(PAPER_TASKS), len(models)), np.nan)
        for row, task in enumerate(PAPER_TASKS):
            for column, model in enumerate(models):
                coarse = _best_coarse(runs.get((task, model)), key)
                if coarse is not None:
                    scores[row, column] = 100 * coarse
        image = ax.imshow(scores, cmap="viridis", vmin=0, vmax=100, aspect="auto")
        for (row, column), value in np.ndenumerate(scores):
            if not np.isnan(value):
                ax.text(column, row, f"{value:.0f}", ha="center", va="center", fontsize=8,
                        color="black" if value > 60 else "white")  # fmt: skip
        ax.set_xticks(range(len(models)), models, rotation=45, fontsize=8)
        ax.set_yticks(range(len(PAPER_TASKS)), PAPER_TASKS, fontsize=8)
        ax.set_title(f"best coarse % at {title}", fontsize=10)
    figure.colorbar(image, ax=figure.axes, shrink=0.8)
    figure.savefig(path)
