"""The tensor-operation backend of a recurrence: each step a few dozen tensor operations, on any device.

The forward pass runs in inference mode, writing into preallocated buffers; the backward pass runs the same
steps in reverse with the hand-written gradients of `cells`, and the heads' Jacobians of `replay.HeadsReplay`.
Each read's per-slot state is kept for the backward pass, or, for long sequences, recomputed there from the
read's query (`plan.keeps_reads`). This is the backend CUDA takes, and the one the kernels fall back to where they
cannot build.
"""

from __future__ import annotations

import functools

import torch

from ..heads import HeadState
from . import cells, replay
from .buffers import ForwardRun, LoopGrads, LoopInputs

WRITE = 1
# The read weightings this backend has hand-written gradients for.
WEIGHTINGS = cells.CHORDAL_READ_WEIGHTINGS
# The answer phase's reads send their gradients to the memory in batches of at most about this many bytes.
ANSWER_BATCH_BYTES = 16 * 2**20


def keeps_reads(steps: int, batch: int, slots: int, key_dim: int, dtype: torch.dtype, differentiable: bool) -> bool:
    """Whether the forward pass keeps each read's `cells.ReadSaved`, about key_dim + 5 numbers per step, sample
    and slot, or the backward pass recomputes it (`plan.keeps_reads`)."""
    from .plan import keeps_reads as decide

    return decide(steps * batch * slots * (key_dim + 5) * torch.finfo(dtype).bits // 8, differentiable)


def move_function(model, plan):
    """The heads' move the plan names: the group's Python, or that Python compiled (`plan.compile_steps`)."""
    return model._compiled_steps.move if plan.move == "compiled" else model.heads.move


def forward(ctx, model, plan, input_length: int, differentiable: bool, inputs: LoopInputs):
    """The forward loop in tensor operations. Keeps in `ctx` what `backward` needs."""
    projected, recurrent_weight, step_weight, step_bias, hidden, cell, read, positions, key, value, strength = inputs
    steps, batch = projected.shape[:2]
    width = read.shape[-1]
    heads_module, sizes, weigh = model.heads, model._sizes, model.weighting
    raw_size, group = heads_module.raw_size, heads_module.group
    # Buffers for what the backward pass reads: row t of `recurrent` is [r_{t-1}; h_{t-1}], step t's
    # recurrent input; row t of `outputs` is step t's projection of h_t. Keys are stored coordinate-major
    # and strengths with a heads axis, as `cells.distance_read_forward` takes them; the memory is written
    # in place.
    recurrent = projected.new_empty(steps + 1, batch, width + hidden.shape[-1])
    recurrent[0, :, :width], recurrent[0, :, width:] = read, hidden
    outputs = projected.new_empty(steps, batch, step_weight.shape[0])
    keys = projected.new_empty(batch, key.shape[-1], input_length + 1)
    values = projected.new_empty(batch, input_length + 1, width)
    strengths = projected.new_empty(batch, 1, input_length + 1)
    keys[..., 0], values[:, 0], strengths[..., 0] = key, value, strength.unsqueeze(-1)
    # Per-step views, made once: indexing inside the loop costs a tensor operation each time.
    recurrent_rows, output_rows, projected_rows = recurrent.unbind(0), outputs.unbind(0), projected.unbind(0)
    read_rows, hidden_rows = recurrent[..., :width].unbind(0), recurrent[..., width:].unbind(0)
    key_slots, value_slots, strength_slots = keys.unbind(-1), values.unbind(1), strengths.unbind(-1)
    recurrent_weight_t, step_weight_t = recurrent_weight.t(), step_weight.t()
    distance = model.key_space.kernel_distance()
    lstm_forward, move = cells.lstm_forward, move_function(model, plan)
    read_forward = functools.partial(cells.distance_read_forward, distance=distance)
    per_step, states_before = [], []
    contents = None
    keep = keeps_reads(steps, batch, input_length + 1, key.shape[-1], projected.dtype, differentiable)
    with torch.inference_mode():
        heads = HeadState.start(positions, group)
        for t in range(steps):
            writing = t < input_length
            gates = torch.addmm(projected_rows[t], recurrent_rows[t], recurrent_weight_t)
            hidden, cell, lstm_saved = lstm_forward(gates, cell, out=hidden_rows[t + 1])
            step_output = torch.addmm(step_bias, hidden, step_weight_t, out=output_rows[t])
            raw, weighting_raw, value_raw, strength_raw = step_output.split_with_sizes(sizes, 1)
            raw = raw.view(batch, 2, raw_size)
            if differentiable:
                states_before.append(heads)
            heads = move(raw if writing else raw[:, :1], heads)
            temperature = weigh.parameters(weighting_raw)  # softmax's; None for the inverse square
            if writing or contents is None:
                slots = t + 1 if writing else input_length + 1
                contents = keys[..., :slots], values[:, :slots], strengths[..., :slots]
            value_read, read_saved = read_forward(*contents, heads.position[:, :1], temperature)
            read_rows[t + 1].copy_(value_read.squeeze(1))
            written = None
            if writing:
                key_slots[t + 1].copy_(heads.position[:, WRITE])
                written = (
                    torch.tanh(value_raw, out=value_slots[t + 1]),
                    torch.sigmoid(strength_raw, out=strength_slots[t + 1]),
                )
                if t + 1 == input_length:  # the answer phase moves the read head only
                    heads = heads.read_head()
                    contents = None
            if differentiable:
                read_state = read_saved if keep else (heads.position[:, :1], temperature)
                per_step.append((lstm_saved, weighting_raw, read_state, written))
    ctx.per_step, ctx.memory = per_step, (keys, values, strengths)
    answers = recurrent[input_length + 1 :]
    states_before = replay.stacked_states(states_before, input_length) if differentiable else None
    return ForwardRun(recurrent, outputs, states_before, answers[..., width:].clone(), answers[..., :width].clone())


def backward(ctx, saved, grad_answer_hidden, grad_answer_reads) -> LoopGrads:
    """The reverse loop in tensor operations."""
    recurrent, outputs, recurrent_weight, step_weight = saved
    model, input_length = ctx.model, ctx.input_length
    keys, values, strengths = ctx.memory
    steps, batch = outputs.shape[:2]
    width, key_dim = values.shape[-1], keys.shape[1]
    raw_size = model.heads.raw_size
    heads_replay = ctx.replay
    grad_memory = [torch.zeros_like(x) for x in ctx.memory]
    grad_keys, grad_values, grad_strengths = grad_memory
    grad_gates = recurrent.new_empty(steps, batch, recurrent_weight.shape[0])
    grad_outputs = torch.zeros_like(outputs)
    output_rows, gate_rows = grad_outputs.unbind(0), grad_gates.unbind(0)
    raw_rows, weighting_rows, value_rows, strength_rows = (
        part.unbind(0) for part in grad_outputs.split_with_sizes(model._sizes, -1)
    )
    answer_hidden_rows, answer_read_rows = grad_answer_hidden.unbind(0), grad_answer_reads.unsqueeze(2).unbind(0)
    # Gradients for r_t and h_t from step t + 1, for c_t, and for each head's state after step t.
    grad_read = recurrent.new_zeros(batch, 1, width)
    grad_hidden = recurrent.new_zeros(batch, recurrent.shape[-1] - width)
    grad_cell = torch.zeros_like(grad_hidden)
    grad_heads = recurrent.new_zeros(batch, 1, heads_replay.output_size)
    # The answer phase reads a memory that no longer changes: its reads' gradients for the memory are summed
    # over many answer steps at once, in batches of at most ANSWER_BATCH_BYTES of per-slot terms.
    answer_reads = []
    answer_contents = values[:, : input_length + 1], strengths
    distance = model.key_space.kernel_distance()
    answer_batch = max(1, ANSWER_BATCH_BYTES // (batch * (input_length + 1) * (key_dim + 2) * values.element_size()))
    with torch.inference_mode():
        for t in reversed(range(steps)):
            lstm_saved, weighting_raw, read_saved, written = ctx.per_step[t]
            writing = t < input_length
            if writing:
                if t == input_length - 1:
                    _add_answer_reads(grad_memory, answer_reads)
                    grad_heads = _two_heads(grad_heads)
                slot_values, slot_strengths = values[:, : t + 1], strengths[..., : t + 1]
            else:
                grad_hidden = grad_hidden + answer_hidden_rows[t - input_length]
                grad_read = grad_read + answer_read_rows[t - input_length]
                slot_values, slot_strengths = answer_contents
                if len(answer_reads) == answer_batch:
                    _add_answer_reads(grad_memory, answer_reads)
            if not isinstance(read_saved, cells.ReadSaved):  # recomputed, as the forward pass computed it
                query, temperature = read_saved
                slot_keys = keys[..., : slot_values.shape[1]]
                read_saved = cells.distance_read_forward(
                    slot_keys, slot_values, slot_strengths, query, temperature, distance=distance
                )[1]
            # The read at step t, then the write after it.
            grad_query, grad_temperature, *grad_slots = cells.distance_read_backward(
                read_saved, slot_values, slot_strengths, grad_read, slot_grads=writing
            )
            grad_heads[:, :1, :key_dim].add_(grad_query)
            if grad_temperature is not None:
                torch.mul(grad_temperature.squeeze(1), torch.sigmoid(weighting_raw), out=weighting_rows[t])
            if writing:
                grad_keys[..., : t + 1].add_(grad_slots[0])
                grad_values[:, : t + 1].add_(grad_slots[1])
                grad_strengths[..., : t + 1].add_(grad_slots[2])
                tanh_value, sigmoid_strength = written
                grad_heads[:, WRITE, :key_dim].add_(grad_keys[..., t + 1])
                value_rows[t].copy_(cells.tanh_backward(grad_values[:, t + 1], tanh_value))
                strength_rows[t].copy_(cells.sigmoid_backward(grad_strengths[..., t + 1], sigmoid_strength))
                grad_raw, grad_heads = heads_replay.backward_step(t, grad_heads)
                raw_rows[t].view(batch, 2, raw_size).copy_(grad_raw)
            else:
                answer_reads.append((grad_slots[0], grad_slots[1], read_saved.weights, grad_read))
                grad_raw, grad_heads = heads_replay.backward_step(t, grad_heads)
                raw_rows[t][:, :raw_size].copy_(grad_raw.squeeze(1))
            # The step projection, then the LSTM.
            grad_hidden = torch.addmm(grad_hidden, output_rows[t], step_weight)
            grad_cell = cells.lstm_backward(lstm_saved, grad_hidden, grad_cell, out=gate_rows[t])
            grad_recurrent = torch.mm(gate_rows[t], recurrent_weight)
            grad_read, grad_hidden = grad_recurrent[:, :width].unsqueeze(1), grad_recurrent[:, width:]
    return LoopGrads(
        gates=grad_gates,
        outputs=grad_outputs,
        hidden=grad_hidden.clone(),
        cell=grad_cell.clone(),
        read=grad_read.squeeze(1).clone(),
        positions=grad_heads[..., :key_dim].clone(),
        key=grad_keys[..., 0],
        value=grad_values[:, 0],
        strength=grad_strengths[:, 0, 0],
    )


def _add_answer_reads(grad_memory, answer_reads: list) -> None:
    """Add the memory gradients of a batch of answer-phase reads, each given unreduced by
    `distance_read_backward`, and empty the list."""
    parts = (torch.cat(part, dim=1) for part in zip(*answer_reads, strict=True))
    minus_diffs, grad_strengths, weights, grad_reads = parts
    grad_keys, grad_values, grad_strengths_total = grad_memory
    grad_keys.add_(minus_diffs.sum(dim=1), alpha=2.0)
    grad_values.baddbmm_(weights.transpose(1, 2), grad_reads)
    grad_strengths_total.add_(grad_strengths.sum(dim=1, keepdim=True))
    answer_reads.clear()


def _two_heads(grad: torch.Tensor) -> torch.Tensor:
    """A gradient for both heads from the read head's: the answer phase dropped the write head."""
    both = grad.new_zeros(grad.shape[0], 2, *grad.shape[2:])
    both[:, :1] = grad
    return both
