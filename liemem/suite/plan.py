"""What a suite runs: its cells (task, model, regime, seed, preset), their settings, names and the 4x lengths."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

from .. import presets, tasks
from ..config import ConfigError
from ..factory import model_names
from ..training.config import REGIMES, TrainConfig, scaled_lengths

PAPER_MODELS = ("lantm", "lantm-s", "slantm", "slantm-s", "lstm", "ram", "ram-tape")
PAPER_TASKS = (
    "copy", "reverse", "bigram_flip", "double", "interleaved_add", "odd_first", "repeat_copy", "priority_sort"
)  # fmt: skip


class Cell(NamedTuple):
    """One run of a suite."""

    task: str
    model: str
    regime: str
    seed: int
    preset: str

    @property
    def name(self) -> str:
        """The run's directory and record name: `task-model-regime-preset-seedS`."""
        return f"{self.task}-{self.model}-{self.regime}-{self.preset}-seed{self.seed}"

    def config(self, overrides: dict | None = None) -> TrainConfig:
        """The run's configuration: the preset for its task, model and regime, its seed, then `overrides`
        (fields of `TrainConfig`, such as a shorter `steps` for a trial)."""
        config = presets.preset(self.preset, self.task, self.model, self.regime)
        return dataclasses.replace(config, seed=self.seed, **(overrides or {})).resolved()


def plan(task_names=PAPER_TASKS, models=PAPER_MODELS, regimes=REGIMES, seeds=(1,), preset: str = "paper") -> list[Cell]:
    """The cells of a grid, models first (in the order given), then tasks, regimes and seeds, so that a suite
    runs one model's cells before the next model's. Unknown names are refused by name, before anything runs."""
    if preset not in presets.NAMES:
        raise ConfigError(f"unknown preset {preset!r}; valid presets: {', '.join(presets.NAMES)}")
    for name in task_names:
        tasks.get(name)
    for name in models:
        if name not in model_names():
            raise ConfigError(f"unknown model {name!r}; valid models: {', '.join(model_names())}")
    for regime in regimes:
        if regime not in REGIMES:
            raise ConfigError(f"unknown regime {regime!r}; valid regimes: {', '.join(REGIMES)}")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"seeds must be non-negative integers, got {seed!r}")
    cells = [
        Cell(task, model, regime, seed, preset)
        for model in dict.fromkeys(models)
        for task in dict.fromkeys(task_names)
        for regime in dict.fromkeys(regimes)
        for seed in dict.fromkeys(seeds)
    ]
    for cell in cells:
        cell.config()  # a cell with no preset (a task outside the paper's table, say) fails here, by name
    return cells


def four_times_lengths(config: TrainConfig) -> tuple[int, int]:
    """Sizes 2u + 1 to 4u, u the largest training size: the range beyond the paper's 2x test, up to twice it."""
    return scaled_lengths(config, 4)
