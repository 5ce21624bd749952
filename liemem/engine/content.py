"""The recurrence of the random-access baselines (RAM and RAM/tape) as one autograd node, in tensor operations.

The same append-only memory as the Lie-access machines, read by content: w_i proportional to s_i exp(gamma <q, k_i>)
(`weighting.exp_dot`; gamma = 1 + softplus of a column with sharpening, else 1). The query is the step
projection's read key, or with the tape a softmax-weighted mix of it and the keys one slot left and right of the
last read, k_L = sum_i w_{i+1} k_i and k_R = sum_i w_{i-1} k_i. The forward pass runs without a graph, writing into
preallocated buffers; the backward pass runs the steps in reverse with hand-written gradients, the LSTM cell's
from `cells`, and the weights' summed over time in one product each (`buffers.weight_gradients`), as the
Lie-access backends do. `RandomAccessMachine._run` is the reference it is tested against.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch.autograd.function import once_differentiable

from .. import weighting
from . import cells, kernels, plan
from .buffers import weight_gradients


class ContentInputs(NamedTuple):
    """The differentiable inputs of a content-read recurrence, batch-expanded."""

    projected: torch.Tensor  # [T, B, 4H]: the input term of the LSTM gates, bias included
    recurrent_weight: torch.Tensor  # [4H, m + H]
    step_weight: torch.Tensor  # [P, H]: read key | write key | [3 tape choices] | [gamma] | value | strength
    step_bias: torch.Tensor  # [P]
    hidden: torch.Tensor  # [B, H]
    cell: torch.Tensor  # [B, H]
    read: torch.Tensor  # [B, m]
    keys: torch.Tensor  # [B, S0, d]: the initial slots
    values: torch.Tensor  # [B, S0, m]
    strengths: torch.Tensor  # [B, S0]
    neighbours: torch.Tensor  # [B, 2, d]: the tape's first left and right keys (zeros without the tape)


class Layout(NamedTuple):
    """Where the step projection's parts start; -1 for a part the model does not have."""

    key_dim: int
    choice: int  # the tape's three choices
    gamma: int  # the sharpening's column
    value: int
    strength: int


def run(plan, inputs: ContentInputs, layout: Layout, input_length: int):
    """The answer steps' hidden states `[A, B, H]` and reads `[A, B, m]`, on the backend `plan` names (`loop`:
    tensor operations, here; `kernels`: `engine.kernels`, the same algorithm in C++)."""
    return ContentLoop.apply(plan.backend, layout, input_length, torch.is_grad_enabled(), *inputs)


class ContentLoop(torch.autograd.Function):
    """Inputs: the backend, the layout, the input length, whether a backward pass may follow, then the
    `ContentInputs`."""

    @staticmethod
    def forward(ctx, backend, layout, input_length, differentiable, *tensors):
        inputs = ContentInputs(*tensors)
        ctx.backend, ctx.layout, ctx.input_length = backend, layout, input_length
        run_forward = kernels.content_forward if backend == "kernels" else _forward
        recurrent, outputs, answer_hidden, answer_reads = run_forward(ctx, layout, input_length, differentiable, inputs)
        ctx.save_for_backward(recurrent, outputs, inputs.recurrent_weight, inputs.step_weight)
        return answer_hidden, answer_reads

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_answer_hidden, grad_answer_reads):
        recurrent, outputs, recurrent_weight, step_weight = ctx.saved_tensors
        if ctx.backend == "kernels":
            grads = kernels.content_backward(ctx, recurrent_weight, grad_answer_hidden, grad_answer_reads)
        else:
            grads = _backward(
                ctx, recurrent, outputs, recurrent_weight, step_weight, grad_answer_hidden, grad_answer_reads
            )
        grad_gates, grad_outputs, *initial = grads
        width = recurrent.shape[-1] - initial[0].shape[-1]
        weights = weight_gradients(recurrent, width, grad_gates, grad_outputs)
        return (None, None, None, None, grad_gates, *weights, *initial)


class ReadWeights(NamedTuple):
    """One step's content read over its n slots."""

    scores: torch.Tensor  # [B, n]: <q, k_i>
    largest: torch.Tensor  # [B, 1]: the slot whose scaled score is largest
    factor: torch.Tensor  # [B, n]: exp(gamma scores - max)
    weights: torch.Tensor  # [B, n]
    total: torch.Tensor  # [B, 1]


def read_weights(slot_keys, slot_strengths, query, gamma) -> ReadWeights:
    """The content read's weights for queries `[B, d]` over keys `[B, n, d]` and strengths `[B, n]`, sharpened by
    `gamma` `[B, 1]` (or None): the forward pass's, and the backward pass's where it recomputes them."""
    scores = torch.bmm(slot_keys, query.unsqueeze(-1)).squeeze(-1)
    scaled = scores * gamma if gamma is not None else scores
    top, largest = scaled.max(dim=-1, keepdim=True)
    factor = torch.exp(scaled - top)
    unnormalised = torch.addcmul(torch.full_like(factor, weighting.WEIGHT_FLOOR), factor, slot_strengths)
    total = unnormalised.sum(dim=-1, keepdim=True)
    return ReadWeights(scores, largest, factor, unnormalised / total, total)


class StepSaved(NamedTuple):
    """What the backward pass needs of one step's read, besides the memory."""

    lstm: cells.LSTMSaved
    query: torch.Tensor  # [B, d]
    gamma: torch.Tensor | None  # [B, 1]
    read: ReadWeights | None  # None where the backward pass recomputes it (`plan.keeps_reads`)
    choice: torch.Tensor | None  # [B, 3]: the tape's mix
    candidates: torch.Tensor | None  # [B, 3, d]: the read key and the neighbours it was mixed with


def _forward(ctx, layout: Layout, input_length: int, differentiable: bool, inputs: ContentInputs):
    projected, recurrent_weight, step_weight, step_bias, hidden, cell, read, keys0, values0, strengths0, neighbours = (
        inputs
    )
    steps, batch = projected.shape[:2]
    width, size, key_dim, first = read.shape[-1], hidden.shape[-1], layout.key_dim, keys0.shape[1]
    tape, sharpening = layout.choice >= 0, layout.gamma >= 0
    new = projected.new_empty
    recurrent = new(steps + 1, batch, width + size)
    recurrent[0, :, :width], recurrent[0, :, width:] = read, hidden
    outputs = new(steps, batch, step_weight.shape[0])
    keys, values = new(batch, first + input_length, key_dim), new(batch, first + input_length, width)
    strengths = new(batch, first + input_length)
    keys[:, :first], values[:, :first], strengths[:, :first] = keys0, values0, strengths0
    recurrent_weight_t, step_weight_t = recurrent_weight.t(), step_weight.t()
    read_rows, hidden_rows = recurrent[..., :width].unbind(0), recurrent[..., width:].unbind(0)
    per_step = []
    kept_bytes = steps * batch * (first + input_length) * 4 * projected.element_size()
    keep = plan.keeps_reads(kept_bytes, differentiable)
    with torch.inference_mode():
        for t in range(steps):
            gates = torch.addmm(projected[t], recurrent[t], recurrent_weight_t)
            hidden, cell, lstm_saved = cells.lstm_forward(gates, cell, out=hidden_rows[t + 1])
            output = torch.addmm(step_bias, hidden, step_weight_t, out=outputs[t])
            query, choice, candidates = output[:, :key_dim], None, None
            if tape:
                candidates = torch.cat((query.unsqueeze(1), neighbours), dim=1)
                choice = torch.softmax(output[:, layout.choice : layout.choice + 3], dim=-1)
                query = torch.bmm(choice.unsqueeze(1), candidates).squeeze(1)
            n = first + min(t, input_length)
            slot_keys, slot_values, slot_strengths = keys[:, :n], values[:, :n], strengths[:, :n]
            gamma = 1 + torch.nn.functional.softplus(output[:, layout.gamma : layout.gamma + 1]) if sharpening else None
            read = read_weights(slot_keys, slot_strengths, query, gamma)
            weights = read.weights
            read_rows[t + 1].copy_(torch.bmm(weights.unsqueeze(1), slot_values).squeeze(1))
            if tape:
                left = torch.bmm(weights[:, 1:].unsqueeze(1), slot_keys[:, :-1])
                right = torch.bmm(weights[:, :-1].unsqueeze(1), slot_keys[:, 1:])
                neighbours = torch.cat((left, right), dim=1)
            if t < input_length:  # the write after the read
                slot = first + t
                keys[:, slot] = output[:, key_dim : 2 * key_dim]
                torch.tanh(output[:, layout.value : layout.value + width], out=values[:, slot])
                torch.sigmoid(output[:, layout.strength], out=strengths[:, slot])
            if differentiable:
                per_step.append(StepSaved(lstm_saved, query, gamma, read if keep else None, choice, candidates))
    ctx.per_step, ctx.memory, ctx.first = per_step, (keys, values, strengths), first
    answers = recurrent[input_length + 1 :]
    return recurrent, outputs, answers[..., width:].clone(), answers[..., :width].clone()


def _backward(ctx, recurrent, outputs, recurrent_weight, step_weight, grad_answer_hidden, grad_answer_reads):
    layout, input_length, first = ctx.layout, ctx.input_length, ctx.first
    keys, values, strengths = ctx.memory
    steps, batch = outputs.shape[:2]
    width, key_dim = values.shape[-1], layout.key_dim
    grad_keys, grad_values, grad_strengths = (torch.zeros_like(x) for x in ctx.memory)
    grad_gates = recurrent.new_empty(steps, batch, recurrent_weight.shape[0])
    grad_outputs = torch.zeros_like(outputs)
    grad_read = recurrent.new_zeros(batch, width)
    grad_hidden = recurrent.new_zeros(batch, recurrent.shape[-1] - width)
    grad_cell = torch.zeros_like(grad_hidden)
    grad_neighbours = recurrent.new_zeros(batch, 2, key_dim)  # of the keys the next step's query mixed in
    with torch.inference_mode():
        for t in reversed(range(steps)):
            saved = ctx.per_step[t]
            grad_output = grad_outputs[t]
            if t >= input_length:
                grad_hidden = grad_hidden + grad_answer_hidden[t - input_length]
                grad_read = grad_read + grad_answer_reads[t - input_length]
            else:  # the write after the read: every later read has added to its slot's gradients
                slot = first + t
                grad_output[:, key_dim : 2 * key_dim] = grad_keys[:, slot]
                grad_output[:, layout.value : layout.value + width] = cells.tanh_backward(
                    grad_values[:, slot], values[:, slot]
                )
                grad_output[:, layout.strength] = cells.sigmoid_backward(grad_strengths[:, slot], strengths[:, slot])
            n = first + min(t, input_length)
            slot_keys, slot_values, slot_strengths = keys[:, :n], values[:, :n], strengths[:, :n]
            read = saved.read or read_weights(slot_keys, slot_strengths, saved.query, saved.gamma)
            # The read value and, with the tape, the neighbours it offers the next step.
            grad_weights = torch.bmm(slot_values, grad_read.unsqueeze(-1)).squeeze(-1)
            grad_values[:, :n].baddbmm_(read.weights.unsqueeze(-1), grad_read.unsqueeze(1))
            if saved.choice is not None:
                grad_left, grad_right = grad_neighbours[:, :1], grad_neighbours[:, 1:]
                grad_weights[:, 1:] += torch.bmm(slot_keys[:, :-1], grad_left.transpose(1, 2)).squeeze(-1)
                grad_weights[:, :-1] += torch.bmm(slot_keys[:, 1:], grad_right.transpose(1, 2)).squeeze(-1)
                grad_keys[:, : n - 1].baddbmm_(read.weights[:, 1:].unsqueeze(-1), grad_left)
                grad_keys[:, 1:n].baddbmm_(read.weights[:, :-1].unsqueeze(-1), grad_right)
            # The normalisation, the strengths and the exponential; the max it is taken relative to passes its
            # gradient to its slot, as `max(dim)` does.
            dot = (grad_weights * read.weights).sum(dim=-1, keepdim=True)
            grad_unnormalised = (grad_weights - dot) / read.total
            grad_strengths[:, :n] += grad_unnormalised * read.factor
            grad_scaled = grad_unnormalised * slot_strengths * read.factor
            grad_scaled.scatter_add_(-1, read.largest, -grad_scaled.sum(dim=-1, keepdim=True))
            if saved.gamma is not None:
                grad_gamma = (grad_scaled * read.scores).sum(dim=-1, keepdim=True)
                gamma_raw = outputs[t, :, layout.gamma : layout.gamma + 1]
                grad_output[:, layout.gamma : layout.gamma + 1] = grad_gamma * torch.sigmoid(gamma_raw)
                grad_scores = grad_scaled * saved.gamma
            else:
                grad_scores = grad_scaled
            grad_query = torch.bmm(grad_scores.unsqueeze(1), slot_keys).squeeze(1)
            grad_keys[:, :n].baddbmm_(grad_scores.unsqueeze(-1), saved.query.unsqueeze(1))
            # The query: the read key, or the tape's mix of it and the neighbours.
            if saved.choice is None:
                grad_output[:, :key_dim] = grad_query
            else:
                choice = saved.choice
                grad_candidates = choice.unsqueeze(-1) * grad_query.unsqueeze(1)
                grad_choice = torch.bmm(saved.candidates, grad_query.unsqueeze(-1)).squeeze(-1)
                grad_choice = choice * (grad_choice - (choice * grad_choice).sum(dim=-1, keepdim=True))
                grad_output[:, layout.choice : layout.choice + 3] = grad_choice
                grad_output[:, :key_dim] = grad_candidates[:, 0]
                grad_neighbours = grad_candidates[:, 1:]
            # The step projection, then the LSTM.
            grad_hidden = torch.addmm(grad_hidden, grad_output, step_weight)
            grad_cell = cells.lstm_backward(saved.lstm, grad_hidden, grad_cell, out=grad_gates[t])
            grad_recurrent = torch.mm(grad_gates[t], recurrent_weight)
            grad_read, grad_hidden = grad_recurrent[:, :width], grad_recurrent[:, width:]
    initial = (
        grad_hidden.clone(),
        grad_cell.clone(),
        grad_read.clone(),
        grad_keys[:, :first].clone(),
        grad_values[:, :first].clone(),
        grad_strengths[:, :first].clone(),
        grad_neighbours.clone(),
    )
    return (grad_gates, grad_outputs, *initial)
