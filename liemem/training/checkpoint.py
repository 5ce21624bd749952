"""Checkpoints: everything a run needs to go on exactly where it stopped, written atomically.

A checkpoint holds the model and optimizer states, the random-number generator states, the step, the
resolved training configuration and the evaluation history. It is written to a temporary file and renamed,
so a run killed mid-write leaves the previous checkpoint whole.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

CHECKPOINT_FILE = "checkpoint.pt"
BEST_FILE = "best.pt"
FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, or does not belong to the configuration at hand."""


def save(path: Path, state: dict) -> None:
    """Write `state` to `path` atomically."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    torch.save({"format": FORMAT, **state}, partial)
    os.replace(partial, path)


def load(path: Path) -> dict:
    """The state saved at `path`, on the CPU; `CheckpointError` if it is missing or not a liemem checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {str(path)!r}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or foreign files
        raise CheckpointError(f"{str(path)!r} is not a readable checkpoint: {error}".splitlines()[0]) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a liemem checkpoint (format {FORMAT})")
    return state


def rng_state() -> dict:
    """The CPU and CUDA generator states."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, cuda: bool) -> None:
    """Restore the generators; the CUDA ones only when `cuda` (a run resumed on the CPU leaves CUDA alone), and
    only for the devices this machine has."""
    torch.set_rng_state(state["cpu"])
    if cuda and "cuda" in state and torch.cuda.is_available():
        for index, device_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(device_state, index)


def load_model_state(model: torch.nn.Module, state: dict, source: str) -> None:
    """Load `state` into `model`, or `CheckpointError` naming the first parameter that does not fit."""
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        detail = str(error).splitlines()
        reason = next((line.strip() for line in detail[1:] if line.strip()), detail[0])
        raise CheckpointError(f"{source} does not fit its model: {reason}") from None
