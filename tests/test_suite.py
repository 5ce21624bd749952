"""`liemem suite`: the grid it plans, the records it writes, resuming after a kill without rerunning finished
cells, the Ray path, and the report written from records alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from liemem import cli
from liemem.config import ConfigError
from liemem.suite import Cell, four_times_lengths, plan, run_suite
from liemem.suite.report import below_paper, furthest_below, geometry_models, score_text, table, write_report

ROOT = Path(__file__).resolve().parents[1]
# Runs small enough for a test: sizes 2-4 (4x: 9-16), a few steps, small evaluations.
TINY = {
    "steps": 12, "train_lengths": (2, 4), "test_lengths": (5, 8), "eval_every": 6, "eval_samples": 32,
    "checkpoint_every": 3, "log_every": 3,
}  # fmt: skip
RECORD_KEYS = {"task", "model", "regime", "seed", "preset", "settings", "best", "final", "x4", "steps",
               "wall_seconds", "peak_memory_mb", "commit", "machine", "evals", "float64_steps"}  # fmt: skip


def test_the_plan_runs_one_models_cells_before_the_next():
    cells = plan(["copy", "reverse"], ["slantm", "lantm"], ["small", "large"], [1, 2])
    assert len(cells) == 16
    assert [cell.model for cell in cells[:8]] == ["slantm"] * 8
    assert cells[0] == Cell("copy", "slantm", "small", 1, "paper")
    assert cells[1].name == "copy-slantm-small-paper-seed2"
    assert cells[2].regime == "large" and cells[4].task == "reverse"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((["copy"], ["lantm"], ["small"], [1], "grid"), "unknown preset 'grid'"),
        ((["copyy"], ["lantm"], ["small"], [1], "paper"), "unknown task 'copyy'"),
        ((["copy"], ["lantmm"], ["small"], [1], "paper"), "unknown model 'lantmm'"),
        ((["copy"], ["lantm"], ["medium"], [1], "paper"), "unknown regime 'medium'"),
        ((["copy"], ["lantm"], ["small"], [-1], "paper"), "seeds must be non-negative"),
        ((["associative_recall"], ["lantm"], ["small"], [1], "paper"), "no paper preset"),
    ],
)
def test_the_plan_refuses_bad_names_before_anything_runs(arguments, message):
    with pytest.raises(ConfigError, match=message):
        plan(*arguments)


@pytest.mark.parametrize(
    ("task", "expected"),
    # 2u + 1 to 4u, u the largest training size, by hand: copy trains on 2-64 symbols, repeat copy on 1-5
    # repetitions, interleaved add on 2-16 digits per number, priority sort on 2-10 values.
    [("copy", (129, 256)), ("repeat_copy", (11, 20)), ("interleaved_add", (33, 64)), ("priority_sort", (21, 40))],
)
def test_four_times_lengths(task, expected):
    assert four_times_lengths(Cell(task, "lantm", "small", 1, "paper").config()) == expected


def _records(folder: Path) -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}


def test_a_suite_records_every_cell_and_never_reruns_a_finished_one(tmp_path):
    cells = plan(["copy", "reverse"], ["lantm"], ["small"], [1], "defaults")
    lines = []
    left = run_suite(cells, tmp_path / "runs", tmp_path / "records", 2, TINY, x4_samples=16, echo=lines.append)
    assert left == []
    records = _records(tmp_path / "records")
    assert sorted(records) == ["copy-lantm-small-defaults-seed1", "reverse-lantm-small-defaults-seed1"]
    for name, record in records.items():
        assert RECORD_KEYS <= set(record) and record["exit_status"] == 0
        summary = json.loads((tmp_path / "runs" / name / "summary.json").read_text())
        assert record["best"] == summary["best"] and record["steps"] == 12
        assert record["x4"]["lengths"] == [9, 16] and record["x4"]["samples"] == 16
        assert 0 <= record["x4"]["fine"] <= 1 and record["x4"]["step"] == record["best"]["step"]
        assert [entry[0] for entry in record["evals"]] == [6, 12] and record["float64_steps"] == 0
        assert record["peak_memory_mb"] > 50 and record["settings"]["train_lengths"] == [2, 4]
    assert lines[0] == "2 cells: 0 done already, 2 to run"
    assert any(line.startswith("[2/2 done, 0 running, 0 left]") for line in lines)

    stamps = {path: path.stat().st_mtime_ns for path in (tmp_path / "runs").rglob("*") if path.is_file()}
    again = []
    assert run_suite(cells, tmp_path / "runs", tmp_path / "records", 2, TINY, echo=again.append) == []
    assert again == ["2 cells: 2 done already, 0 to run"]
    assert stamps == {path: path.stat().st_mtime_ns for path in (tmp_path / "runs").rglob("*") if path.is_file()}


def test_a_diverged_cell_is_recorded_and_the_suite_goes_on(tmp_path):
    cells = plan(["copy"], ["lantm", "slantm"], ["small"], [1], "defaults")
    lines = []
    # A rate of 1e30 sends the first step's weights to infinity: `liemem train` stops and names the step.
    wild = {**TINY, "lr": 1e30}
    run_suite(cells[:1], tmp_path / "runs", tmp_path / "records", 1, wild, x4_samples=16, echo=lines.append)
    record = _records(tmp_path / "records")["copy-lantm-small-defaults-seed1"]
    assert record["diverged"] is True and record["exit_status"] == 3 and "step" in record["error"]
    assert "best" not in record and "diverged" in lines[-1]
    run_suite(cells, tmp_path / "runs", tmp_path / "records", 1, wild, x4_samples=16, echo=lines.append)
    assert lines[-2] == "2 cells: 1 done already, 1 to run"  # the diverged cell counts as done


_KILLABLE_SUITE = """
import sys
from liemem.suite import plan, run_suite
cells = plan(["copy", "reverse"], ["lantm"], ["small"], [1], "defaults")
tiny = {"steps": 400, "train_lengths": (2, 4), "test_lengths": (5, 8), "eval_every": 5, "eval_samples": 32,
        "checkpoint_every": 5, "log_every": 5}
run_suite(cells, sys.argv[1], sys.argv[2], 1, tiny, x4_samples=16)
"""


def test_a_suite_killed_mid_run_resumes_the_stopped_cell_from_its_checkpoint(tmp_path):
    runs, records = tmp_path / "runs", tmp_path / "records"
    first = runs / "copy-lantm-small-defaults-seed1"
    suite = subprocess.Popen(
        [sys.executable, "-c", _KILLABLE_SUITE, str(runs), str(records)], cwd=tmp_path, start_new_session=True
    )
    deadline = time.time() + 240
    while time.time() < deadline and _checkpoint_step(first) < 20:
        time.sleep(0.2)
    os.killpg(suite.pid, signal.SIGKILL)  # the suite and its training child, as a lost machine would
    suite.wait()
    _wait_until_unlocked(first / "suite.lock")  # the killed child lets go of its run when it has exited
    stopped_at = _checkpoint_step(first)
    assert 20 <= stopped_at < 400 and not records.exists()

    # Restarted, the suite finishes the same cells; the stopped one goes on from its checkpoint.
    lines = []
    cells = plan(["copy", "reverse"], ["lantm"], ["small"], [1], "defaults")
    tiny = {**TINY, "steps": 400, "eval_every": 5, "checkpoint_every": 5, "log_every": 5}
    assert run_suite(cells, runs, records, 1, tiny, x4_samples=16, echo=lines.append) == []
    assert lines[0] == "2 cells: 0 done already, 2 to run"
    assert sorted(_records(records)) == ["copy-lantm-small-defaults-seed1", "reverse-lantm-small-defaults-seed1"]
    log = (first / "train.log").read_text().splitlines()
    # Every evaluation up to the checkpoint it resumed from was made once: the run did not start again. (The
    # killed run may have evaluated a step past its checkpoint, which the resumed run then evaluates again.)
    for step in range(5, stopped_at + 1, 5):
        assert sum(line.startswith(f"step {step}:") for line in log) == 1, step
    assert _records(records)["copy-lantm-small-defaults-seed1"]["final"]["step"] == 400


def _wait_until_unlocked(path: Path, seconds: float = 30) -> None:
    import fcntl

    deadline = time.time() + seconds
    with path.open("a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(handle, fcntl.LOCK_UN)
                return
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)


def _checkpoint_step(directory: Path) -> int:
    import torch

    try:
        return torch.load(directory / "checkpoint.pt", weights_only=False)["step"]
    except Exception:  # not written yet, or being replaced
        return 0


def test_the_ray_path_runs_cells_as_tasks_on_a_local_instance(tmp_path):
    pytest.importorskip("ray", reason="the Ray path needs pip install 'liemem[ray]'")
    cells = plan(["copy", "bigram_flip"], ["lantm"], ["small"], [2], "defaults")
    lines = []
    left = run_suite(
        cells, tmp_path / "runs", tmp_path / "records", 2, TINY, x4_samples=16, ray_address="local", echo=lines.append
    )
    assert left == []
    records = _records(tmp_path / "records")
    assert sorted(records) == ["bigram_flip-lantm-small-defaults-seed2", "copy-lantm-small-defaults-seed2"]
    assert all(RECORD_KEYS <= set(record) and record["seed"] == 2 for record in records.values())
    assert records["bigram_flip-lantm-small-defaults-seed2"]["x4"]["lengths"] == [9, 16]


def _record(task, model, regime, seed, best, x4=None, preset="paper", **extra):
    record = {"task": task, "model": model, "regime": regime, "seed": seed, "preset": preset, **extra}
    if best is not None:
        record["best"] = {"step": 6000, "fine": best[0], "coarse": best[1], "samples": 3200}
        record["x4"] = {"fine": x4[0], "coarse": x4[1]} if x4 else {"fine": 0.0, "coarse": 0.0}
    return record


def test_the_report_sets_the_best_seed_beside_the_papers_cell(tmp_path):
    records = [
        _record("copy", "lantm", "small", 1, (0.5, 0.2)),
        _record("copy", "lantm", "small", 2, (1.0, 1.0), x4=(0.873, 0.25)),  # the best seed: shown
        _record("copy", "ram", "small", 1, (0.0417, 0.0)),  # paper 61/0: within 5 coarse points
        _record("reverse", "lantm", "small", 1, (0.996, 0.94)),  # paper 100/100: 6 points below, marked
        _record("odd_first", "slantm", "large", 1, None, diverged=True, error="diverged at step 7"),
        _record("copy", "slantm", "small", 1, (0.99, 0.95), preset="defaults"),
    ]
    for index, record in enumerate(records):
        (tmp_path / f"run{index}.json").write_text(json.dumps(record))
    (tmp_path / "notes.json").write_text("[1, 2]")  # not a record: ignored
    text = table([json.loads(p.read_text()) for p in sorted(tmp_path.glob("run*.json"))])
    at_2x = text.split("## At 4x")[0]
    rows = {line.split(" | ")[0]: line.split(" | ") for line in at_2x.splitlines() if line.startswith("| ")}
    # Columns: task, LSTM S, LSTM L, RAM S, RAM L, RAM/Tape S, RAM/Tape L, LANTM S, ... in the paper's order.
    first_copy = rows["| 1 copy"]
    assert first_copy[7] == "* (*)" and first_copy[3] == "4/0 (61/0)" and first_copy[1] == "· (16/0)"
    assert rows["| 2 reverse"][7] == "**99/94** (*)"
    assert rows["| 6 odd_first"][12] == "**diverged** (56/8)"
    assert "Cells run: 4 of 112 (5 runs); more than 5 coarse points below the paper: 2." in text
    x4_rows = [line for line in text.split("## At 4x")[1].splitlines() if line.startswith("| 1 copy")]
    assert x4_rows[0].split(" | ")[7] == "87/25"  # the x4 scores of the best seed, not of seed 1
    seed_section = text.split("## Seed by seed")[1].split("## One run")[0]
    seed_rows = [line for line in seed_section.splitlines() if line.startswith("| ")]
    # Only copy on LANTM (small) has two seeds; a seed a cell lacks would show as "·".
    assert seed_rows == ["| cell | paper | seed 1 | seed 2 |", "| LANTM S copy | * | 50/20 | * |"]
    assert "## One run with liemem's defaults" in text
    defaults_row = next(line for line in text.split("## One run")[1].splitlines() if line.startswith("| 1 copy"))
    assert defaults_row.split(" | ")[1] == "99/95 (*) |"  # the only column: SLANTM S

    # More seeds go to the cells more than 5 coarse points below the paper, and to a diverged one.
    assert below_paper(tmp_path) == {("reverse", "lantm", "small"), ("odd_first", "slantm", "large")}
    assert below_paper(tmp_path, points=10) == {("odd_first", "slantm", "large")}

    # The curves go to the cells furthest below the paper: copy on RAM is 57 fine points short at 0 coarse, so it
    # ranks below reverse (6 coarse points short); the cells at the paper's score are left out.
    assert furthest_below(records) == [("odd_first", "slantm", "large"), ("reverse", "lantm", "small"),
                                       ("copy", "ram", "small")]  # fmt: skip

    assert cli.main(["suite", "--report", str(tmp_path)]) == 0
    written = (tmp_path / "table.md").read_text()
    assert written == text and (tmp_path / "table.png").stat().st_size > 10_000
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    write_report(tmp_path)
    assert (tmp_path / "table.md").read_text() == written  # regenerated from the records alone: identical


def test_a_folder_of_geometries_is_reported_by_task_and_geometry(tmp_path):
    records = [
        _record("copy", "mobius", "small", 1, (0.95, 0.5), x4=(0.6, 0.1), preset="defaults"),
        _record("copy", "mobius", "small", 2, (1.0, 0.97), x4=(0.9, 0.42), preset="defaults"),  # the best seed
        _record("reverse", "mobius", "small", 1, None, preset="defaults", diverged=True),
        _record("copy", "lantm", "small", 1, (1.0, 1.0), x4=(1.0, 1.0), preset="defaults"),
        _record("copy", "se3", "small", 1, (0.5, 0.899), preset="defaults"),  # just short of solved
    ]
    for index, record in enumerate(records):
        (tmp_path / f"run{index}.json").write_text(json.dumps(record))
    text = table(records)
    assert "# Geometries" in text and "Table 1b" not in text
    rows = {line.split(" | ")[0]: line.split(" | ") for line in text.splitlines() if line.startswith("| ")}
    assert rows["| task"][1:] == ["LANTM S", "mobius S", "se3 S |"]  # the paper's models first, then by name
    assert rows["| 1 copy"][1:] == ["**100 / 100**", "**97 / 42** (2)", "90 / 0 |"]
    assert rows["| 2 reverse"][2] == "diverged" and rows["| 3 bigram_flip"][1] == "·"
    assert rows["| solved"][1:] == ["1 of 8", "1 of 8", "0 of 8 |"]
    assert "Cells run: 4 of 24 (5 runs)." in text
    assert geometry_models(records[3:4]) == []  # the paper's models alone are not a folder of geometries
    assert cli.main(["suite", "--report", str(tmp_path)]) == 0
    assert (tmp_path / "table.md").read_text() == text and (tmp_path / "table.png").stat().st_size > 10_000
    assert not (tmp_path / "curves.png").exists()


def test_scores_round_as_the_paper_prints_them():
    assert score_text(1.0, 1.0) == "*"
    assert score_text(0.997, 0.9) == "99/90"  # 99.7 is not rounded up to 100
    assert score_text(1.0, 0.996) == "100/99"
    assert score_text(0.5049, 0.0) == "50/0"


def test_suite_command_line_errors_are_one_line(tmp_path, capsys):
    assert cli.main(["suite", "--models", "lantmm", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'lantmm'" in err and len(err.strip().splitlines()) == 1
    assert cli.main(["suite", "--tasks", "copy"]) == 2
    assert "--out is required" in capsys.readouterr().err
    assert cli.main(["suite", "--out", str(tmp_path), "--workers", "0", "--tasks", "copy", "--models", "lantm"]) == 2
    assert "workers must be a positive integer" in capsys.readouterr().err
    assert cli.main(["suite", "--report", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_a_cell_another_process_is_running_is_left_to_it(tmp_path):
    import fcntl

    cells = plan(["copy"], ["lantm"], ["small"], [1], "defaults")
    directory = tmp_path / "runs" / cells[0].name
    directory.mkdir(parents=True)
    lines = []
    with (directory / "suite.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # as a suite running this cell holds it
        left = run_suite(cells, tmp_path / "runs", tmp_path / "records", 1, TINY, echo=lines.append)
    assert left == cells and not (tmp_path / "records").exists()
    assert lines[-1].endswith("skipped: another process is running it")
    assert not (directory / "checkpoint.pt").exists()  # nothing was trained beside the other process


def test_suite_command_gives_more_seeds_only_to_the_cells_below_the_paper(tmp_path, monkeypatch):
    import liemem.suite as suite_module

    records = tmp_path / "records"
    records.mkdir()
    # reverse/LANTM/small is 6 coarse points short of the paper's 100; copy/LANTM/small matches it.
    for record in (
        _record("reverse", "lantm", "small", 1, (0.996, 0.94)),
        _record("copy", "lantm", "small", 1, (1, 1)),
    ):
        (records / f"{record['task']}.json").write_text(json.dumps(record))
    seen = {}

    def fake_run_suite(cells, out, results, workers, *rest, **kwargs):
        seen["cells"], seen["results"], seen["workers"] = cells, results, workers
        return []

    monkeypatch.setattr(suite_module, "run_suite", fake_run_suite)
    argv = ["suite", "--tasks", "copy", "reverse", "--models", "lantm", "--regimes", "small", "--seeds", "2", "3"]
    argv += ["--only-below-paper", "5", "--out", str(tmp_path / "runs"), "--results", str(records), "--workers", "1"]
    assert cli.main(argv) == 0
    assert [(c.task, c.seed) for c in seen["cells"]] == [("reverse", 2), ("reverse", 3)]
    assert seen["results"] == str(records) and seen["workers"] == 1


def test_steps_computed_again_in_float64_are_counted_from_the_metrics_log(tmp_path):
    from liemem.suite.runner import count_float64_steps

    log = tmp_path / "metrics.jsonl"
    lines = [{"step": 10, "loss": 4.0}, {"step": 20, "loss": 4.1, "float64_steps": 3}, {"step": 20, "eval": {}}]
    log.write_text("\n".join(json.dumps(line) for line in lines) + '\n{"step": 30, "loss": 4.2, "float64_st')
    more = {"step": 40, "loss": 3.9, "float64_steps": 2}
    assert count_float64_steps(log) == 3  # the line a kill cut off is skipped
    log.write_text(log.read_text().rsplit("\n", 1)[0] + "\n" + json.dumps(more) + "\n")
    assert count_float64_steps(log) == 5
    assert count_float64_steps(tmp_path / "missing.jsonl") == 0
