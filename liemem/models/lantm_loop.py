"""The LANTM's time loop as one autograd function with a hand-written backward pass through time.

At the paper's sizes a time step is a few dozen tiny tensor operations, and recording each in the autograd
graph costs more than computing it. This function runs the loop without a graph and differentiates it by
hand, in reverse time, for what it knows: the LSTM cell, the step projection, the chordal read and the
writes. The part it does not know, the group's head movement, it differentiates with autograd, but not step
by step: heads move each sample independently, so after the forward pass it replays every step's movement
at once, as one batch, and takes the Jacobian of each movement from a handful of vector-Jacobian products
over that batch. The reverse loop then applies those small Jacobians, and a last product gives the gradient
of the group's own parameters. Weight gradients are summed over time in one matrix product each.

`LieAccessMachine` uses it where it applies (a one-layer LSTM controller and a chordal key space) and the
plain autograd loop otherwise; tests check that both give the same outputs and gradients.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from .. import fused
from ..heads import HeadState
from . import lantm_compiled

WRITE = 1


class LieAccessLoop(torch.autograd.Function):
    """Inputs: the model, the input length, whether a backward pass may follow, then the tensors named in
    `forward`. Outputs the answer steps' hidden states `[A, B, H]` and reads `[A, B, m]`."""

    @staticmethod
    def forward(
        ctx,
        model,
        input_length,
        differentiable,  # False under no_grad: nothing is kept for a backward pass
        projected,  # [T, B, 4H]: the input term of the LSTM gates, bias included
        recurrent_weight,  # [4H, m + H]
        step_weight,  # [P, H]
        step_bias,  # [P]
        hidden,  # [B, H]
        cell,  # [B, H]
        read,  # [B, m]
        positions,  # [B, 2, key_dim]
        key,  # [B, key_dim]: the initial slot
        value,  # [B, m]
        strength,  # [B]
        *group_parameters,
    ):
        tensors = (projected, recurrent_weight, step_weight, step_bias, hidden, cell, read, positions, key, value)
        tensors += (strength,)
        ctx.model, ctx.input_length = model, input_length
        ctx.kernels = lantm_compiled.kernels_for(model, projected)
        if ctx.kernels is not None:
            run = lantm_compiled.forward(ctx, ctx.kernels, model, input_length, differentiable, *tensors)
        else:
            run = _forward_tensor_ops(ctx, model, input_length, differentiable, *tensors)
        recurrent, outputs, states_before, answer_hidden, answer_reads = run
        if differentiable:
            # Replayed now, while the group's parameters are the ones this forward pass used (a caller such
            # as torch.func.functional_call may swap them back before the backward pass).
            # Its graph is walked once per Jacobian row, so it is kept out of any saved-tensor hooks of the
            # caller's (torch.utils.checkpoint's would recompute the whole model at every walk).
            raw_size = model.heads.raw_size
            raws = outputs[..., : 2 * raw_size].unflatten(-1, (2, raw_size))
            with torch.autograd.graph.saved_tensors_hooks(_keep, _keep):
                jacobian = model.jacobian_for(differentiable) if not group_parameters else None
                ctx.replay = _HeadsReplay(model.heads, input_length, raws, states_before, jacobian)
        ctx.save_for_backward(recurrent, outputs, recurrent_weight, step_weight, *group_parameters)
        return answer_hidden, answer_reads

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_answer_hidden, grad_answer_reads):
        saved = ctx.saved_tensors
        group_parameters = saved[4:]
        ctx.replay.prepare(track_outputs=bool(group_parameters))
        run_backward = _backward_tensor_ops if ctx.kernels is None else lantm_compiled.backward
        grads = run_backward(ctx, *saved[:4], grad_answer_hidden, grad_answer_reads)
        return (None, None, None, *grads, *ctx.replay.parameter_grads(group_parameters))


def _forward_tensor_ops(
    ctx, model, input_length, differentiable, projected, recurrent_weight, step_weight, step_bias, hidden, cell, read,
    positions, key, value, strength,
):  # fmt: skip
    """The forward loop in tensor operations; returns the `recurrent` and `outputs` buffers, each step's head
    states before it moved, and the answer steps' hidden states and reads. Keeps in `ctx` what
    `_backward_tensor_ops` needs."""
    steps, batch = projected.shape[:2]
    width = read.shape[-1]
    heads_module, sizes, softmax = model.heads, model._sizes, model.softmax
    raw_size, group = heads_module.raw_size, heads_module.group
    # Buffers for what the backward pass reads: row t of `recurrent` is [r_{t-1}; h_{t-1}], step t's
    # recurrent input; row t of `outputs` is step t's projection of h_t. Keys are stored coordinate-major
    # and strengths with a heads axis, as `fused.chordal_read_forward` takes them; the memory is written
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
    lstm_forward, read_forward, move = fused.lstm_forward, fused.chordal_read_forward, model.move_for(differentiable)
    per_step, states_before = [], []
    contents = None
    with torch.inference_mode():
        heads = HeadState.start(positions, group)
        for t in range(steps):
            writing = t < input_length
            gates = torch.addmm(projected_rows[t], recurrent_rows[t], recurrent_weight_t)
            hidden, cell, lstm_saved = lstm_forward(gates, cell, out=hidden_rows[t + 1])
            step_output = torch.addmm(step_bias, hidden, step_weight_t, out=output_rows[t])
            raw, temperature_raw, value_raw, strength_raw = step_output.split_with_sizes(sizes, 1)
            raw = raw.view(batch, 2, raw_size)
            if differentiable:
                states_before.append(heads)
            heads = move(raw if writing else raw[:, :1], heads)
            temperature = torch.nn.functional.softplus(temperature_raw).unsqueeze(1) if softmax else None
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
                per_step.append((lstm_saved, temperature_raw, read_saved, written))
    ctx.per_step, ctx.memory = per_step, (keys, values, strengths)
    answers = recurrent[input_length + 1 :]
    states_before = lantm_compiled.stacked_states(states_before, input_length) if differentiable else None
    return recurrent, outputs, states_before, answers[..., width:].clone(), answers[..., :width].clone()


def _backward_tensor_ops(ctx, recurrent, outputs, recurrent_weight, step_weight, grad_answer_hidden, grad_answer_reads):
    """The gradients `LieAccessLoop.backward` returns for its tensor inputs, up to the group's parameters."""
    model, input_length = ctx.model, ctx.input_length
    keys, values, strengths = ctx.memory
    steps, batch = outputs.shape[:2]
    width, key_dim = values.shape[-1], keys.shape[1]
    raw_size = model.heads.raw_size
    replay = ctx.replay
    grad_memory = [torch.zeros_like(x) for x in ctx.memory]
    grad_keys, grad_values, grad_strengths = grad_memory
    grad_gates = recurrent.new_empty(steps, batch, recurrent_weight.shape[0])
    grad_outputs = torch.zeros_like(outputs)
    output_rows, gate_rows = grad_outputs.unbind(0), grad_gates.unbind(0)
    raw_rows, temperature_rows, value_rows, strength_rows = (
        part.unbind(0) for part in grad_outputs.split_with_sizes(model._sizes, -1)
    )
    answer_hidden_rows, answer_read_rows = grad_answer_hidden.unbind(0), grad_answer_reads.unsqueeze(2).unbind(0)
    # Gradients for r_t and h_t from step t + 1, for c_t, and for each head's state after step t.
    grad_read = recurrent.new_zeros(batch, 1, width)
    grad_hidden = recurrent.new_zeros(batch, recurrent.shape[-1] - width)
    grad_cell = torch.zeros_like(grad_hidden)
    grad_heads = recurrent.new_zeros(batch, 1, replay.output_size)
    # The answer phase reads a memory that no longer changes: its reads' gradients for the memory are
    # summed over all answer steps at once, before the first write needs them.
    answer_reads = []
    answer_contents = values[:, : input_length + 1], strengths
    with torch.inference_mode():
        for t in reversed(range(steps)):
            lstm_saved, temperature_raw, read_saved, written = ctx.per_step[t]
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
            # The read at step t, then the write after it.
            grad_query, grad_temperature, *grad_slots = fused.chordal_read_backward(
                read_saved, slot_values, slot_strengths, grad_read, slot_grads=writing
            )
            grad_heads[:, :1, :key_dim].add_(grad_query)
            if grad_temperature is not None:
                torch.mul(grad_temperature.squeeze(1), torch.sigmoid(temperature_raw), out=temperature_rows[t])
            if writing:
                grad_keys[..., : t + 1].add_(grad_slots[0])
                grad_values[:, : t + 1].add_(grad_slots[1])
                grad_strengths[..., : t + 1].add_(grad_slots[2])
                tanh_value, sigmoid_strength = written
                grad_heads[:, WRITE, :key_dim].add_(grad_keys[..., t + 1])
                value_rows[t].copy_(fused.tanh_backward(grad_values[:, t + 1], tanh_value))
                strength_rows[t].copy_(fused.sigmoid_backward(grad_strengths[..., t + 1], sigmoid_strength))
                grad_raw, grad_heads = replay.backward_step(t, grad_heads)
                raw_rows[t].view(batch, 2, raw_size).copy_(grad_raw)
            else:
                answer_reads.append((grad_slots[0], grad_slots[1], read_saved.weights, grad_read))
                grad_raw, grad_heads = replay.backward_step(t, grad_heads)
                raw_rows[t][:, :raw_size].copy_(grad_raw.squeeze(1))
            # The step projection, then the LSTM.
            grad_hidden = torch.addmm(grad_hidden, output_rows[t], step_weight)
            grad_cell = fused.lstm_backward(lstm_saved, grad_hidden, grad_cell, out=gate_rows[t])
            grad_recurrent = torch.mm(gate_rows[t], recurrent_weight)
            grad_read, grad_hidden = grad_recurrent[:, :width].unsqueeze(1), grad_recurrent[:, width:]
    flat_gates, flat_outputs = grad_gates.flatten(0, 1), grad_outputs.flatten(0, 1)
    return (
        grad_gates,
        flat_gates.t().mm(recurrent[:-1].flatten(0, 1)),
        flat_outputs.t().mm(recurrent[1:, :, width:].flatten(0, 1)),
        flat_outputs.sum(dim=0),
        grad_hidden.clone(),
        grad_cell.clone(),
        grad_read.squeeze(1).clone(),
        grad_heads[..., :key_dim].clone(),
        grad_keys[..., 0],
        grad_values[:, 0],
        grad_strengths[:, 0, 0],
    )


def _add_answer_reads(grad_memory, answer_reads) -> None:
    """Add the memory gradients of all answer-phase reads, each given unreduced by `chordal_read_backward`."""
    parts = (torch.cat(part, dim=1) for part in zip(*answer_reads, strict=True))
    minus_diffs, grad_strengths, weights, grad_reads = parts
    grad_keys, grad_values, grad_strengths_total = grad_memory
    grad_keys.add_(minus_diffs.sum(dim=1), alpha=2.0)
    grad_values.baddbmm_(weights.transpose(1, 2), grad_reads)
    grad_strengths_total.add_(grad_strengths.sum(dim=1, keepdim=True))


def _two_heads(grad: torch.Tensor) -> torch.Tensor:
    """A gradient for both heads from the read head's: the answer phase dropped the write head."""
    both = grad.new_zeros(grad.shape[0], 2, *grad.shape[2:])
    both[:, :1] = grad
    return both


class _HeadsReplay:
    """Every step's head movement replayed as one batch, with the Jacobian of each movement.

    A movement maps (raw output, position, action) to (position, action), each head and sample on its own.
    The Jacobian rows come from vector-Jacobian products over the whole batch, one per output coordinate, run
    as one batched backward pass; the action is an output only when action interpolation makes the next
    movement depend on it.
    """

    def __init__(self, heads, input_length: int, raws, states_before: tuple[HeadState, HeadState], jacobian=None):
        steps, batch = raws.shape[:2]
        self.steps, self.input_length, self.batch = steps, input_length, batch
        encoder, answer = states_before  # [L, B, 2, ...] and [A, B, 1, ...] (see `stacked_states`)
        key_dim = encoder.position.shape[-1]
        element_shape = encoder.action.shape[3:]
        self.with_action = heads.action_interpolation
        self.output_size = key_dim + (element_shape.numel() if self.with_action else 0)

        def flat(encoder, answer):  # encoder steps' two heads, then the answer steps' read head, as one batch axis
            return torch.cat((encoder.flatten(0, 2), answer.flatten(0, 2))).unsqueeze(1)

        leaves = [
            flat(raws[:input_length], raws[input_length:, :, :1]),
            flat(encoder.position, answer.position),
            flat(encoder.action.flatten(3), answer.action.flatten(3)),
        ]
        self.input_sizes = [x.shape[-1] for x in (leaves if self.with_action else leaves[:2])]
        self.encoder = self.answer = self.output_grads = None
        if jacobian is not None:  # a function giving the Jacobians directly (see `liemem.compiling`)
            self.jacobian = lambda: jacobian(
                leaves[0][:, 0], leaves[1][:, 0], leaves[2][:, 0].unflatten(-1, element_shape)
            )
            return
        self.jacobian = self._jacobian_by_autograd
        leaves = [x.requires_grad_() for x in leaves]
        with torch.enable_grad():
            state = HeadState(leaves[1], leaves[2].unflatten(-1, element_shape))
            moved = heads.move(leaves[0], state)
            outputs = [moved.position.flatten(2)] + ([moved.action.flatten(2)] if self.with_action else [])
            self.outputs = torch.cat(outputs, dim=-1)
        self.leaves = leaves if self.with_action else leaves[:2]

    def prepare(self, track_outputs: bool) -> None:
        """Take the Jacobians (once), and start collecting output gradients if `track_outputs`."""
        if self.encoder is None:
            jacobian = self.jacobian()  # [N, outputs, inputs]
            encoder_rows = self.input_length * self.batch * 2
            self.encoder = jacobian[:encoder_rows].unflatten(0, (self.input_length, self.batch, 2))
            self.answer = jacobian[encoder_rows:].unflatten(0, (self.steps - self.input_length, self.batch, 1))
        # Each step's output gradients, kept only when the group has parameters to differentiate.
        self.output_grads = torch.zeros_like(self.outputs.detach()) if track_outputs else None

    def _jacobian_by_autograd(self) -> torch.Tensor:
        # One backward pass, batched over the output coordinates (vmapped), gives every Jacobian row.
        size, outputs = self.output_size, self.outputs
        one_hots = torch.eye(size, dtype=outputs.dtype, device=outputs.device).view(size, 1, 1, size)
        grads = torch.autograd.grad(
            outputs,
            self.leaves,
            one_hots.expand(size, *outputs.shape),
            retain_graph=True,
            allow_unused=True,
            is_grads_batched=True,
        )
        rows = [_or_zeros(g, x.expand(size, *x.shape)) for g, x in zip(grads, self.leaves, strict=True)]
        return torch.cat(rows, dim=-1).squeeze(2).transpose(0, 1).contiguous()

    def backward_step(self, t: int, grad_outputs: torch.Tensor):
        """Gradients for step t's raw outputs `[B, heads, raw]` and the state before it `[B, heads, outputs]`."""
        writing = t < self.input_length
        jacobian = self.encoder[t] if writing else self.answer[t - self.input_length]
        heads = grad_outputs.shape[1]
        grad_inputs = torch.bmm(grad_outputs.reshape(-1, 1, self.output_size), jacobian.flatten(0, 1))
        grad_inputs = grad_inputs.view(self.batch, heads, -1)
        if self.output_grads is not None:
            self._rows(t).copy_(grad_outputs.flatten(0, 1))
        grad_raw, *grad_state = grad_inputs.split_with_sizes(self.input_sizes, dim=-1)
        grad_previous = torch.cat(grad_state, dim=-1) if self.with_action else grad_state[0]
        return grad_raw, grad_previous

    def parameter_grads(self, parameters) -> list[torch.Tensor]:
        """Gradients of the group's parameters, from every step's output gradients at once."""
        if not parameters:
            return []
        grads = torch.autograd.grad(self.outputs, parameters, self.output_grads, retain_graph=True, allow_unused=True)
        return [_or_zeros(g, p) for g, p in zip(grads, parameters, strict=True)]

    def _rows(self, t: int) -> torch.Tensor:
        if t < self.input_length:
            start = t * self.batch * 2
            return self.output_grads[start : start + self.batch * 2, 0]
        start = self.input_length * self.batch * 2 + (t - self.input_length) * self.batch
        return self.output_grads[start : start + self.batch, 0]


def _keep(tensor: torch.Tensor) -> torch.Tensor:
    # Detached: a node that saves its own output would otherwise hold that output's grad_fn, i.e. itself, a
    # reference cycle through C++ that Python's collector cannot see, leaking every step's replay graph.
    return tensor.detach()


def _or_zeros(grad: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(like) if grad is None else grad
