"""One example run through a trained model, kept as NumPy arrays for drawing.

`record(model, task, inputs, targets)` runs a single example and keeps what the plots need: the tokens, the
greedy answer, every step's read and write weightings (models with a memory), and, for Lie-access machines,
where both heads went and the keys and strengths they left in memory.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from ..models import LieAccessMachine, SequenceModel
from ..tasks import Task


class MemoryRecording(NamedTuple):
    """What one model did on one example. Steps are the input steps, then the answer steps (the first of which
    is fed the separator)."""

    inputs: list[str]  # input tokens, markers included
    targets: list[str]
    predicted: list[str]  # the greedy answer
    read_weights: np.ndarray | None  # [steps, read_heads, slots]; None for a model without memory
    write_weights: np.ndarray | None  # [steps, write_heads, slots]
    key_space: object | None = None  # the rest only for Lie-access machines
    read_positions: np.ndarray | None = None  # [steps, key_dim], after each step's move
    write_positions: np.ndarray | None = None  # [input_length, key_dim]
    keys: np.ndarray | None = None  # [slots, key_dim]; slot 0 is the initial slot, slot t + 1 written at step t
    strengths: np.ndarray | None = None  # [slots]

    @property
    def input_length(self) -> int:
        """The number of input steps: every input token but the last (the separator), which the answer steps
        are fed (see `SequenceModel.stream`)."""
        return len(self.inputs) - 1

    @property
    def lie_access(self) -> bool:
        """Whether head trails and keys were recorded."""
        return self.keys is not None

    def slot_labels(self) -> list[str]:
        """Per memory slot, the input token of the last step that wrote mostly to it ('' for none)."""
        if self.write_weights is None:
            return []
        labels = [""] * self.write_weights.shape[-1]
        strongest = self.write_weights[: self.input_length].max(axis=1)  # [input_length, slots] over write heads
        for step, weights in enumerate(strongest):
            for slot in np.flatnonzero(weights > 0.5):
                labels[slot] = self.inputs[step]
        return labels


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().double().numpy()  # on the host first: some devices have no float64


@torch.no_grad()
def record(model: SequenceModel, task: Task, inputs: np.ndarray, targets: np.ndarray) -> MemoryRecording:
    """Run `model` on one example (`inputs` and `targets` as token ids) and keep what it did."""
    inputs = np.asarray(inputs)
    targets = np.asarray(targets)
    if inputs.ndim != 1 or targets.ndim != 1:
        raise ValueError(f"record: one example's token ids expected, got shapes {inputs.shape} and {targets.shape}")
    device = next(model.parameters()).device
    batch = torch.as_tensor(inputs, device=device).unsqueeze(0)
    was_training = model.training
    model.eval()
    try:
        extra, access = {}, None
        if isinstance(model, LieAccessMachine):
            trace = model.trace(batch, len(targets))
            access = trace.access_trace()  # from the same pass, not a second one
            extra = {
                "key_space": model.key_space,
                "read_positions": _numpy(trace.read_positions[0]),
                "write_positions": _numpy(trace.write_positions[0]),
                "keys": _numpy(trace.keys[0]),
                "strengths": _numpy(trace.strengths[0]),
            }
        if model.has_memory:
            access = model.access_trace(batch, len(targets)) if access is None else access
            logits, reads, writes = access.logits, _numpy(access.read_weights[0]), _numpy(access.write_weights[0])
        else:
            logits, reads, writes = model(batch, len(targets)), None, None
    finally:
        model.train(was_training)
    predicted = logits[0].argmax(dim=-1).cpu().numpy()
    return MemoryRecording(task.decode(inputs), task.decode(targets), task.decode(predicted), reads, writes, **extra)
