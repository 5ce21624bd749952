"""What the benchmark runners share: `liemem train` in a child process with one torch thread, and its records.

Both `paper_cells.py` and `seeds.py` train each run in its own process, so that two runs at a time on two cores
do not fight over threads, and read back the evaluations it logged.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

from liemem.suite.runner import read_evaluations  # noqa: F401 - the runners read a run's log as the suite does
from liemem.training.config import toml_value  # noqa: F401 - and write TOML as TrainConfig.to_toml does

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TORCHINDUCTOR_COMPILE_THREADS": "1"}


def parse_value(text: str):
    """A `field=value` setting's value: a bool, int or float where it reads as one, else the string."""
    if text in ("true", "false"):
        return text == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def train_in_child(config: Path, out: Path, python: str) -> tuple[subprocess.CompletedProcess, float]:
    """Run `liemem train --config config --out out` with one torch thread; the finished process and its seconds.

    It starts in `out`: `python -m` puts the working directory first on sys.path, ahead of PYTHONPATH, so a run
    started from a checkout would import that checkout's liemem whatever `python` or PYTHONPATH name.
    """
    command = [python, "-m", "liemem", "train", "--config", str(config), "--out", str(out), "--no-progress"]
    started = time.time()
    done = subprocess.run(command, env=dict(os.environ, **ONE_THREAD), capture_output=True, text=True, cwd=out)
    return done, round(time.time() - started, 1)


def machine() -> str:
    """The processor a run ran on, for its record."""
    return f"{platform.machine()} {platform.processor() or platform.system()}, 1 torch thread"


def last_error(done: subprocess.CompletedProcess) -> str:
    """The last line a failed run wrote to stderr: `liemem train` names the problem there."""
    return (done.stderr.strip().splitlines() or ["(no message)"])[-1]


def best_evaluation(evaluations: list, after: int = -1) -> dict | None:
    """The evaluation after step `after` with the most examples right, then the most symbols, as
    {"step", "fine", "coarse"}; None if there is none."""
    counted = [entry for entry in evaluations if entry[0] > after]
    if not counted:
        return None
    step, fine, coarse = max(counted, key=lambda entry: (entry[2], entry[1]))
    return {"step": step, "fine": fine, "coarse": coarse}
