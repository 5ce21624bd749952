"""The throughput benchmark runs end to end and reports each model against the floor measured in the same run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_throughput_benchmark_reports_every_cell_against_the_floor():
    command = [sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--models", "lantm", "--lengths", "3",
               "--batch-size", "2", "--seconds", "0.05", "--rounds", "2", "--device", "cpu"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.split()[:1] in (["floor"], ["lantm"])]
    assert [(row[0], int(row[1])) for row in rows] == [("floor", 3), ("lantm", 3)]
    for row in rows:
        milliseconds, samples_per_second, ratio, peak = float(row[2]), float(row[3]), float(row[4]), float(row[6])
        assert milliseconds > 0 and peak > 0
        # A batch of 2: samples/s is 2000 / (ms per step), up to the rounding of both printed numbers.
        assert 2000 / (milliseconds + 0.05) - 0.5 <= samples_per_second <= 2000 / max(milliseconds - 0.05, 1e-3) + 0.5
        if row[0] == "floor":
            assert ratio == 1.0


def test_throughput_benchmark_refuses_an_unknown_model():
    command = [sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--models", "lantx"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2 and "unknown models ['lantx']" in result.stderr
