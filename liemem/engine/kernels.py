"""The kernels backend of a recurrence: `tensor_ops`' algorithm on compiled CPU kernels (`native`).

A forward step is a call for the controller, the group's `move` (in Python, as a user wrote it, or compiled),
and a call for the read and the write, on a `ForwardLoop` that holds the sequence's buffers; with a built-in move
(a group that declares one, `LieGroup.kernel_move`) the whole forward pass is one call. The whole backward pass
is one call, given the heads' Jacobians from `replay.HeadsReplay`. The kernels take their buffers and settings
as named structs (`LoopBuffers`, `LoopLayout`, `BackwardBuffers`, `MoveConstants`), filled in here by name.
"""

from __future__ import annotations

import math

import torch

from groups import numerics
from manifolds import poincare
from manifolds.sphere import KEY_SOFTENING

from .. import weighting
from ..heads import HeadState
from . import cells, native, replay
from .buffers import ForwardRun, LoopGrads, LoopInputs
from .tensor_ops import move_function

# What the kernels run: the read weightings they have formulas for (their codes are the positions here), the
# dtypes, and the moves they have built in, by the name a group declares in `LieGroup.KERNEL_MOVE`, with their codes.
WEIGHTINGS = ("inverse_square", "softmax")
DTYPES = (torch.float32, torch.float64)
MOVES = {"translation": 0, "rotation": 1}


def move_constants(kernels, dtype: torch.dtype):
    """The groups' numerical constants for `dtype`, as the kernels' built-in moves take them."""
    constants = kernels.MoveConstants()
    constants.small_angle_sq = numerics.SMALL_ANGLE_SQ.get(dtype, 1e-3)
    constants.axis_softening = numerics.AXIS_SOFTENING
    constants.key_softening = KEY_SOFTENING
    constants.half_angle_cos = list(numerics.HALF_ANGLE_COS)
    constants.half_angle_sinc = list(numerics.HALF_ANGLE_SINC)
    return constants


def layout(kernels, model, input_length: int, dtype: torch.dtype):
    """Where the step projection's parts start, and the read's weighting and constants."""
    raw_columns, weighting_columns, width, _ = model._sizes
    result = kernels.LoopLayout()
    result.input_length, result.raw_size = input_length, model.heads.raw_size
    result.weighting = WEIGHTINGS.index(model.weighting.name)
    result.weighting_column = raw_columns if weighting_columns else -1
    result.value_column = raw_columns + weighting_columns
    result.strength_column = result.value_column + width
    result.eps = weighting.inverse_square_eps(dtype)
    result.weight_floor, result.temperature_floor = weighting.WEIGHT_FLOOR, weighting.TEMPERATURE_FLOOR
    result.distance = cells.DISTANCES.index(model.key_space.kernel_distance())
    result.small_s, result.gap_floor = poincare.SMALL_S.get(dtype, 1e-3), torch.finfo(dtype).eps
    result.asinh_sq_series = list(poincare.ASINH_SQ_SERIES)
    result.asinh_sq_slope_series = list(poincare.ASINH_SQ_SLOPE_SERIES)
    return result


def kept_rows(steps: int, batch: int, slots: int, dtype: torch.dtype, differentiable: bool) -> int:
    """How many steps' per-slot read state the kernels keep: all (`steps`), or one step's (1), recomputed by the
    backward pass (`plan.keeps_reads`). They keep three numbers per step, sample and slot."""
    from .plan import keeps_reads

    kept_bytes = 3 * steps * batch * slots * torch.finfo(dtype).bits // 8
    return steps if keeps_reads(kept_bytes, differentiable) else 1


def loop_buffers(kernels, inputs, first_slots, input_length: int, differentiable: bool):
    """A `LoopBuffers` for one sequence: the controller's inputs (the first seven fields of `LoopInputs` or
    `content.ContentInputs`), the memory's first slots `(keys [B, S0, d], values [B, S0, m], strengths [B, S0])`,
    and empty buffers for what the loop computes and keeps (`kept_rows`)."""
    projected, recurrent_weight, step_weight, step_bias, hidden, cell, read = inputs[:7]
    first_keys, first_values, first_strengths = first_slots
    steps, batch = projected.shape[:2]
    first = first_keys.shape[1]
    width, size, key_dim, slots = read.shape[-1], hidden.shape[-1], first_keys.shape[-1], input_length + first
    new = projected.new_empty
    b = kernels.LoopBuffers()
    b.projected, b.recurrent_weight = projected.contiguous(), recurrent_weight.contiguous()
    b.step_weight, b.step_bias = step_weight.contiguous(), step_bias.contiguous()
    b.recurrent = new(steps + 1, batch, width + size)
    b.recurrent[0, :, :width], b.recurrent[0, :, width:] = read, hidden
    b.outputs = new(steps, batch, step_weight.shape[0])
    b.cells = new(steps + 1, batch, size)
    b.cells[0] = cell
    b.sigmoids, b.candidates, b.squashed = new(steps, batch, 3 * size), new(steps, batch, size), new(steps, batch, size)
    # Slots along the last axis, so that the kernels' loops over slots run over contiguous memory.
    b.keys, b.values, b.strengths = new(batch, key_dim, slots), new(batch, width, slots), new(batch, 1, slots)
    b.keys[..., :first] = first_keys.transpose(1, 2)
    b.values[..., :first] = first_values.transpose(1, 2)
    b.strengths[:, 0, :first] = first_strengths
    b.queries = new(steps, batch, key_dim)
    rows = kept_rows(steps, batch, slots, projected.dtype, differentiable)
    b.dist2, b.factors, b.weights = new(rows, batch, slots), new(rows, batch, slots), new(rows, batch, slots)
    b.totals, b.scales = new(steps, batch), new(steps, batch)
    b.nearest = torch.empty(steps, batch, dtype=torch.long, device=projected.device)
    return b


def forward(ctx, model, plan, input_length: int, differentiable: bool, inputs: LoopInputs) -> ForwardRun:
    """The forward loop on the kernels. Keeps in `ctx` what `backward` needs."""
    kernels = native.lantm_loop()
    steps, batch = inputs.projected.shape[:2]
    width, key_dim = inputs.read.shape[-1], inputs.key.shape[-1]
    group = model.heads.group
    first_slots = inputs.key.unsqueeze(1), inputs.value.unsqueeze(1), inputs.strength.unsqueeze(1)
    buffers = loop_buffers(kernels, inputs, first_slots, input_length, differentiable)
    ctx.kernels, ctx.buffers = kernels, buffers
    ctx.layout = layout(kernels, model, input_length, inputs.projected.dtype)
    loop = kernels.ForwardLoop(buffers, ctx.layout)
    if plan.move == "built-in":
        new = inputs.projected.new_empty
        position_log = new(steps, batch, 2, key_dim)
        action_log = new(steps, batch, 2, math.prod(group.element_shape))
        constants = move_constants(kernels, inputs.projected.dtype)
        loop.run(MOVES[model.group.kernel_move()], inputs.positions, position_log, action_log, constants)
        encoder = HeadState(position_log[:input_length], action_log[:input_length])
        answer = HeadState(position_log[input_length:, :, :1], action_log[input_length:, :, :1])
        states_before = encoder, answer
    else:
        move = move_function(model, plan)
        steps_before = _forward_steps(loop, move, inputs.positions, group, input_length, steps)
        states_before = replay.stacked_states(steps_before, input_length) if differentiable else None
    recurrent = buffers.recurrent
    answers = recurrent[input_length + 1 :]
    return ForwardRun(
        recurrent, buffers.outputs, states_before, answers[..., width:].clone(), answers[..., :width].clone()
    )


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


def backward_buffers(kernels, buffers, recurrent_weight, grad_answer_hidden, grad_answer_reads):
    """A `BackwardBuffers` with the answer steps' incoming gradients, zeroed gradients of the memory and the
    projection's outputs, and no heads' Jacobians (a caller with heads sets them)."""
    g = kernels.BackwardBuffers()
    outputs = buffers.outputs
    g.grad_answer_hidden, g.grad_answer_reads = grad_answer_hidden, grad_answer_reads
    g.encoder_jacobians = g.answer_jacobians = g.head_output_grads = outputs.new_empty(0)
    g.grad_gates = outputs.new_empty(*outputs.shape[:2], recurrent_weight.shape[0])
    g.grad_outputs = torch.zeros_like(outputs)
    g.grad_keys, g.grad_values = torch.zeros_like(buffers.keys), torch.zeros_like(buffers.values)
    g.grad_strengths = torch.zeros_like(buffers.strengths)
    return g


def backward(ctx, saved, grad_answer_hidden, grad_answer_reads) -> LoopGrads:
    """The reverse loop on the kernels, in one call."""
    _, _, recurrent_weight, _ = saved
    buffers, heads_replay = ctx.buffers, ctx.replay
    g = backward_buffers(ctx.kernels, buffers, recurrent_weight, grad_answer_hidden, grad_answer_reads)
    g.encoder_jacobians, g.answer_jacobians = heads_replay.encoder, heads_replay.answer
    output_grads = heads_replay.output_grads
    if output_grads is not None:
        g.head_output_grads = output_grads.view(len(output_grads), -1)
    with torch.inference_mode():
        grad_hidden, grad_cell, grad_read, grad_heads = ctx.kernels.backward(buffers, ctx.layout, g)
    return LoopGrads(
        gates=g.grad_gates,
        outputs=g.grad_outputs,
        hidden=grad_hidden,
        cell=grad_cell,
        read=grad_read,
        positions=grad_heads[..., : buffers.keys.shape[1]].clone(),
        key=g.grad_keys[..., 0],
        value=g.grad_values[..., 0],
        strength=g.grad_strengths[:, 0, 0],
    )


# --- the content read of RAM and RAM/tape ------------------------------------------------------------------------


def content_forward(ctx, layout, input_length: int, differentiable: bool, inputs):
    """`engine.content`'s forward loop on the kernels, in one call; returns the `recurrent` and `outputs` buffers and
    the answer steps' hidden states and reads. Keeps in `ctx` what `content_backward` needs."""
    kernels = native.lantm_loop()
    projected, read = inputs.projected, inputs.read
    first, dtype = inputs.keys.shape[1], projected.dtype
    first_slots = inputs.keys, inputs.values, inputs.strengths
    buffers = loop_buffers(kernels, inputs, first_slots, input_length, differentiable)
    steps, batch = projected.shape[:2]
    tape = layout.choice >= 0
    if tape:
        buffers.choices = projected.new_empty(steps, batch, 3)
        buffers.neighbours = projected.new_empty(steps + 1, batch, 2, layout.key_dim)
        buffers.neighbours[0] = inputs.neighbours
    settings = kernels.LoopLayout()
    settings.input_length, settings.raw_size, settings.initial_slots = input_length, layout.key_dim, first
    settings.content, settings.choice_column, settings.gamma_column = True, layout.choice, layout.gamma
    settings.value_column, settings.strength_column = layout.value, layout.strength
    settings.eps = weighting.inverse_square_eps(dtype)
    settings.weight_floor, settings.temperature_floor = weighting.WEIGHT_FLOOR, weighting.TEMPERATURE_FLOOR
    loop = kernels.ForwardLoop(buffers, settings)
    empty = projected.new_empty(0)
    loop.run_content(buffers.choices if tape else empty, buffers.neighbours if tape else empty)
    ctx.kernels, ctx.buffers, ctx.layout_settings, ctx.first = kernels, buffers, settings, first
    width, recurrent = read.shape[-1], buffers.recurrent
    answers = recurrent[input_length + 1 :]
    return recurrent, buffers.outputs, answers[..., width:].clone(), answers[..., :width].clone()


def content_backward(ctx, recurrent_weight, grad_answer_hidden, grad_answer_reads):
    """The reverse loop of `content_forward`, in one call: the per-step gradients of the gates and the projection's
    outputs, then those of the initial state, slots and neighbours."""
    buffers, first = ctx.buffers, ctx.first
    g = backward_buffers(ctx.kernels, buffers, recurrent_weight, grad_answer_hidden, grad_answer_reads)
    with torch.inference_mode():
        grad_hidden, grad_cell, grad_read, grad_neighbours = ctx.kernels.backward(buffers, ctx.layout_settings, g)
    return (
        g.grad_gates,
        g.grad_outputs,
        grad_hidden,
        grad_cell,
        grad_read,
        g.grad_keys[..., :first].transpose(1, 2).clone(),
        g.grad_values[..., :first].transpose(1, 2).clone(),
        g.grad_strengths[:, 0, :first].clone(),
        grad_neighbours,
    )
