"""The LANTM's time loop on compiled CPU kernels: `lantm_loop`'s algorithm with each step's work in two calls.

`LieAccessLoop` runs this when `compiled_loop` is on, the tensors are float32 or float64 on the CPU and the
kernels of `liemem.native` are built. A forward step is a call for the controller, the group's `move` (in
Python, as a user wrote it), and a call for the read and the write, on a `ForwardLoop` that holds the
sequence's buffers; for the built-in groups whose moves the kernels mirror (`native_move`), the whole forward pass
is one call. The whole backward pass is one call, given the heads' Jacobians from `_HeadsReplay`.
Tests check that it agrees with the tensor-operation loop and with the plain autograd one.
"""

from __future__ import annotations

import math

import torch

import groups
from groups._numerics import AXIS_SOFTENING, SMALL_ANGLE_SQ
from manifolds.sphere import KEY_SOFTENING

from .. import native, weighting
from ..heads import HeadState, LieHeads

COMPILED_DTYPES = (torch.float32, torch.float64)


def kernels_for(model, projected: torch.Tensor):
    """The compiled kernels, if they apply to this model and these tensors; else None."""
    if not model.compiled_loop or projected.device.type != "cpu" or projected.dtype not in COMPILED_DTYPES:
        return None
    return native.lantm_loop()


# The moves the kernels have built in, for the groups whose Python they mirror: all of a sequence's steps then run in
# one call, with no Python per step.
TRANSLATION, ROTATION = 0, 1


def native_move(model) -> int | None:
    """The built-in move of the kernels that computes `model.heads.move` (TRANSLATION or ROTATION), or None where
    the group's own Python must run: another group (a subclass included), a learnable angle bound, action
    interpolation, a replaced `move`, or `model.native_moves` off."""
    heads = model.heads
    if not model.native_moves or heads.action_interpolation or type(heads).move is not LieHeads.move:
        return None
    if "move" in vars(heads):  # replaced on the instance
        return None
    group = heads.group
    if type(group) is groups.Translation:
        return TRANSLATION
    if type(group) is groups.SO3 and not group.angle.learnable:
        return ROTATION
    return None


def move_constants(dtype: torch.dtype) -> tuple[float, float, float]:
    """The groups' numerical constants for `dtype`, as the kernels' built-in moves take them: the squared angle
    below which SO(3)'s exponential uses its series, the rotation axis's softening, and that of the sphere's
    `soft_project`."""
    return SMALL_ANGLE_SQ.get(dtype, 1e-3), AXIS_SOFTENING, KEY_SOFTENING


def forward(
    ctx,
    kernels,
    model,
    input_length,
    differentiable,
    projected,
    recurrent_weight,
    step_weight,
    step_bias,
    hidden,
    cell,
    read,
    positions,
    key,
    value,
    strength,
):
    """`LieAccessLoop.forward` on the kernels: returns the answer steps' hidden states and reads, and keeps in
    `ctx` what `backward` needs."""
    steps, batch = projected.shape[:2]
    width, size, key_dim = read.shape[-1], hidden.shape[-1], key.shape[-1]
    heads_module = model.heads
    raw_size, group = heads_module.raw_size, heads_module.group
    slots = input_length + 1
    new = projected.new_empty
    recurrent = new(steps + 1, batch, width + size)
    recurrent[0, :, :width], recurrent[0, :, width:] = read, hidden
    outputs = new(steps, batch, step_weight.shape[0])
    cells = new(steps + 1, batch, size)
    cells[0] = cell
    lstm_saved = new(steps, batch, 3 * size), new(steps, batch, size), new(steps, batch, size)
    # Slots along the last axis, so that the kernels' loops over slots run over contiguous memory.
    keys, values, strengths = new(batch, key_dim, slots), new(batch, width, slots), new(batch, 1, slots)
    keys[..., 0], values[..., 0], strengths[..., 0] = key, value, strength.unsqueeze(-1)
    read_saved = (
        new(steps, batch, key_dim),  # queries
        new(steps, batch, slots),  # squared distances
        new(steps, batch, slots),  # kernel factors
        new(steps, batch, slots),  # weights
        new(steps, batch),  # normalisers
        torch.empty(steps, batch, dtype=torch.long, device=projected.device),  # nearest slots
        new(steps, batch),  # 1 / temperature (softmax)
    )
    columns = _columns(model)
    loop = kernels.ForwardLoop(
        input_length, projected.contiguous(), recurrent, recurrent_weight.contiguous(), step_weight.contiguous(),
        step_bias.contiguous(), outputs,
        cells, *lstm_saved, keys, values, strengths, *read_saved, raw_size, *columns,
        weighting.inverse_square_eps(projected.dtype), weighting.WEIGHT_FLOOR, weighting.TEMPERATURE_FLOOR,
    )  # fmt: skip
    kind = native_move(model)
    if kind is not None:
        position_log = new(steps, batch, 2, key_dim)
        action_log = new(steps, batch, 2, math.prod(group.element_shape))
        loop.run(kind, positions, position_log, action_log, *move_constants(projected.dtype))
        encoder = HeadState(position_log[:input_length], action_log[:input_length])
        answer = HeadState(position_log[input_length:, :, :1], action_log[input_length:, :, :1])
        states_before = encoder, answer
    else:
        steps_before = _forward_steps(loop, model.move_for(differentiable), positions, group, input_length, steps)
        states_before = stacked_states(steps_before, input_length) if differentiable else None
    ctx.kernels, ctx.columns = kernels, columns
    ctx.compiled_saved = (cells, *lstm_saved, keys, values, strengths, *read_saved)
    answers = recurrent[input_length + 1 :]
    return recurrent, outputs, states_before, answers[..., width:].clone(), answers[..., :width].clone()


def stacked_states(states: list[HeadState], input_length: int) -> tuple[HeadState, HeadState]:
    """Each step's head states before it moved, stacked over time: the input steps' `[L, B, 2, ...]` and the
    answer steps' `[A, B, 1, ...]`, as `lantm_loop._HeadsReplay` takes them."""

    def stack(part):
        return HeadState(torch.stack([s.position for s in part]), torch.stack([s.action for s in part]))

    return stack(states[:input_length]), stack(states[input_length:])


def _forward_steps(loop, move, positions, group, input_length: int, steps: int) -> list[HeadState]:
    """The forward loop with the group's Python `move` between the kernels' calls; returns each step's head states
    before it moved."""
    control, read_write = loop.control, loop.read_write
    states_before = []
    with torch.inference_mode():
        heads = HeadState.start(positions, group)
        for t in range(steps):
            raw = control(t)
            states_before.append(heads)
            heads = move(raw, heads)
            read_write(t, heads.position)
            if t + 1 == input_length:  # the answer phase moves the read head only
                heads = heads.read_head()
    return states_before


def backward(ctx, recurrent, outputs, recurrent_weight, step_weight, grad_answer_hidden, grad_answer_reads):
    """The gradients `LieAccessLoop.backward` returns for the tensors it was given, up to the group's."""
    cells, sigmoids, candidates, squashed, keys, values, strengths, *read_saved = ctx.compiled_saved
    replay = ctx.replay
    input_length, model = ctx.input_length, ctx.model
    width, key_dim = values.shape[1], keys.shape[1]
    grad_memory = [torch.zeros_like(x) for x in (keys, values, strengths)]
    grad_gates = recurrent.new_empty(*outputs.shape[:2], recurrent_weight.shape[0])
    grad_outputs = torch.zeros_like(outputs)
    output_grads = replay.output_grads
    temperature, value_column, strength_column = ctx.columns
    with torch.inference_mode():
        grad_hidden, grad_cell, grad_read, grad_heads = ctx.kernels.backward_loop(
            input_length, recurrent_weight, step_weight, outputs, sigmoids, candidates, cells, squashed,
            keys, values, strengths, *read_saved, grad_answer_hidden, grad_answer_reads,
            replay.encoder, replay.answer,
            outputs.new_empty(0) if output_grads is None else output_grads.view(output_grads.shape[0], -1),
            grad_gates, grad_outputs, *grad_memory, model.heads.raw_size, temperature, value_column,
            strength_column, weighting.inverse_square_eps(outputs.dtype), weighting.TEMPERATURE_FLOOR,
        )  # fmt: skip
    grad_keys, grad_values, grad_strengths = grad_memory
    flat_gates, flat_outputs = grad_gates.flatten(0, 1), grad_outputs.flatten(0, 1)
    return (
        grad_gates,
        flat_gates.t().mm(recurrent[:-1].flatten(0, 1)),
        flat_outputs.t().mm(recurrent[1:, :, width:].flatten(0, 1)),
        flat_outputs.sum(dim=0),
        grad_hidden,
        grad_cell,
        grad_read,
        grad_heads[..., :key_dim].clone(),
        grad_keys[..., 0],
        grad_values[..., 0],
        grad_strengths[:, 0, 0],
    )


def _columns(model) -> tuple[int, int, int]:
    """Where the step projection's temperature (-1: none), write value and write strength start."""
    raw_columns, temperature_columns, width, _ = model._sizes
    temperature = raw_columns if temperature_columns else -1
    value = raw_columns + temperature_columns
    return temperature, value, value + width
