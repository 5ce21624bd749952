"""Plots of a trained run: `plot_run(run_dir, out)` is what `liemem plot` calls.

It restores the run's model, runs it on one test example (the one `liemem sample --split test --lengths K-K
-n 1 --seed S` prints) and draws what the model supports: head trails and the per-step view for Lie-access
machines, read weights for every model with a memory, and the learning curves for every run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from .. import footprint, tasks
from ..config import ConfigError, require_choice, require_int
from ..models import LieAccessMachine
from ..training.config import MAX_SEED, TrainConfig, config_from_dict
from ..training.data import test_examples
from ..training.loop import resolve_device, restore_model
from ..training.metrics import METRICS_FILE, read_metrics
from .curves import curves, plot_learning_curves
from .heatmap import plot_read_weights
from .recording import MemoryRecording, record
from .timeline import plot_timeline
from .trail import plot_trail, trail_panels

KINDS = ("all", "trail", "timeline", "heatmap", "curves")
FORMATS = ("png", "svg", "pdf")
MAX_PLOT_SIZE = 1_000  # a task size; longer examples make unreadable pictures long before they cost much
MAX_PLOT_STEPS = 4_096
DPI = 100
# Fixed here so that a user's matplotlibrc cannot change the size of the image written.
STYLE = {"font.size": 8, "axes.titlesize": 10, "figure.dpi": DPI, "savefig.dpi": DPI, "savefig.bbox": None}


def plot_run(
    run: str | Path,
    out: str | Path,
    task: str | None = None,
    length: int | None = None,
    seed: int = 0,
    kind: str = "all",
    best: bool = False,
    device: str = "cpu",
) -> Path:
    """Draw `kind` for the run in directory `run` and save it to `out` (.png, .svg or .pdf); returns the path.

    `task` (default: the run's; another must have the same tokens) and `length` (a task size; default: the
    smallest test size of the run) choose the example, `seed` which one. `best` uses the weights of the run's best
    evaluation. Bad arguments, and a kind the model cannot show (a trail of an NTM, say), raise `ConfigError`.
    Learning curves alone need only the run's metrics file, so they can be drawn before the first checkpoint.
    """
    require_choice("plot", "kind", kind, KINDS)
    out = Path(out)
    suffix = out.suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise ConfigError(f"plot: --out must end in one of {', '.join('.' + f for f in FORMATS)}, got {str(out)!r}")
    require_int("plot", "--seed", seed, minimum=0, maximum=MAX_SEED)
    if length is not None:
        require_int("plot", "--length", length, maximum=MAX_PLOT_SIZE)
    records = read_metrics(run)
    if kind == "curves":
        # The curves come from the metrics alone; the other options are still checked, not silently dropped.
        if task is not None:
            tasks.get(task)
        resolve_device(device)
        if curves(records).empty:
            raise ConfigError(f"plot: {str(Path(run) / METRICS_FILE)!r} holds no loss or score records yet")
        config = _written_config(run)
        title = f"{config.model} on {config.task}" if config else str(run)
        return _save(draw(kind, None, records, _length_labels(config)), title, out, suffix)

    model, run_task, config, step = restore_model(run, device, best=best)
    chosen = run_task if task is None or task == config.task else tasks.get(task)
    if chosen.tokens() != run_task.tokens():
        raise ConfigError(
            f"plot: task {task!r} has other tokens ({chosen.vocab_size}) than the run's task {config.task!r} "
            f"({run_task.vocab_size}), so the model cannot read it"
        )
    if kind in ("trail", "timeline") and not isinstance(model, LieAccessMachine):
        raise ConfigError(f"plot: a {kind} needs a Lie-access model; {config.model!r} has no key space")
    if kind == "heatmap" and not model.has_memory:
        raise ConfigError(f"plot: model {config.model!r} has no memory, so no read weights to draw; try curves")

    if kind == "all" and not model.has_memory:  # only the learning curves to draw: no example is run
        return _save(draw(kind, None, records, _length_labels(config)), f"{config.model} on {config.task}", out, suffix)

    if length is None:
        size = config.test_lengths[0]
        if size > MAX_PLOT_SIZE:
            raise ConfigError(
                f"plot: the run's smallest test size, {size}, is more than {MAX_PLOT_SIZE}; choose one with --length"
            )
    else:
        require_int("plot", "--length", length, minimum=chosen.min_size, maximum=MAX_PLOT_SIZE)
        size = length

    (examples,) = test_examples(chosen, (size, size), 1, seed)
    inputs, targets = chosen.encode(examples)
    if inputs.shape[1] + targets.shape[1] > MAX_PLOT_STEPS:
        raise ConfigError(
            f"plot: a {chosen.name} example of size {size} has {inputs.shape[1] + targets.shape[1]} steps; "
            f"at most {MAX_PLOT_STEPS} can be drawn legibly"
        )
    sequence = footprint.Sequence(inputs.shape[1] - 1, targets.shape[1])
    footprint.check(model, 1, sequence, False, next(model.parameters()).device, "plot", "choose a smaller --length")
    recording = record(model, chosen, inputs[0], targets[0])
    right = sum(p == t for p, t in zip(recording.predicted, recording.targets, strict=True))
    # Two lines: on one, a long task name pushed the title past the edges of a single-panel figure.
    title = (
        f"{config.model} on {config.task}, step {step}\n{chosen.name} example of size {size} (seed {seed}): "
        f"{right}/{len(recording.targets)} answer symbols right"
    )
    return _save(draw(kind, recording, records, _length_labels(config)), title, out, suffix)


def _written_config(run) -> TrainConfig | None:
    """The configuration the run wrote at its start, if it is there and readable."""
    try:
        return config_from_dict(json.loads((Path(run) / "config.json").read_text()))
    except (OSError, ValueError, TypeError, ConfigError):
        return None


def _length_labels(config: TrainConfig | None) -> tuple[str, str]:
    if config is None:
        return ("training", "test")
    return (f"train {_range(config.train_lengths)}", f"test {_range(config.test_lengths)}")


def _save(figure: Figure, title: str, out: Path, suffix: str) -> Path:
    figure.suptitle(title, fontsize=11)
    out.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context(STYLE):
        figure.savefig(out, format=suffix)
    return out


def _range(sizes) -> str:
    low, high = sizes
    return f"{low}-{high}"


def draw(kind: str, recording: MemoryRecording | None, records: list[dict], labels=("training", "test")) -> Figure:
    """A figure of `kind` (one of `KINDS`) for `recording` and metrics `records`, drawn without pyplot, so
    no display or interactive backend is touched."""
    require_choice("plot", "kind", kind, KINDS)
    with matplotlib.rc_context(STYLE):
        return _draw(kind, recording, records, labels)


def _draw(kind: str, recording: MemoryRecording | None, records: list[dict], labels) -> Figure:
    if kind == "all":
        return _draw_all(recording, records, labels)
    panels = trail_panels(recording) if kind == "trail" else []
    figure = Figure(figsize=(1.5 + 6.5 * max(1, len(panels)), 6.5), layout="constrained")
    if kind == "curves":
        loss_ax, score_ax = figure.subplots(2, 1, sharex=True, height_ratios=(1, 2))
        plot_learning_curves(loss_ax, score_ax, records, *labels)
    elif kind == "trail":
        _trails(figure, figure.add_gridspec(1, 1)[0, 0], panels)
    elif kind == "timeline":
        plot_timeline(figure.add_subplot(), recording)
    else:
        _heatmaps(figure, figure.add_gridspec(1, 1)[0, 0], recording)
    return figure


def _trails(figure: Figure, cell, panels) -> None:
    """The trail panels (`trail_panels`) side by side in `cell`, each on 3-D axes where its view needs them."""
    grid = cell.subgridspec(1, len(panels))
    for column, (recording, view, title) in enumerate(panels):
        ax = figure.add_subplot(grid[0, column], projection="3d" if view.three_d else None)
        plot_trail(ax, recording, view, title)


def _heatmaps(figure: Figure, cell, recording: MemoryRecording) -> None:
    """One heatmap per read head, side by side in `cell`."""
    if recording.read_weights is None:
        raise TypeError("read weights need a model with a memory: this recording has none")
    heads = recording.read_weights.shape[1]
    columns = min(heads, 2)
    grid = cell.subgridspec(math.ceil(heads / columns), columns)
    for head in range(heads):
        plot_read_weights(figure.add_subplot(grid[head // columns, head % columns]), recording, head)


def _draw_all(recording: MemoryRecording | None, records: list[dict], labels) -> Figure:
    lie_access = recording is not None and recording.lie_access
    memory = recording is not None and recording.read_weights is not None
    if lie_access:
        figure = Figure(figsize=(14, 11), layout="constrained")
        grid = figure.add_gridspec(2, 2)
        _trails(figure, grid[0, 0], trail_panels(recording))
        plot_timeline(figure.add_subplot(grid[0, 1]), recording)
        _heatmaps(figure, grid[1, 0], recording)
        cell = grid[1, 1]
    elif memory:
        figure = Figure(figsize=(14, 6), layout="constrained")
        grid = figure.add_gridspec(1, 2)
        _heatmaps(figure, grid[0, 0], recording)
        cell = grid[0, 1]
    else:
        figure = Figure(figsize=(8, 6.5), layout="constrained")
        cell = figure.add_gridspec(1, 1)[0, 0]
    inner = cell.subgridspec(2, 1, height_ratios=(1, 2))
    score_ax = figure.add_subplot(inner[1])
    loss_ax = figure.add_subplot(inner[0], sharex=score_ax)
    plot_learning_curves(loss_ax, score_ax, records, *labels)
    return figure
