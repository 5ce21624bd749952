"""The benchmark scripts: throughput against the floor, the paper-cell runner and the seed study."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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


def load_benchmark(name: str):
    """A script of benchmarks/ (not a package) as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # a dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def _paper_cells():
    return load_benchmark("paper_cells")


def test_the_cell_runner_takes_the_paper_presets():
    cells = _paper_cells()
    train, options = cells.kept_settings("repeat_copy", "slantm", "small")
    # The authors' run file: lr 0.01, decay after 600 iterations of 10 steps, uniform init, no angle bound.
    assert train == {"lr": 0.01, "warmup_steps": 0, "clip_norm": 32.0, "decay_after": 6000, "regime": "small"}
    # Their read head starts half way to random access (liemem's default starts it on its trail).
    assert options == {"init": "uniform", "read_gate_bias": 0.0, "group_options": {"angle_bound": False}}
    train, options = cells.kept_settings("copy", "lstm", "small")
    assert train["decay_after"] == 7000
    assert options == {"init": "default", "layers": 2, "hidden_size": 256, "embedding_size": 128}
    from liemem import build_model

    assert build_model("lstm", 5, **options).lstm.num_layers == 2  # options the LSTM baseline takes
    assert cells.paper_score("copy", "ram", "small") == "61/0" and cells.paper_score("copy", "ntm", "small") == "?"
    assert cells.parse_cell("reverse:lantm:init=uniform") == ("reverse", "lantm", "small", {"init": "uniform"})
    assert cells.parse_cell("copy:ram:large:lr=0.02") == ("copy", "ram", "large", {"lr": 0.02})


def test_the_cell_runner_scores_as_the_authors_code_does():
    # Evaluations at steps 5,500 and later count; the best is the most examples right, then the most symbols.
    evaluations = [[5000, 1.0, 1.0], [5500, 0.9, 0.5], [6000, 0.95, 0.5], [6500, 0.99, 0.4]]
    assert _paper_cells().paper_best(evaluations) == {"step": 6000, "fine": 0.95, "coarse": 0.5}
    assert _paper_cells().paper_best(evaluations[:1]) is None


def _seeds():
    return load_benchmark("seeds")


def test_the_seed_study_reads_its_settings():
    seeds = _seeds()
    assert seeds.parse_seeds(["1-3", "7", "2"]) == [1, 2, 3, 7]
    data = seeds.apply_setting({"model_options": {"init": "uniform"}}, "model_options.group_options={}")
    assert data == {"model_options": {"init": "uniform", "group_options": "{}"}}
    assert seeds.apply_setting({}, "lr=0.01") == {"lr": 0.01}
    assert seeds.apply_setting({}, "one_length_per_batch=false") == {"one_length_per_batch": False}
    # The test lengths follow the training lengths as `liemem train` resolves them.
    assert seeds.resolved({"train_lengths": "2-8"}, "x")["test_lengths"] == [9, 16]
    assert seeds.resolved({"train_lengths": [1, 4], "test_lengths": [6, 6]}, "x")["test_lengths"] == [6, 6]


def test_the_seed_study_counts_the_first_evaluation_that_reaches_the_threshold():
    seeds = _seeds()
    evaluations = [[250, 0.5, 0.0], [500, 0.95, 0.91], [750, 0.99, 0.97], [1000, 0.98, 0.89]]
    assert seeds.first_success(evaluations, 0.9) == 500
    assert seeds.first_success(evaluations, 0.95) == 750
    assert seeds.first_success(evaluations, 0.98) is None
    assert seeds.best_evaluation(evaluations) == {"step": 750, "fine": 0.99, "coarse": 0.97}
    # Ties in whole examples go to the most symbols right.
    assert seeds.best_evaluation([[1, 0.2, 0.0], [2, 0.3, 0.0]])["step"] == 2
    assert seeds.best_evaluation([]) is None


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--set", "lr=-1"], "lr"),
        (["--set", "modle=lantm"], "unknown option 'modle'"),
        (["--set", "task=copyy"], "copyy"),
        (["--set", "layers.x=1"], "dotted name"),
        (["--threshold", "1.5"], "--threshold"),
        (["--sweep", "lr"], "bad sweep"),
        (["--seeds", "a-b"], "bad seeds"),
    ],
)
def test_the_seed_study_refuses_bad_settings_by_name(tmp_path, arguments, message):
    with pytest.raises(SystemExit, match=re.escape(message)):
        _seeds().main(["--results", str(tmp_path), "--report", *arguments])


def test_the_seed_study_trains_every_seed_and_reports_what_the_records_hold(tmp_path):
    results = tmp_path / "results"
    command = [sys.executable, str(ROOT / "benchmarks" / "seeds.py"), "--results", str(results),
               "--out", str(tmp_path / "runs"), "--seeds", "1-2", "--workers", "2", "--threshold", "0.05",
               "--set", "task=copy", "--set", "train_lengths=2-3", "--set", "steps=4", "--set", "eval_every=2",
               "--set", "eval_samples=64", "--sweep", "lr=0.01,0.02"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    for lr in ("0.01", "0.02"):
        records = [json.loads((results / f"lr={lr}" / f"seed{seed}.json").read_text()) for seed in (1, 2)]
        for seed, record in zip((1, 2), records, strict=True):
            assert record["exit_status"] == 0
            assert record["config"]["seed"] == seed and record["config"]["lr"] == float(lr)
            assert record["config"]["test_lengths"] == [4, 6]  # twice the longest training length
            assert [entry[0] for entry in record["evals"]] == [2, 4]
        # The success count printed is the one the records give.
        learned = sum(any(coarse >= 0.05 for _, _, coarse in record["evals"]) for record in records)
        assert f"lr={lr}: {learned}/2 seeds reach 5% coarse at 4-6" in result.stdout
    # A second call trains nothing and prints the same table from the records, and draws the rate per value.
    figure = tmp_path / "rate.png"
    again = subprocess.run([*command, "--plot", str(figure)], capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0, again.stderr
    table = again.stdout.split("\n\n")[-1].rsplit("\n", 2)[0]
    assert table == result.stdout.split("\n\n")[-1].rstrip("\n")
    assert figure.read_bytes().startswith(b"\x89PNG")


def test_the_seed_study_refuses_records_made_with_another_configuration(tmp_path):
    seeds = _seeds()
    recorded = {"task": "copy", "lr": 0.02, "seed": 3}  # written before `warmup_steps` existed
    asked = {"task": "copy", "lr": 0.01, "seed": 3, "warmup_steps": 0}
    assert seeds.differences(recorded, asked) == ["lr"]
    assert seeds.differences(recorded, {**asked, "lr": 0.02}) == []
    path = tmp_path / "seed3.json"
    path.write_text(json.dumps({"config": recorded, "evals": []}))
    with pytest.raises(SystemExit, match=r"another configuration: lr is 0\.02 there, 0\.01 here"):
        seeds.read_record(path, asked)
    assert seeds.read_record(path, {**asked, "lr": 0.02})["config"] == recorded


def test_read_gradients_prints_every_time_step_of_the_next_training_step(tmp_path):
    from liemem.training import TrainConfig, train

    config = TrainConfig(task="copy", model="lantm-s", steps=1, train_lengths=(3, 3), test_lengths=(4, 4),
                         eval_samples=8, device="cpu")  # fmt: skip
    train(config, tmp_path, progress=False)
    command = [sys.executable, str(ROOT / "benchmarks" / "read_gradients.py"), str(tmp_path), "--every", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "training step 2: 8 time steps, float64, plain loop"
    rows = [line.split() for line in lines[2:10]]
    # Copy of 3 symbols: 4 input steps (^ and the symbols) each read, then write; 4 answer steps read 5 slots.
    assert [int(row[0]) for row in rows] == list(range(8))
    assert [int(row[1]) for row in rows] == [1, 2, 3, 4, 5, 5, 5, 5]
    assert all(0 < float(row[2]) <= float(row[3]) for row in rows)
    # One slot: every query reads it with weight 1, so the read does not depend on the head's position.
    assert float(rows[0][4]) == 0 and all(float(row[4]) > 0 for row in rows[1:])
    assert lines[10].startswith("largest at time step ")


def test_head_drift_measures_the_read_head_in_write_steps_on_a_hand_made_trace():
    drift = load_benchmark("head_drift")
    # Slots: initial, '^', then symbols 1..3 written 2 apart on the x axis.
    keys = torch.tensor([[[9.0, 9.0], [-2.0, 0.0], [0.0, 0.0], [2.0, 0.0], [4.0, 0.0]]])
    # 4 input steps, then the answers of reverse: at symbol 3 exactly, then 1 short, then 2 beyond symbol 1.
    reads = torch.tensor([[[0.0, 0.0]] * 4 + [[4.0, 0.0], [1.0, 0.0], [-2.0, 0.0]]])
    assert drift.target_slots("reverse", 3) == [4, 3, 2] and drift.target_slots("copy", 3) == [2, 3, 4]
    result = drift.drift(keys, reads, 4, drift.target_slots("reverse", 3))
    assert result.write_step == 2.0 and result.write_step_spread == 0.0
    assert result.read_step == 3.0  # steps of 3 and 3
    assert result.misses == [0.0, 0.5, 1.0]
    with pytest.raises(SystemExit, match="is not one of copy, reverse"):
        drift.target_slots("double", 3)
