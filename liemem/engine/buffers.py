"""What the hand-differentiated backends of a recurrence share: their inputs, what a forward pass leaves for
the backward pass, what the backward pass gives, and the epilogue that turns it into the inputs' gradients."""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..heads import HeadState


class LoopInputs(NamedTuple):
    """The differentiable inputs of a recurrence, batch-expanded where the model keeps them shared."""

    projected: torch.Tensor  # [T, B, 4H]: the input term of the LSTM gates, bias included
    recurrent_weight: torch.Tensor  # [4H, m + H]
    step_weight: torch.Tensor  # [P, H]: the step projection (both heads' raw outputs | weighting | value | strength)
    step_bias: torch.Tensor  # [P]
    hidden: torch.Tensor  # [B, H]
    cell: torch.Tensor  # [B, H]
    read: torch.Tensor  # [B, m]
    positions: torch.Tensor  # [B, 2, key_dim]: the heads' initial positions
    key: torch.Tensor  # [B, key_dim]: the initial slot
    value: torch.Tensor  # [B, m]
    strength: torch.Tensor  # [B]


class ForwardRun(NamedTuple):
    """What a backend's forward pass gives back. Row t of `recurrent` is step t's recurrent input [r_{t-1};
    h_{t-1}] (row 0 the initial state); row t of `outputs` is step t's projection of h_t."""

    recurrent: torch.Tensor  # [T + 1, B, m + H]
    outputs: torch.Tensor  # [T, B, P]
    states_before: tuple[HeadState, HeadState] | None  # see `replay.stacked_states`; None without a backward pass
    answer_hidden: torch.Tensor  # [A, B, H]
    answer_reads: torch.Tensor  # [A, B, m]


class LoopGrads(NamedTuple):
    """What a backend's backward pass gives back: per-step gradients, and those of the initial state."""

    gates: torch.Tensor  # [T, B, 4H]: of the LSTM's pre-activations, i.e. of `projected`
    outputs: torch.Tensor  # [T, B, P]: of the step projection's outputs
    hidden: torch.Tensor
    cell: torch.Tensor
    read: torch.Tensor
    positions: torch.Tensor
    key: torch.Tensor
    value: torch.Tensor
    strength: torch.Tensor


def controller_inputs(model, stream: torch.Tensor) -> dict:
    """The loop inputs every engine backend takes from a model's embedding, one-layer LSTM controller, step
    projection and initial read vector, for `stream` `[T, B]`."""
    batch = stream.shape[1]
    state = model.controller.initial_state(batch)
    return dict(
        projected=model.controller.project_inputs(model.embedding(stream)),
        recurrent_weight=model.controller.recurrent_weight[0],
        step_weight=model.step_projection.weight,
        step_bias=model.step_projection.bias,
        hidden=state.hidden[0],
        cell=state.cell[0],
        read=torch.tanh(model.initial_read).expand(batch, -1),
    )


class WeightGrads(NamedTuple):
    """The controller's weight gradients, summed over time."""

    recurrent_weight: torch.Tensor
    step_weight: torch.Tensor
    step_bias: torch.Tensor


def weight_gradients(recurrent: torch.Tensor, width: int, grad_gates, grad_outputs) -> WeightGrads:
    """The gradients of the LSTM's recurrent weight and of the step projection, from every step's gradients of
    the gates `[T, B, 4H]` and of the projection's outputs `[T, B, P]`: one matrix product each."""
    flat_gates, flat_outputs = grad_gates.flatten(0, 1), grad_outputs.flatten(0, 1)
    return WeightGrads(
        flat_gates.t().mm(recurrent[:-1].flatten(0, 1)),
        flat_outputs.t().mm(recurrent[1:, :, width:].flatten(0, 1)),
        flat_outputs.sum(dim=0),
    )


def epilogue(recurrent: torch.Tensor, width: int, grads: LoopGrads) -> LoopInputs:
    """The gradients of every `LoopInputs` field."""
    weights = weight_gradients(recurrent, width, grads.gates, grads.outputs)
    return LoopInputs(
        projected=grads.gates,
        recurrent_weight=weights.recurrent_weight,
        step_weight=weights.step_weight,
        step_bias=weights.step_bias,
        hidden=grads.hidden,
        cell=grads.cell,
        read=grads.read,
        positions=grads.positions,
        key=grads.key,
        value=grads.value,
        strength=grads.strength,
    )
