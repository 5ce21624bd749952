"""The example scripts and the main job run and print what they promise."""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import json
import math
import re
import subprocess
import sys
from pathlib import Path

from liemem.training import load_config

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("run_suite", ROOT / "examples" / "run_suite.py")
run_suite = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_suite)


def run(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


def test_custom_group_script_walks_the_circle():
    out = run("examples/custom_group.py").splitlines()
    angles = [float(line.split("angle")[1].split()[0]) for line in out]
    assert angles[0] == 0.0 and len(angles) == 5
    expected = math.degrees(math.tanh(2.0))  # the controller output 2.0 turns into a step of tanh(2) rad
    for a, b in itertools.pairwise(angles):
        assert abs((b - a) % 360 - expected) < 0.011


def test_every_example_config_resolves_for_every_paper_task():
    configs = sorted((ROOT / "examples" / "configs").glob("*.toml"))
    names = {path.stem for path in configs}
    assert {"lantm", "lantm-s", "slantm", "slantm-s", "lstm", "ram", "ram-tape", "ntm", "quickstart"} <= names
    for path in configs:
        config = load_config(path)
        if path.stem != "quickstart":
            assert config.model == path.stem and config.steps == 10_000 and config.batch_size == 32
            assert config.regime == "small" and config.eval_samples == 3200
        for task in run_suite.PAPER_TASKS:
            dataclasses.replace(config, task=task).resolved()  # raises if any option does not fit


def test_run_suite_writes_the_papers_table_layout(tmp_path):
    out = run(
        "examples/run_suite.py", "--models", "lantm", "ram", "--tasks", "copy", "double", "--regimes", "small",
        "large", "--steps", "2", "--eval-samples", "4", "--device", "cpu", "--out", str(tmp_path),
    )  # fmt: skip
    table = (tmp_path / "table.md").read_text().splitlines()
    assert table[0] == "| task | LANTM S | LANTM L | RAM S | RAM L |"
    assert table[2].startswith("| 1 copy | ") and table[3].startswith("| 2 double | ")
    cells = [cell.strip() for line in table[2:] for cell in line.strip("|").split("|")[1:]]
    assert len(cells) == 8 and all(cell == "*" or re.fullmatch(r"\d+/\d+", cell) for cell in cells)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["double"]["ram/large"]["runs"][0]["step"] == 2
    assert out.endswith((tmp_path / "table.md").read_text())


def test_table_cells_round_as_the_paper_does():
    assert run_suite.cell({"fine": 1.0, "coarse": 1.0}) == "*"
    assert run_suite.cell({"fine": 0.997, "coarse": 0.9}) == "99/90"  # 99.7 is not rounded up to 100
    assert run_suite.cell({"fine": 1.0, "coarse": 0.996}) == "100/99"
    assert run_suite.cell({"fine": 0.5049, "coarse": 0.0}) == "50/0"
    assert run_suite.cell(None) == "-"


def test_the_custom_group_trains_with_no_change_to_liemem(tmp_path):
    out = run("examples/train_custom_group.py", "--steps", "3", "--eval-samples", "8", "--device", "cpu", "--out",
              str(tmp_path))  # fmt: skip
    summary = json.loads(out.splitlines()[-1])
    assert summary["step"] == 3 and 0 <= summary["coarse"] <= 1 and 0 <= summary["fine"] <= 1
    assert json.loads((tmp_path / "config.json").read_text())["model"] == "so2"
