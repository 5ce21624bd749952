"""Ready settings for known runs: `paper(task, model, regime)` is the run the paper's authors kept for that cell
of table 1b (learning rate, decay delay, initialisation, SLANTM's angle bound, RAM's key width and sharpening, the
LSTM's layers and sizes), as a `TrainConfig`.

    from liemem import presets
    config = presets.paper("copy", "slantm", "small")      # then dataclasses.replace(config, seed=2), ...
    presets.paper_score("copy", "ram", "small")            # (0.61, 0.0): the paper's fine and coarse

The data (`paper.json`) ships with the package; `scripts/make_paper_presets.py` writes it from the project's
transcription of the paper and of the authors' run files. Their seeds are not kept: Torch7's generator does not
carry over to PyTorch.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import NamedTuple

from ..config import ConfigError
from ..training.config import TrainConfig, config_from_dict

DATA = Path(__file__).resolve().parent / "paper.json"
NAMES = ("paper", "defaults")


class PaperCell(NamedTuple):
    """One cell of the paper's table 1b: the kept run's settings and the paper's scores (fractions)."""

    settings: dict
    fine: float
    coarse: float


@functools.cache
def _cells() -> dict[tuple[str, str, str], PaperCell]:
    data = json.loads(DATA.read_text())
    cells = {}
    for entry in data["cells"]:
        settings = entry["settings"]
        key = (settings["task"], settings["model"], settings["regime"])
        cells[key] = PaperCell(settings, entry["paper"]["fine"], entry["paper"]["coarse"])
    return cells


def paper_cells() -> list[tuple[str, str, str]]:
    """Every (task, model, regime) of the paper's table 1b, in the table's order (tasks, then models)."""
    return list(_cells())


def _cell(task: str, model: str, regime: str) -> PaperCell:
    cell = _cells().get((task, model, regime))
    if cell is None:
        known = paper_cells()
        raise ConfigError(
            f"no paper preset for task {task!r}, model {model!r}, regime {regime!r}: the paper's table has tasks "
            f"{', '.join(dict.fromkeys(k[0] for k in known))}; models {', '.join(dict.fromkeys(k[1] for k in known))}; "
            "regimes small, large"
        )
    return cell


def paper(task: str, model: str, regime: str = "small") -> TrainConfig:
    """The authors' kept settings for a cell of table 1b, as a `TrainConfig` (seed 1; warm-up off; the best
    evaluation counted after step 5,000, as their code scores a run). `ConfigError` for a cell the table lacks."""
    settings = dict(_cell(task, model, regime).settings)
    settings["model_options"] = json.loads(json.dumps(settings["model_options"]))  # a copy the caller may change
    return config_from_dict(settings, f"paper preset {task}/{model}/{regime}")


def paper_score(task: str, model: str, regime: str = "small") -> tuple[float, float]:
    """The paper's (fine, coarse) for a cell of table 1b, as fractions: the best of its grid and seeds 1-3."""
    cell = _cell(task, model, regime)
    return cell.fine, cell.coarse


def preset(name: str, task: str, model: str, regime: str = "small") -> TrainConfig:
    """The settings `liemem train --preset NAME` starts from: 'paper' (the kept run of that cell) or 'defaults'
    (liemem's own defaults for the task, model and regime)."""
    if name == "paper":
        return paper(task, model, regime)
    if name == "defaults":
        return TrainConfig(task=task, model=model, regime=regime)
    raise ConfigError(f"unknown preset {name!r}; valid presets: {', '.join(NAMES)}")


__all__ = ["NAMES", "PaperCell", "paper", "paper_cells", "paper_score", "preset"]
