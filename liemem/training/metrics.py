"""Where training reports to: a JSON-lines file always, TensorBoard when it is installed."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """Appends one JSON object per record to `out/metrics.jsonl`, and mirrors numbers to TensorBoard if present.

    Opening a log for a resumed run drops the records after the step it resumes from, so the file reads as if
    the run had never stopped.
    """

    def __init__(self, out: Path, resume_step: int = 0, tensorboard: bool = True):
        self.path = Path(out) / METRICS_FILE
        kept = []
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    break  # a line cut short by a kill: it and what follows are from after the checkpoint
                if record.get("step", 0) > resume_step:
                    break
                kept.append(line)
        self.path.write_text("".join(line + "\n" for line in kept))
        self.file = self.path.open("a")
        self.board = _tensorboard(out, resume_step) if tensorboard else None

    def write(self, record: dict) -> None:
        """Append one record; it must have a "step"."""
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.board is not None:
            step = record["step"]
            for key, value in _numbers(record):
                self.board.add_scalar(key, value, step)

    def flush(self) -> None:
        """Make everything written so far durable (called before each checkpoint, which it must not lag)."""
        self.file.flush()
        os.fsync(self.file.fileno())
        if self.board is not None:
            self.board.flush()

    def close(self) -> None:
        """Close the file and the TensorBoard writer."""
        self.file.close()
        if self.board is not None:
            self.board.close()


def read_metrics(out: Path) -> list[dict]:
    """The records of a run's metrics file; lines that are not a JSON record with a step (one cut short by a
    kill, say) are skipped."""
    path = Path(out) / METRICS_FILE
    records = []
    for line in path.read_text(errors="replace").splitlines() if path.exists() else ():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
    return records


def _numbers(record: dict, prefix: str = ""):
    for key, value in record.items():
        if key == "step":
            continue
        if isinstance(value, dict):
            yield from _numbers(value, f"{prefix}{key}/")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            yield prefix + key, value


def _tensorboard(out: Path, resume_step: int):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    except Exception as error:  # an installed but broken tensorboard must not stop training
        warnings.warn(
            f"tensorboard is installed but cannot be imported ({error}); logging to JSON lines only", stacklevel=3
        )
        return None
    # Events after the step resumed from (or all of them, for a fresh run) are dropped, as in metrics.jsonl.
    return SummaryWriter(log_dir=str(Path(out) / "tensorboard"), purge_step=resume_step + 1)
