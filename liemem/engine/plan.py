"""The one place that decides how a Lie-access recurrence runs: `plan_for`.

A plan names three things:

- the backend: `autograd` (the model's own step-by-step loop, recorded by autograd: the reference every other
  backend is tested against), `loop` (the whole sequence as one autograd node, in tensor operations, with a
  hand-written backward pass; any device), or `kernels` (the same algorithm on compiled C++ kernels; CPU,
  float32 and float64);
- the heads' move: the group's `python` as written, that Python `compiled` by `torch.compile` (training
  passes, after `compile_steps`), or `built-in`: a kernel that mirrors the group's move, for the groups that
  declare one (`LieGroup.kernel_move`);
- the heads' Jacobians for the backward pass: by `autograd` over a replay of the moves, or `compiled`.

By default the fastest plan that applies is taken, and the plan says why a faster one did not. The switch
`LIEMEM_ENGINE` (also `liemem train --engine`) forces one:

    auto                  the default
    no-compile            the default, but nothing compiled: no kernels, no torch.compile
    autograd | loop | kernels              that backend, with the best move it can run
    loop:python | kernels:python | kernels:built-in | loop:compiled | kernels:compiled   also the move

RAM and RAM/tape (`recurrence = "content"`) take the same backends with no heads to move (`engine.content`).

One more choice is made per sequence, by `keeps_reads`: whether a training pass keeps each read's per-slot state
for the backward pass (faster), or the backward pass recomputes it from the read's query and the memory (memory
linear in the sequence's length, where keeping it grows with the square).
A forced plan that cannot run this model raises `EngineError` saying why. `LIEMEM_COMPILE=0`, the switch of
earlier versions, still means `no-compile`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import NamedTuple

import torch

from manifolds import KeySpace

from ..heads import LieHeads
from . import cells, compiling, kernels, native, replay, tensor_ops

SWITCH = "LIEMEM_ENGINE"
LEGACY_SWITCH = "LIEMEM_COMPILE"
BACKENDS = ("autograd", "loop", "kernels")
MOVES = ("python", "compiled", "built-in")
# The weightings each backend declares it has formulas for; `autograd` runs any registered one.
BACKEND_WEIGHTINGS = {"loop": tensor_ops.WEIGHTINGS, "kernels": kernels.WEIGHTINGS}


# The most memory the per-slot state of one sequence's reads may take before the backward pass recomputes it
# instead. At the paper's lengths it is a few megabytes, kept; at copy length 2,048 and batch 32 it would be 3 GB.
# `LIEMEM_KEPT_READS_MB` overrides it.
KEPT_READS_BUDGET = 64 * 2**20
KEPT_READS_SWITCH = "LIEMEM_KEPT_READS_MB"


def keeps_reads(kept_bytes: int, differentiable: bool) -> bool:
    """Whether a forward pass keeps its reads' per-slot state for the backward pass, given what keeping it takes
    (`kept_bytes`, which grows with steps x batch x slots): only a pass that may be differentiated, and only
    within the budget (`KEPT_READS_BUDGET`, or `LIEMEM_KEPT_READS_MB` megabytes). Otherwise the backward pass
    recomputes each read, one step at a time, from its query and the memory: a few percent slower at short
    lengths, faster at long ones, and the pass's memory grows linearly with its length."""
    return differentiable and kept_bytes <= kept_reads_budget()


def kept_reads_budget() -> int:
    """The budget in bytes: `LIEMEM_KEPT_READS_MB` megabytes where set, else `KEPT_READS_BUDGET`."""
    text = os.environ.get(KEPT_READS_SWITCH, "").strip()
    if not text:
        return KEPT_READS_BUDGET
    try:
        megabytes = float(text)
    except ValueError:
        raise EngineError(f"{KEPT_READS_SWITCH}={text!r} is not a number of megabytes") from None
    if not megabytes >= 0:
        raise EngineError(f"{KEPT_READS_SWITCH}={text!r}: the budget cannot be negative")
    return int(megabytes * 2**20)


class EngineError(ValueError):
    """A forced plan that cannot run, or an unreadable switch."""


class Plan(NamedTuple):
    """How one forward pass runs (see the module's docstring); `note` says why no faster plan was taken."""

    backend: str
    move: str  # "none" for a content read, which moves no heads
    jacobian: str
    note: str = ""

    def __str__(self) -> str:
        text = self.backend
        if self.backend != "autograd" and self.move != "none":
            text += f", {self.move} move" + (", compiled Jacobians" if self.jacobian == "compiled" else "")
        return f"{text} ({self.note})" if self.note else text


class Request(NamedTuple):
    """What the switch asks for: a backend and a move (None: the best), and whether anything may be compiled."""

    backend: str | None
    move: str | None
    compiling: bool
    text: str


def requested() -> Request:
    """The switch's current value, read."""
    text = os.environ.get(SWITCH, "").strip().lower()
    legacy_off = os.environ.get(LEGACY_SWITCH, "1").strip().lower() in {"0", "false", "no", "off"}
    if text in ("", "auto"):
        return Request(None, None, not legacy_off, text or "auto")
    if text == "no-compile":
        return Request(None, None, False, text)
    backend, colon, move = text.partition(":")
    if backend not in BACKENDS or (colon and (move not in MOVES or backend == "autograd")):
        forms = "auto, no-compile, " + ", ".join(BACKENDS) + ", or loop:MOVE or kernels:MOVE with MOVE one of "
        raise EngineError(f"{SWITCH}={text!r} is not a plan; use {forms}{', '.join(MOVES)}")
    compiling = backend == "kernels" or move == "compiled" or not legacy_off
    return Request(backend, move or None, compiling, text)


def compiling_enabled() -> bool:
    """Whether anything may be compiled in this process: kernels built, functions given to torch.compile."""
    return requested().compiling


@contextlib.contextmanager
def forced(value: str):
    """Set the switch to `value` inside the block (all models, this process and its children), then restore it."""
    before = os.environ.get(SWITCH)
    os.environ[SWITCH] = value
    try:
        requested()  # an unreadable value fails here, not at the first forward pass
        yield
    finally:
        if before is None:
            del os.environ[SWITCH]
        else:
            os.environ[SWITCH] = before


def plan_for(model, device: torch.device, dtype: torch.dtype, training: bool) -> Plan:
    """The plan a forward pass of `model` takes on `device` in `dtype`; `training`: a pass that may be
    differentiated. `model` is a `LieAccessMachine`, or a model with `recurrence = "content"` (RAM, RAM/tape),
    whose plan names no move. Raises `EngineError` if the switch forces a plan that cannot run."""
    request = requested()
    device = torch.device(device)
    if getattr(model, "recurrence", "lie-access") == "content":
        return _content_plan(model, device, dtype, request)
    why_not = {"autograd": "", "loop": _why_not_loop(model)}
    why_not["kernels"] = why_not["loop"] or _why_not_kernels(model, device, dtype, request)
    if request.backend is None:
        backend = next(name for name in ("kernels", "loop", "autograd") if not why_not[name])
        note = why_not["kernels"] if backend != "kernels" else ""
    else:
        backend, note = request.backend, ""
        if why_not[backend]:
            raise EngineError(
                f"{SWITCH}={request.text}: the {backend} backend cannot run this model: {why_not[backend]}"
            )
    if backend == "autograd":
        return Plan(backend, "python", "autograd", note)
    compiled = getattr(model, "_compiled_steps", None)
    why_not_move = {
        "python": "",
        "compiled": _why_not_compiled(compiled, training, request),
        "built-in": "the loop backend has no built-in moves" if backend == "loop" else _why_not_built_in(model),
    }
    if request.move is None:
        move = next(name for name in ("built-in", "compiled", "python") if not why_not_move[name])
    else:
        move = request.move
        if why_not_move[move]:
            raise EngineError(f"{SWITCH}={request.text}: no {move} move for this model: {why_not_move[move]}")
    parameters = any(p.requires_grad for p in model.group.parameters())
    jacobian = "compiled" if training and compiled and compiled.jacobian is not None and not parameters else "autograd"
    return Plan(backend, move, jacobian, note)


def _content_plan(model, device: torch.device, dtype: torch.dtype, request: Request) -> Plan:
    """The plan of a content-read model (RAM, RAM/tape): `engine.content` on the kernels or in tensor operations,
    or the model's own autograd loop. There are no heads to move."""
    controller = model.controller
    why_not = {"autograd": "", "loop": ""}
    if controller.kind != "lstm" or controller.layers != 1:
        why_not["loop"] = (
            f"its controller is a {controller.layers}-layer {controller.kind}; the fast backends know a 1-layer LSTM"
        )
    why_not["kernels"] = why_not["loop"] or _why_not_kernel_build(device, dtype, request)
    if request.backend is None:
        backend = next(name for name in ("kernels", "loop", "autograd") if not why_not[name])
        return Plan(backend, "none", "none", why_not["kernels"] if backend != "kernels" else "")
    why = why_not[request.backend]
    if not why and request.move is not None:
        why = "a content read has no heads to move"
    if why:
        raise EngineError(f"{SWITCH}={request.text}: the {request.backend} backend cannot run this model: {why}")
    return Plan(request.backend, "none", "none")


def plan_of(model, training: bool = True) -> Plan:
    """`plan_for` at the device and dtype of the model's parameters."""
    parameter = next(model.parameters())
    return plan_for(model, parameter.device, parameter.dtype, training)


class PlannedModel:
    """A model whose sequences the engine runs: its `plan`, and the plan in its `repr`."""

    def plan(self, training: bool = True) -> Plan:
        """How a forward pass runs at the parameters' device and dtype (`plan_for`)."""
        return plan_of(self, training)

    def plan_description(self) -> str:
        """The plan as text, or why a forced plan cannot run: for `repr`, which must not raise."""
        try:
            return str(self.plan())
        except EngineError as error:
            return f"none ({error})"


def _why_not_loop(model) -> str:
    controller = model.controller
    if controller.kind != "lstm" or controller.layers != 1:
        return f"its controller is a {controller.layers}-layer {controller.kind}; the fast backends know a 1-layer LSTM"
    if model.key_space.kernel_distance() not in cells.DISTANCES:
        known = " or ".join(cells.DISTANCES)
        return f"the distance of its key space ({type(model.key_space).__name__}) is not one they know ({known})"
    name = model.weighting.name
    if name not in BACKEND_WEIGHTINGS["loop"]:
        known = ", ".join(BACKEND_WEIGHTINGS["loop"])
        return f"the fast backends have no gradient for weighting {name!r} (they have {known})"
    return ""


def _why_not_kernels(model, device: torch.device, dtype: torch.dtype, request: Request) -> str:
    name = model.weighting.name
    if name not in BACKEND_WEIGHTINGS["kernels"]:
        return f"the kernels have no formulas for weighting {name!r}"
    return _why_not_kernel_build(device, dtype, request)


def _why_not_kernel_build(device: torch.device, dtype: torch.dtype, request: Request) -> str:
    if device.type != "cpu":
        return f"the kernels run on the CPU, and the model is on {device.type}"
    if dtype not in kernels.DTYPES:
        return f"the kernels run in float32 or float64, and the model is in {str(dtype).removeprefix('torch.')}"
    if not request.compiling:
        setting = f"{SWITCH}={request.text}" if request.text != "auto" else f"{LEGACY_SWITCH}=0"
        return f"compiling is off ({setting})"
    if native.lantm_loop() is None:
        return "the kernels did not build on this machine"
    return ""


def _why_not_built_in(model) -> str:
    heads = model.heads
    if heads.action_interpolation:
        return "action interpolation is on"
    if type(heads).move is not LieHeads.move or "move" in vars(heads):
        return "the heads' move is replaced"
    space = type(model.key_space)
    if space.random_access_key is not KeySpace.random_access_key:
        return f"its key space ({space.__name__}) names random-access keys its own way"
    declared = model.group.kernel_move()
    if declared not in kernels.MOVES:
        return f"group {type(model.group).__name__} declares no move the kernels have"
    return ""


def _why_not_compiled(compiled, training: bool, request: Request) -> str:
    if not request.compiling:
        return "compiling is off"
    if compiled is None or compiled.move is None:
        return "nothing was compiled (see `compile_steps`)"
    if not training:
        return "compiled moves serve training passes only"
    return ""


class CompiledSteps(NamedTuple):
    """What `compile_steps` compiled: the heads' move, and the function giving many moves' Jacobians at once."""

    move: Callable | None
    jacobian: Callable | None


def compile_steps(model) -> bool:
    """Compile, with `torch.compile`, what the training passes of `model`'s plan call: the heads' per-step `move`
    (unless the kernels have it built in) and the Jacobians of a sequence's moves (one call per training step;
    not for groups with trainable parameters, whose gradients come from an autograd replay of the moves). Only
    where the move makes enough tensor calls for compiling to pay back its seconds (`compiling.worth_compiling`).
    Kept on the model as `_compiled_steps`; return whether anything was compiled. A function that fails to
    compile runs eagerly, with one warning."""
    model._compiled_steps = None
    request = requested()
    if not request.compiling or request.backend == "autograd" or _why_not_loop(model):
        return False
    parameter = next(model.parameters())
    kernels = request.backend != "loop" and not _why_not_kernels(model, parameter.device, parameter.dtype, request)
    built_in = kernels and request.move in (None, "built-in") and not _why_not_built_in(model)
    heads = model.heads
    positions = model.initial_positions.detach()
    sample = (positions.new_zeros(2, 2, heads.raw_size), heads.initial_state(positions, 2))
    if not compiling.worth_compiling(heads.move, *sample):
        return False
    what = f"the {model.config.group} heads' move"
    move = None
    if not built_in and request.move in (None, "compiled"):
        move = compiling.CompiledOrEager(heads.move, what)
    jacobian = None
    if not any(p.requires_grad for p in model.group.parameters()):
        jacobian = compiling.CompiledOrEager(replay.move_jacobian(heads), f"the Jacobian of {what}", pad_rows=True)
    if move is None and jacobian is None:
        return False
    model._compiled_steps = CompiledSteps(move, jacobian)
    return True
