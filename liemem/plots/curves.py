"""Learning curves from a run's `metrics.jsonl`: the training loss, and fine and coarse scores on the training
batches (greedy, before each batch's update) and on the held-out test lengths (2x the training lengths by
default)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

TRAIN_STYLE = {"linestyle": "--", "linewidth": 1.0, "alpha": 0.8}
TEST_STYLE = {"linestyle": "-", "linewidth": 1.6, "marker": "o", "markersize": 3}
FINE_COLOR, COARSE_COLOR = "#2ca02c", "#9467bd"


class Curves(NamedTuple):
    """Series read out of metrics records: each is (steps, values) as NumPy arrays."""

    loss: tuple[np.ndarray, np.ndarray]
    train_fine: tuple[np.ndarray, np.ndarray]
    train_coarse: tuple[np.ndarray, np.ndarray]
    test_fine: tuple[np.ndarray, np.ndarray]
    test_coarse: tuple[np.ndarray, np.ndarray]

    @property
    def empty(self) -> bool:
        """Whether there is nothing to draw."""
        return all(len(steps) == 0 for steps, _ in self)


def curves(records: list[dict]) -> Curves:
    """The series of `records` (as `read_metrics` returns them); records without a series' field are skipped."""

    def series(pick) -> tuple[np.ndarray, np.ndarray]:
        pairs = [(record["step"], value) for record in records if _is_number(value := pick(record))]
        steps, values = zip(*pairs, strict=True) if pairs else ((), ())
        return np.asarray(steps, dtype=np.int64), np.asarray(values, dtype=np.float64)

    def score(section: str, name: str):
        return lambda record: section_of(record, section).get(name)

    def section_of(record: dict, section: str) -> dict:
        value = record.get(section)
        return value if isinstance(value, dict) else {}

    return Curves(
        series(lambda record: record.get("loss")),
        series(score("train", "fine")),
        series(score("train", "coarse")),
        series(score("eval", "fine")),
        series(score("eval", "coarse")),
    )


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value)


def _markers(style: dict, points: int) -> dict:
    """A lone point is invisible as a line: give it a marker."""
    return {**style, "marker": style.get("marker") or "o", "markersize": 3} if points == 1 else style


def plot_learning_curves(loss_ax, score_ax, records: list[dict], train_label="training", test_label="test"):
    """Draw the loss on `loss_ax` and the scores (in %) on `score_ax`; returns both axes.

    `train_label` and `test_label` name the two length ranges in the legend (say, "train 2-8", "test 9-16").
    """
    data = curves(records)
    steps, loss = data.loss
    if len(steps):
        loss_ax.plot(steps, loss, **_markers({"color": "#444444", "linewidth": 1.0}, len(steps)))
        if (loss > 0).all():
            loss_ax.set_yscale("log")
    else:
        loss_ax.text(0.5, 0.5, "no loss recorded yet", ha="center", va="center", transform=loss_ax.transAxes)
    loss_ax.set_ylabel("loss per symbol")
    loss_ax.set_title("learning curves", fontsize=10)
    for (steps, values), color, name, style, where in (
        (data.train_fine, FINE_COLOR, "fine", TRAIN_STYLE, train_label),
        (data.train_coarse, COARSE_COLOR, "coarse", TRAIN_STYLE, train_label),
        (data.test_fine, FINE_COLOR, "fine", TEST_STYLE, test_label),
        (data.test_coarse, COARSE_COLOR, "coarse", TEST_STYLE, test_label),
    ):
        if len(steps):
            score_ax.plot(steps, 100 * values, color=color, label=f"{name}, {where}", **_markers(style, len(steps)))
    if not (len(data.train_fine[0]) or len(data.test_fine[0])):
        score_ax.text(0.5, 0.5, "no scores recorded yet", ha="center", va="center", transform=score_ax.transAxes)
    else:
        score_ax.legend(loc="best", fontsize=7, framealpha=0.8)
    score_ax.set_ylim(-3, 103)
    score_ax.set_ylabel("score (%)")
    score_ax.set_xlabel("training step")
    for ax in (loss_ax, score_ax):
        ax.grid(True, linewidth=0.3, alpha=0.5)
    return loss_ax, score_ax
