"""The paper presets: the shipped data is the project's transcription of the paper, hand-checked cells, and
`liemem train --preset paper` starting from them with flags on top."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from liemem import cli, presets
from liemem.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SHARED_PAPER = ROOT.parent / "shared" / "paper"


def test_the_shipped_presets_are_what_the_transcribed_tables_give():
    if not (SHARED_PAPER / "grid-winners.tsv").exists():
        pytest.skip("needs ../shared/paper beside the checkout")
    spec = importlib.util.spec_from_file_location("make_paper_presets", ROOT / "scripts" / "make_paper_presets.py")
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    assert maker.render(maker.build(SHARED_PAPER)) == presets.DATA.read_text()


def test_there_is_a_preset_for_every_cell_of_table_1b():
    cells = presets.paper_cells()
    assert len(cells) == 8 * 7 * 2 == len(set(cells))
    assert cells[0] == ("copy", "lstm", "small")  # the table's order: tasks, then its columns
    for task, model, regime in cells:
        config = presets.paper(task, model, regime).resolved()  # every option fits its model and task
        assert (config.task, config.model, config.regime) == (task, model, regime)
        assert config.steps == 10_000 and config.warmup_steps == 0 and config.best_after == 5_000
        assert config.lr in (0.01, 0.02, 0.04) or model == "lstm"


@pytest.mark.parametrize(
    ("cell", "fields", "options", "paper"),
    [
        # Values read off the authors' run files by hand (xopts/<task>/<model>_<task>_<regime>train.json).
        (("copy", "ram", "small"), {"lr": 0.02, "decay_after": 3000}, {"init": "default", "key_dim": 20}, (0.61, 0.0)),
        (
            ("repeat_copy", "slantm", "small"),
            {"lr": 0.01, "decay_after": 6000, "train_lengths": (1, 5), "test_lengths": (6, 10)},
            {"init": "uniform", "group_options": {"angle_bound": False}},
            (0.99, 0.91),
        ),
        (
            ("bigram_flip", "lstm", "small"),
            {"lr": 0.002, "decay_after": 7000},
            {"init": "default", "layers": 3, "hidden_size": 256, "embedding_size": 128},
            (0.30, 0.0),
        ),
        (
            ("copy", "ram-tape", "small"),
            {"lr": 0.01, "decay_after": 3000},
            {"init": "default", "key_dim": 2, "sharpening": True},
            (0.70, 0.02),
        ),
        (("priority_sort", "slantm", "small"), {"lr": 0.01, "decay_after": 3000}, {"init": "uniform"}, (1.0, 1.0)),
        (("interleaved_add", "lantm", "small"), {"lr": 0.01, "decay_after": 6000}, {"init": "default"}, (0.99, 0.93)),
    ],
)
def test_hand_checked_cells(cell, fields, options, paper):
    config = presets.paper(*cell)
    for name, value in fields.items():
        assert getattr(config, name) == value, name
    for name, value in options.items():
        assert config.model_options[name] == value, name
    assert presets.paper_score(*cell) == pytest.approx(paper)


def test_a_preset_is_a_copy_the_caller_may_change():
    first = presets.paper("copy", "slantm", "small")
    first.model_options["group_options"]["angle_bound"] = True
    assert presets.paper("copy", "slantm", "small").model_options["group_options"] == {"angle_bound": False}


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        (("associative_recall", "lantm", "small"), "no paper preset for task 'associative_recall'"),
        (("copy", "ntm", "small"), "model 'ntm'"),
        (("copy", "lantm", "huge"), "regime 'huge'"),
    ],
)
def test_a_cell_the_table_lacks_is_one_clear_error(cell, message):
    with pytest.raises(ConfigError, match=message):
        presets.paper(*cell)
    with pytest.raises(ConfigError, match="unknown preset 'grid'"):
        presets.preset("grid", "copy", "lantm")


def _trained_config(monkeypatch, *argv):
    seen = {}

    def fake_train(config, out, progress=None, echo=None):
        seen["config"] = config
        raise SystemExit(0)

    monkeypatch.setattr(cli, "train", fake_train)
    with pytest.raises(SystemExit):
        cli.main(["train", *argv, "--out", "unused"])
    return seen["config"]


def test_train_with_the_paper_preset_takes_the_cells_settings_and_flags_on_top(monkeypatch):
    config = _trained_config(monkeypatch, "--preset", "paper", "--task", "copy", "--model", "ram", "--regime", "large")
    assert config == presets.paper("copy", "ram", "large")
    config = _trained_config(
        monkeypatch, "--preset", "paper", "--task", "copy", "--model", "ram", "--seed", "3", "--lr", "0.005"
    )
    assert (config.seed, config.lr, config.decay_after, config.model_options["key_dim"]) == (3, 0.005, 3000, 20)
    defaults = _trained_config(monkeypatch, "--preset", "defaults", "--task", "reverse", "--model", "slantm")
    assert (defaults.task, defaults.model, defaults.warmup_steps, defaults.lr) == ("reverse", "slantm", 300, None)
    assert defaults.float64_on_overflow is True
    stopping = _trained_config(monkeypatch, "--preset", "paper", "--model", "slantm-s", "--no-float64-on-overflow")
    assert stopping.float64_on_overflow is False and stopping.lr == presets.paper("copy", "slantm-s", "small").lr


def test_train_refuses_a_preset_for_a_cell_the_table_lacks_and_a_preset_beside_a_config(capsys):
    status = cli.main(["train", "--preset", "paper", "--task", "double", "--model", "ntm", "--out", "unused"])
    err = capsys.readouterr().err
    assert status == 2 and "no paper preset" in err and len(err.strip().splitlines()) == 1
    status = cli.main(["train", "--preset", "paper", "--config", "x.toml", "--out", "unused"])
    assert status == 2 and "--preset or --config" in capsys.readouterr().err


def test_the_presets_file_is_plain_data_with_one_cell_per_line():
    lines = presets.DATA.read_text().splitlines()
    cell_lines = [line for line in lines if line.lstrip().startswith('{"settings"')]
    assert len(cell_lines) == 112
    assert json.loads(presets.DATA.read_text())["cells"][0]["paper"] == {"fine": 0.16, "coarse": 0.0}
