"""The example scripts and the main job run and print what they promise."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

from liemem.suite import PAPER_TASKS
from liemem.training import load_config

ROOT = Path(__file__).resolve().parents[1]


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
        if path.stem not in ("quickstart", "cauchy"):
            assert config.model == path.stem and config.steps == 10_000 and config.batch_size == 32
            assert config.regime == "small" and config.eval_samples == 3200
        for task in PAPER_TASKS:
            dataclasses.replace(config, task=task).resolved()  # raises if any option does not fit


def test_the_custom_group_trains_with_no_change_to_liemem(tmp_path):
    out = run("examples/train_custom_group.py", "--steps", "3", "--eval-samples", "8", "--device", "cpu", "--out",
              str(tmp_path))  # fmt: skip
    summary = json.loads(out.splitlines()[-1])
    assert summary["step"] == 3 and 0 <= summary["coarse"] <= 1 and 0 <= summary["fine"] <= 1
    assert json.loads((tmp_path / "config.json").read_text())["model"] == "so2"
