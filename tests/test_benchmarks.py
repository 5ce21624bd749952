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


def _paper_cells():
    import importlib.util

    spec = importlib.util.spec_from_file_location("paper_cells", ROOT / "benchmarks" / "paper_cells.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cell_runner_reads_the_authors_kept_settings():
    cells = _paper_cells()
    # Rows as the shared grid-winners.tsv holds them (its columns documented in shared/paper/README.md).
    header = "task model regime learning_rate decay_delay_iters init seed angle_bound key_dim sharpening".split()
    header += "lstm_layers rnn_size embedding_size reset_train_interval_iters".split()
    values = [*"repeat_copy slantm small 0.01 600 uniform[-1,1] 2 false".split(), "", "", "", "", "", "50"]
    slantm = dict(zip(header, values, strict=True))
    train, options = cells.kept_settings(slantm)
    assert train == {"lr": 0.01, "decay_after": 6000, "regime": "small"}  # 600 iterations of 10 steps
    assert options == {"init": "uniform", "group_options": {"angle_bound": False}}
    lstm_row = [*"copy lstm small 0.002 700 torch-default 2".split(), "", "", "", "2", "256", "128", "50"]
    train, options = cells.kept_settings(dict(zip(header, lstm_row, strict=True)))
    assert train["decay_after"] == 7000
    assert options == {"init": "default", "layers": 2, "hidden_size": 256, "embedding_size": 128}
    from liemem import build_model

    assert build_model("lstm", 5, **options).lstm.num_layers == 2  # options the LSTM baseline takes
    assert cells.parse_cell("reverse:lantm:init=uniform") == ("reverse", "lantm", "small", {"init": "uniform"})
    assert cells.parse_cell("copy:ram:large:lr=0.02") == ("copy", "ram", "large", {"lr": 0.02})


def test_the_cell_runner_scores_as_the_authors_code_does():
    # Evaluations at steps 5,500 and later count; the best is the most examples right, then the most symbols.
    evaluations = [[5000, 1.0, 1.0], [5500, 0.9, 0.5], [6000, 0.95, 0.5], [6500, 0.99, 0.4]]
    assert _paper_cells().paper_best(evaluations) == {"step": 6000, "fine": 0.95, "coarse": 0.5}
    assert _paper_cells().paper_best(evaluations[:1]) is None
