"""The example scripts and the main job run and print what they promise."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
from pathlib import Path

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


def test_demo_trails_keep_their_gap():
    lines = run("-m", "liemem.demo", "--steps", "6").splitlines()[1:]
    names = {line.split()[0] for line in lines}
    assert {"translation", "so3", "se2", "torus"} <= names
    for line in lines:
        low, high = line.split()[-2].split("..")
        assert abs(float(low) - float(high)) < 1e-9, line  # isometry: the read head never drifts
        assert float(low) > 0
