"""Running a suite's cells: each one `liemem train` in a child process with one torch thread, then its best
weights scored at 4x the training sizes, on this machine or as tasks on a Ray cluster.

A cell whose record exists is done and is not run again. A cell that was stopped resumes from its checkpoint,
since `liemem train` resumes any run directory that holds one. A run that diverges or fails is recorded with
its error, and the suite goes on; a run stopped by a signal (a suite killed, a lost node) is not recorded, so
that the next start resumes it. While a cell runs, a lock on its directory keeps a second suite off it.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..config import ConfigError
from .plan import Cell, four_times_lengths

# Two runs with two threads each on two cores slow each other down many times over; one thread each does not.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TORCHINDUCTOR_COMPILE_THREADS": "1"}
DIVERGED = 3  # `liemem train`'s exit status for a run whose loss or gradient stopped being finite
RECORDED_FAILURES = (1, 2, DIVERGED)  # a crash, an invalid configuration, a divergence; signals are not failures
LOG_FILE = "train.log"
LOCK_FILE = "suite.lock"


def record_path(results: Path, cell: Cell) -> Path:
    """Where a cell's record lives: `<results>/<cell name>.json`."""
    return Path(results) / f"{cell.name}.json"


def read_record(path: Path) -> dict | None:
    """A run's record, or None if there is none (or only a half-written one)."""
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_record(path: Path, record: dict) -> None:
    """Write a record whole or not at all: a suite killed while writing leaves no half file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(record, indent=1) + "\n")
    partial.replace(path)


def _lock(directory: Path):
    """An open file holding an exclusive lock on the run directory, or None if another process holds it.
    Children inherit the descriptor, so the lock lasts as long as the training it guards."""
    handle = (directory / LOCK_FILE).open("a")
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no advisory locks on this platform: run unguarded
        return handle
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def _run_child(command: list[str], cwd: Path, log: Path, keep_open: int, capture: bool = False):
    """Run `command` with one torch thread, its output (or only its errors, with `capture`) appended to `log`:
    (exit code, captured stdout, seconds, peak memory in MiB).

    It starts in `cwd`, not in a checkout: `python -m` puts the working directory first on sys.path, so a child
    started in one would import that checkout's liemem."""
    started = time.time()
    env = dict(os.environ, **ONE_THREAD)
    with open(log, "a") as sink:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.PIPE if capture else sink, stderr=sink, text=True,
            pass_fds=(keep_open,),
        )  # fmt: skip
        output = process.stdout.read() if capture else ""
        _, status, usage = os.wait4(process.pid, 0)  # this child's own peak memory, not the largest of all children
        process.returncode = os.waitstatus_to_exitcode(status)
    peak = usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)  # bytes on macOS, KiB elsewhere
    return process.returncode, output, round(time.time() - started, 1), round(peak, 1)


def _last_error(log: Path) -> str:
    """The line in which `liemem train` named the problem (its last line starting 'liemem'), else the log's last."""
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()] if log.exists() else []
    named = [line for line in lines if line.startswith("liemem")]
    return (named or lines or ["(no output)"])[-1]


def _metrics_entries(path: Path) -> list[dict]:
    """The records of a run's metrics log (a line cut off by a kill is skipped)."""
    entries = []
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict):
                entries.append(entry)
    return entries


def read_evaluations(path: Path) -> list[list]:
    """[step, fine, coarse] of each evaluation in a run's metrics log."""
    return [
        [entry["step"], round(entry["eval"]["fine"], 4), round(entry["eval"]["coarse"], 4)]
        for entry in _metrics_entries(path)
        if "eval" in entry
    ]


def count_float64_steps(path: Path) -> int:
    """How many training steps of a run overflowed its dtype and were computed again in float64."""
    return sum(int(entry.get("float64_steps", 0)) for entry in _metrics_entries(path))


def source_commit() -> str:
    """The commit of the liemem this process imports, with '+dirty' if its library code has uncommitted changes."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "liemem", "groups", "manifolds"],
            cwd=root, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if changed else "")


def machine() -> str:
    """The processor a run ran on, for its record."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {platform.system()}, 1 torch thread"


def run_cell(
    cell: Cell, out: str, overrides: dict | None = None, x4_samples: int | None = None, imports: tuple = ()
) -> dict:
    """Train one cell in `out/<name>` (resuming it if it was stopped), score its best weights at 4x, and return
    its record. Returns {"busy": True} if another process is running it, {"stopped": code} if a signal stopped
    it (nothing to record: it resumes next time). `imports` are modules (or .py files) registering the user's own
    groups or tasks, imported by each child. Runs as well in a Ray task as here."""
    config = cell.config(overrides)
    directory = Path(out).resolve() / cell.name
    directory.mkdir(parents=True, exist_ok=True)
    lock = _lock(directory)
    if lock is None:
        return {"busy": True}
    with lock:
        (directory / "cell.toml").write_text(config.to_toml())
        log = directory / LOG_FILE
        python = sys.executable
        extensions = [item for name in imports for item in ("--import", str(_absolute(name)))]
        train = [python, "-m", "liemem", "train", "--config", "cell.toml", "--out", ".", "--no-progress", *extensions]
        code, _, seconds, peak = _run_child(train, directory, log, lock.fileno())
        record = {
            "task": cell.task, "model": cell.model, "regime": cell.regime, "seed": cell.seed, "preset": cell.preset,
            "settings": config.to_dict(), "exit_status": code,
        }  # fmt: skip
        if code != 0 and code not in RECORDED_FAILURES:
            return {"stopped": code}
        summary = read_record(directory / "summary.json") if code == 0 else None
        if summary is None:
            record["error"] = _last_error(log)
            record["diverged"] = code == DIVERGED
        else:
            record["best"] = summary["best"]
            record["final"] = {key: summary[key] for key in ("step", "fine", "coarse", "samples")}
            record["steps"] = summary["step"]
            seconds = summary["wall_seconds"]  # the whole run's training time, across resumptions
            low, high = four_times_lengths(config)
            samples = config.eval_samples if x4_samples is None else x4_samples
            score = [python, "-m", "liemem", "eval", ".", "--best", "--lengths", f"{low}-{high}", "-n", str(samples)]
            score += extensions
            score_code, output, score_seconds, score_peak = _run_child(score, directory, log, lock.fileno(), True)
            if score_code not in (0, *RECORDED_FAILURES):
                return {"stopped": score_code}
            seconds, peak = seconds + score_seconds, max(peak, score_peak)
            if score_code == 0:
                scores = json.loads(output.strip().splitlines()[-1])
                record["x4"] = {
                    "lengths": [low, high], "step": scores["step"], "fine": scores["fine"],
                    "coarse": scores["coarse"], "samples": scores["samples"],
                }  # fmt: skip
            else:
                record["error"] = "scoring at 4x: " + _last_error(log)
        record["evals"] = read_evaluations(directory / "metrics.jsonl")
        record["float64_steps"] = count_float64_steps(directory / "metrics.jsonl")
        record.update(wall_seconds=round(seconds, 1), peak_memory_mb=peak, commit=source_commit(), machine=machine())
        return record


def _absolute(name: str) -> str:
    """A .py file's absolute path (the children start in their run directory); a module name as it is."""
    return str(Path(name).resolve()) if name.endswith(".py") else name


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def describe(record: dict) -> str:
    """One line on how a run ended."""
    if "error" in record:
        return ("diverged: " if record.get("diverged") else "failed: ") + record["error"]
    best, x4 = record["best"], record["x4"]
    return (
        f"best {100 * best['fine']:.1f}/{100 * best['coarse']:.1f} at step {best['step']}, "
        f"4x {100 * x4['fine']:.1f}/{100 * x4['coarse']:.1f} ({_duration(record['wall_seconds'])})"
    )


class _Progress:
    """Counts of cells done, running and left, and an estimate of the time left, one line per finished cell."""

    def __init__(self, total: int, done: int, parallel: int, echo):
        self.total, self.done, self.parallel, self.echo = total, done, max(1, parallel), echo
        self.running, self.seconds, self.finished = 0, 0.0, 0
        self.lock = threading.Lock()

    def started(self) -> None:
        with self.lock:
            self.running += 1

    def ended(self, cell: Cell, outcome: dict, seconds: float, counted: bool) -> None:
        with self.lock:
            self.running -= 1
            if counted:
                self.done += 1
                self.finished += 1
                self.seconds += seconds
            left = self.total - self.done
            estimate = ""
            if self.finished and left:
                estimate = f", about {_duration(self.seconds / self.finished * left / min(self.parallel, left))} left"
            self.echo(
                f"[{self.done}/{self.total} done, {self.running} running, {left} left{estimate}] {cell.name}: "
                + (describe(outcome) if counted else outcome.get("note", ""))
            )


def _outcome(cell: Cell, outcome: dict, results: Path) -> tuple[dict, bool]:
    """Write a finished cell's record; (what to report, whether it counts as done)."""
    if outcome.get("busy"):
        return {"note": "skipped: another process is running it"}, False
    if "stopped" in outcome:
        return {"note": f"stopped (exit status {outcome['stopped']}); it resumes when the suite is run again"}, False
    write_record(record_path(results, cell), outcome)
    return outcome, True


def pending_cells(cells: list[Cell], results: Path, retry_failed: bool = False) -> list[Cell]:
    """The cells without a record (or, with `retry_failed`, whose record is a failure)."""
    pending = []
    for cell in cells:
        record = read_record(record_path(results, cell))
        if record is None or (retry_failed and "error" in record):
            pending.append(cell)
    return pending


def run_suite(
    cells: list[Cell],
    out: str | Path,
    results: str | Path,
    workers: int = 2,
    overrides: dict | None = None,
    x4_samples: int | None = None,
    ray_address: str | None = None,
    retry_failed: bool = False,
    imports: tuple = (),
    echo=print,
) -> list[Cell]:
    """Run the cells that have no record yet, `workers` at a time here or as tasks on the Ray cluster at
    `ray_address` ('local' starts one on this machine). Each finished cell's record is written to `results` as
    it lands. Returns the cells still without a record (stopped or skipped ones)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    results = Path(results)
    for cell in cells:
        cell.config(overrides)  # an invalid override is refused before anything runs
    todo = pending_cells(cells, results, retry_failed)
    echo(f"{len(cells)} cells: {len(cells) - len(todo)} done already, {len(todo)} to run")
    if todo:
        if ray_address:
            arguments = (str(out), overrides, x4_samples, tuple(imports))
            _run_on_ray(todo, len(cells), arguments, results, ray_address, workers, echo)
        else:
            _run_here(todo, len(cells), (str(out), overrides, x4_samples, tuple(imports)), results, workers, echo)
    return pending_cells(cells, results, retry_failed=False)


def _run_here(todo, total, arguments, results, workers, echo) -> None:
    progress = _Progress(total, total - len(todo), workers, echo)

    def work(cell: Cell) -> None:
        progress.started()
        started = time.time()
        outcome, counted = _outcome(cell, run_cell(cell, *arguments), results)
        progress.ended(cell, outcome, time.time() - started, counted)

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(work, cell) for cell in todo]:
            future.result()  # re-raises a runner error (a full disk, say) instead of losing it


def _run_on_ray(todo, total, arguments, results, address, workers, echo) -> None:
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'liemem[ray]'") from None
    local = address == "local"
    if local:  # a Ray instance on this machine, `workers` runs at a time
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    else:
        ray.init(address=address, log_to_driver=False)
    try:
        _submit_and_wait(ray, todo, total, arguments, results, echo)
    finally:
        if local:
            ray.shutdown()


def _submit_and_wait(ray, todo, total, arguments, results, echo) -> None:
    # A task lost with its node is retried; the retry resumes the run from its checkpoint in `out`, which must be
    # on storage every node sees.
    remote = ray.remote(num_cpus=1, max_retries=3)(run_cell)
    progress = _Progress(total, total - len(todo), int(ray.cluster_resources().get("CPU", 1)), echo)
    pending = {}
    for cell in todo:
        pending[remote.remote(cell, *arguments)] = (cell, time.time())
        progress.started()
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        cell, started = pending.pop(ready[0])
        outcome, counted = _outcome(cell, ray.get(ready[0]), results)
        progress.ended(cell, outcome, time.time() - started, counted)
