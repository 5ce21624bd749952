"""Memory a pass will take, estimated before anything is allocated, and a one-line refusal where the machine
cannot hold it.

A pass of a liemem model over a sequence of T steps keeps a few hundred numbers per step and sample (the
controller's activations, the heads' states, the logits and, for training, their gradients), one row per memory
slot, and, where the engine keeps them (`engine.plan.keeps_reads`), the per-slot state of every read. `estimate`
counts those from the model's sizes. The per-step counts are formulas fitted to measured peaks (`python
benchmarks/growth.py` prints the estimate beside the measured peak); on the paper's models they come within about
a third of the measurement, which is enough to tell a run that fits from one that asks for a terabyte.

`check` compares the estimate with what the device has free (the CPU's available memory, or the GPU's free
memory) and raises `MemoryLimitError`, a `ConfigError` the command line prints as one line, when it does not fit.
`LIEMEM_MEMORY_CHECK=off` turns the check off, for a machine whose free memory the estimate misjudges.
"""

from __future__ import annotations

import math
import os
from typing import NamedTuple

import numpy as np
import torch

from .config import ConfigError

SWITCH = "LIEMEM_MEMORY_CHECK"
# The share of the free memory a run may plan to use: the rest is headroom for the allocator and the estimate's
# error.
USABLE_SHARE = 0.9
# What a process allocates besides the pass (the optimiser's step, the batch, scratch), in bytes.
OVERHEAD_BYTES = 64 * 2**20


class MemoryLimitError(ConfigError):
    """A run that would need more memory than the device has free."""


class Sequence(NamedTuple):
    """The longest sequence a pass runs: its input steps (which write memory) and answer steps."""

    input_length: int
    answer_length: int

    @property
    def steps(self) -> int:
        return self.input_length + self.answer_length


def longest_sequence(task, sizes: tuple[int, int]) -> Sequence:
    """The input and answer steps of the longest example of `task` in the size range `sizes` (from one example of
    the largest size, as the model reads it: the input but its last token, then the answer)."""
    examples = task.generate(sizes[1], 1, np.random.default_rng(0))
    inputs, targets = task.encode(examples)
    return Sequence(inputs.shape[1] - 1, targets.shape[1])


def backend(model, training: bool) -> str:
    """The engine backend a pass of `model` takes (`autograd` for models the engine does not run, and where a
    forced plan cannot run it: the pass then fails with its own message, or, recording, takes the plain loop)."""
    from .engine import EngineError

    if not hasattr(model, "plan"):
        return "autograd"
    try:
        return model.plan(training).backend
    except EngineError:
        return "autograd"


def numbers_per_step(model, training: bool) -> float:
    """Numbers a pass of `model` keeps per step and sample."""
    from .models import EncoderDecoderLSTM, LieAccessMachine, NeuralTuringMachine, RandomAccessMachine

    vocab = getattr(model, "vocab_size", 0)
    if isinstance(model, EncoderDecoderLSTM):
        hidden, layers, embedding = model.config.hidden_size, model.config.layers, model.config.embedding_size
        if training:
            return 14 * hidden * layers + 2 * embedding + 3 * vocab
        return 2 * hidden * layers + embedding + vocab
    if isinstance(model, NeuralTuringMachine):
        c = model.config
        cells = c.memory_slots * c.memory_width
        if training:
            return 30 * c.controller_size * c.controller_layers + 4 * cells + 3 * vocab
        return 6 * c.controller_size * c.controller_layers + 2 * c.embedding_size + 2 * vocab
    if isinstance(model, LieAccessMachine | RandomAccessMachine):
        c = model.config
        hidden, width, embedding = c.controller_size, c.memory_width, c.embedding_size
        projection = model.step_projection.out_features
        if backend(model, training) == "autograd":
            return (60 * hidden + 10 * width + 3 * vocab) if training else (12 * hidden + width + vocab)
        heads = 0
        if isinstance(model, LieAccessMachine):  # each step's head states and, for training, their Jacobians
            state = model.key_space.dim + math.prod(model.group.element_shape)
            heads = 4 * state + (2 * state * (model.heads.raw_size + state) if training else 0)
        forward = 11 * hidden + width + projection + embedding + vocab + heads
        return forward + (4 * hidden + width + projection + vocab if training else 0)
    # A model of a user's: a count that grows with its size as the built-in ones' do.
    return 20 * sum(p.numel() for p in model.parameters()) ** 0.5 + 3 * vocab


def _appends_slots(model) -> bool:
    """Whether `model` has the engine's append-only memory (a slot per input step): the Lie-access machines, RAM."""
    from .models import LieAccessMachine, RandomAccessMachine

    return isinstance(model, LieAccessMachine | RandomAccessMachine)


def numbers_per_slot(model, training: bool) -> float:
    """Numbers a pass keeps per memory slot and sample: the slot, its gradient, and a read's scratch row."""
    if not _appends_slots(model):
        return 0.0
    key_dim = getattr(getattr(model, "key_space", None), "dim", None) or model.config.key_dim
    return (key_dim + model.config.memory_width + 1) * (2 if training else 1) + 4


def kept_numbers_per_read_slot(model, training: bool) -> int:
    """Numbers a training pass keeps per step, sample and slot where it keeps its reads' state: the kernels keep
    3, the tensor-operation loop a `cells.ReadSaved` (key_dim + 5) or a content read's 4; the plain autograd
    loop recomputes its reads."""
    if not training or not _appends_slots(model):
        return 0
    taken = backend(model, training)
    if taken == "kernels":
        return 3
    if taken == "loop":
        return 4 if getattr(model, "recurrence", "") == "content" else model.key_space.dim + 5
    return 0


def estimate(model, batch: int, sequence: Sequence, training: bool) -> int:
    """Bytes a pass of `model` over `batch` sequences like `sequence` needs at its peak, beyond what the process
    holds already; `training`: forward and backward passes and an optimiser step."""
    parameters = list(model.parameters())
    dtype = parameters[0].dtype if parameters else torch.get_default_dtype()
    size = torch.finfo(dtype).bits // 8 if dtype.is_floating_point else 4
    steps, slots = sequence.steps, sequence.input_length + 1
    numbers = steps * numbers_per_step(model, training) + slots * numbers_per_slot(model, training)
    kept = kept_numbers_per_read_slot(model, training)
    if kept:
        from .engine.plan import keeps_reads

        numbers += kept * steps * slots if keeps_reads(kept * steps * slots * batch * size, True) else 0
    weights = sum(p.numel() for p in parameters) * (4 if training else 1)
    return int(batch * numbers * size + weights * size + OVERHEAD_BYTES)


def available(device: torch.device) -> tuple[int, str]:
    """Bytes free on `device`, and where: the GPU's free memory, or the machine's available memory (within its
    control group's limit, where one is set)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free, f"free on {device}"
    if device.type != "cpu":
        return 2**62, str(device)
    free = _meminfo_available()
    limit = _cgroup_room()
    if limit is not None and limit < free:
        return limit, "left under this process's memory limit"
    return free, "available on this machine"


def _meminfo_available() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2**62  # unknown: no refusal


def _cgroup_room() -> int | None:
    """Bytes left under the control group's memory limit (cgroup v2), or None where none is set."""
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as limit_file:
            limit = limit_file.read().strip()
        if limit == "max":
            return None
        with open("/sys/fs/cgroup/memory.current", encoding="ascii") as current_file:
            return int(limit) - int(current_file.read().strip())
    except (OSError, ValueError):
        return None


def check(model, batch: int, sequence: Sequence, training: bool, device, what: str, advice: str) -> int:
    """Raise `MemoryLimitError` if `estimate` is more than `USABLE_SHARE` of what `device` has free: one sentence
    naming `what` runs, the estimate, the free memory and `advice`. Returns the estimate (0 with the check off)."""
    if os.environ.get(SWITCH, "on").strip().lower() in {"off", "0", "false", "no"}:
        return 0
    need = estimate(model, batch, sequence, training)
    have, where = available(device)
    if need > USABLE_SHARE * have:
        raise MemoryLimitError(
            f"{what} needs about {_bytes(need)} at its longest sequence ({sequence.steps:,} steps, batch {batch}), "
            f"and {_bytes(have)} is {where}; {advice} (or set {SWITCH}=off to try anyway)"
        )
    return need


def _bytes(count: int) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count / 1e3:.0f} kB"
