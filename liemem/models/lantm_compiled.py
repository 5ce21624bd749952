"""The LANTM's time loop on compiled CPU kernels: `lantm_loop`'s algorithm with each step's work in two calls.

`LieAccessLoop` runs this when `compiled_loop` is on, the tensors are float32 or float64 on the CPU and the
kernels of `liemem.native` are built. A forward step is a call for the controller, the group's `move` (in
Python, as a user wrote it), and a call for the read and the write; the whole backward pass is one call, given
the heads' Jacobians from `_HeadsReplay`. Tests check that it agrees with the tensor-operation loop and with
the plain autograd one.
"""

from __future__ import annotations

import torch

from .. import native, weighting
from ..heads import HeadState

COMPILED_DTYPES = (torch.float32, torch.float64)


def kernels_for(model, projected: torch.Tensor):
    """The compiled kernels, if they apply to this model and these tensors; else None."""
    if not model.compiled_loop or projected.device.type != "cpu" or projected.dtype not in COMPILED_DTYPES:
        return None
    return native.lantm_loop()


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
    keys, values, strengths = new(batch, key_dim, slots), new(batch, slots, width), new(batch, 1, slots)
    keys[..., 0], values[:, 0], strengths[..., 0] = key, value, strength.unsqueeze(-1)
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
    temperature, value_column, strength_column = columns
    # Per-step views, made once: indexing inside the loop costs more than the work it indexes.
    recurrent_rows, projected_rows, output_rows = recurrent.unbind(0), projected.unbind(0), outputs.unbind(0)
    hidden_rows, read_rows = recurrent[..., width:].unbind(0), recurrent[..., :width].unbind(0)
    cell_rows = cells.unbind(0)
    sigmoid_rows, candidate_rows, squashed_rows = (x.unbind(0) for x in lstm_saved)
    read_rows_saved = [x.unbind(0) for x in read_saved]
    both_raws = outputs[..., : 2 * raw_size].unflatten(-1, (2, raw_size)).unbind(0)
    read_raws = outputs[..., :raw_size].unsqueeze(2).unbind(0)
    no_temperature = new(0)
    temperature_rows = outputs[..., temperature : temperature + 1].unbind(0) if temperature >= 0 else None
    value_rows = outputs[..., value_column : value_column + width].unbind(0)
    strength_rows = outputs[..., strength_column : strength_column + 1].unbind(0)
    gates = new(batch, 4 * size)
    recurrent_weight_t, step_weight_t = recurrent_weight.t(), step_weight.t()
    eps = weighting.inverse_square_eps(projected.dtype)
    controller_step, read_write_step = kernels.controller_step, kernels.read_write_step
    move = model.move_for(differentiable)
    heads = HeadState(positions, group.identity(batch, 2, dtype=positions.dtype, device=positions.device))
    states_before = []
    with torch.inference_mode():
        for t in range(steps):
            writing = t < input_length
            controller_step(
                projected_rows[t], recurrent_rows[t], recurrent_weight_t, cell_rows[t], gates, sigmoid_rows[t],
                candidate_rows[t], cell_rows[t + 1], squashed_rows[t], hidden_rows[t + 1], step_bias, step_weight_t,
                output_rows[t],
            )  # fmt: skip
            if differentiable:
                states_before.append(heads)
            heads = move(both_raws[t] if writing else read_raws[t], heads)
            read_write_step(
                keys, values, strengths, t + 1 if writing else slots, heads.position,
                no_temperature if temperature_rows is None else temperature_rows[t], read_rows[t + 1],
                *(rows[t] for rows in read_rows_saved), t + 1 if writing else -1, value_rows[t], strength_rows[t],
                eps, weighting.WEIGHT_FLOOR, weighting.TEMPERATURE_FLOOR,
            )  # fmt: skip
            if t + 1 == input_length:  # the answer phase moves the read head only
                heads = HeadState(heads.position[:, :1], heads.action[:, :1])
    ctx.kernels, ctx.columns = kernels, columns
    ctx.compiled_saved = (cells, *lstm_saved, keys, values, strengths, *read_saved)
    answers = recurrent[input_length + 1 :]
    return recurrent, outputs, states_before, answers[..., width:].clone(), answers[..., :width].clone()


def backward(ctx, recurrent, outputs, recurrent_weight, step_weight, grad_answer_hidden, grad_answer_reads):
    """The gradients `LieAccessLoop.backward` returns for the tensors it was given, up to the group's."""
    cells, sigmoids, candidates, squashed, keys, values, strengths, *read_saved = ctx.compiled_saved
    replay = ctx.replay
    input_length, model = ctx.input_length, ctx.model
    width, key_dim = values.shape[-1], keys.shape[1]
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
        grad_values[:, 0],
        grad_strengths[:, 0, 0],
    )


def _columns(model) -> tuple[int, int, int]:
    """Where the step projection's temperature (-1: none), write value and write strength start."""
    raw_columns, temperature_columns, width, _ = model._sizes
    temperature = raw_columns if temperature_columns else -1
    value = raw_columns + temperature_columns
    return temperature, value, value + width
