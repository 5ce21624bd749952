"""A Lie-access recurrence as one autograd node, run by the backend its plan names.

At the paper's sizes a time step is a few dozen tiny tensor operations, and recording each in the autograd
graph costs more than computing it. The hand-differentiated backends run the loop without a graph and
differentiate it by hand, in reverse time, for what they know: the LSTM cell, the step projection, the read and
the writes. The part they do not know, the group's head movement, they differentiate through
`replay.HeadsReplay`. Weight gradients are summed over time in one matrix product each, in `epilogue`, which
both backends share, as they share the inputs (`LoopInputs`), what a forward pass leaves (`ForwardRun`) and what
a backward pass gives (`LoopGrads`), all in `buffers`.

A backend is a module with `forward(ctx, model, plan, input_length, differentiable, inputs) -> ForwardRun` and
`backward(ctx, saved, grad_answer_hidden, grad_answer_reads) -> LoopGrads`: `tensor_ops` and `kernels`.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from . import kernels, replay, tensor_ops
from .buffers import LoopInputs, epilogue
from .plan import Plan

BACKENDS = {"loop": tensor_ops, "kernels": kernels}


def run(model, plan: Plan, inputs: LoopInputs, input_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The answer steps' hidden states `[A, B, H]` and reads `[A, B, m]` of `model`'s recurrence, on the backend
    `plan` names (not `autograd`: that one is the model's own loop)."""
    group_parameters = [p for p in model.group.parameters() if p.requires_grad]
    return LieAccessLoop.apply(model, plan, input_length, torch.is_grad_enabled(), *inputs, *group_parameters)


class LieAccessLoop(torch.autograd.Function):
    """Inputs: the model, its plan, the input length, whether a backward pass may follow, then the `LoopInputs`
    and the group's trainable parameters. Outputs the answer steps' hidden states and reads."""

    @staticmethod
    def forward(ctx, model, plan, input_length, differentiable, *tensors):
        inputs = LoopInputs(*tensors[: len(LoopInputs._fields)])
        group_parameters = tensors[len(LoopInputs._fields) :]
        ctx.model, ctx.plan, ctx.input_length = model, plan, input_length
        ctx.backend = BACKENDS[plan.backend]
        forward_run = ctx.backend.forward(ctx, model, plan, input_length, differentiable, inputs)
        if differentiable:
            # Replayed now, while the group's parameters are the ones this forward pass used (a caller such
            # as torch.func.functional_call may swap them back before the backward pass).
            # Its graph is walked once per Jacobian row, so it is kept out of any saved-tensor hooks of the
            # caller's (torch.utils.checkpoint's would recompute the whole model at every walk).
            raw_size = model.heads.raw_size
            raws = forward_run.outputs[..., : 2 * raw_size].unflatten(-1, (2, raw_size))
            with torch.autograd.graph.saved_tensors_hooks(replay.detached, replay.detached):
                jacobian = model._compiled_steps.jacobian if plan.jacobian == "compiled" else None
                ctx.replay = replay.HeadsReplay(model.heads, input_length, raws, forward_run.states_before, jacobian)
        saved = (forward_run.recurrent, forward_run.outputs, inputs.recurrent_weight, inputs.step_weight)
        ctx.save_for_backward(*saved, *group_parameters)
        return forward_run.answer_hidden, forward_run.answer_reads

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_answer_hidden, grad_answer_reads):
        recurrent, outputs, recurrent_weight, step_weight, *group_parameters = ctx.saved_tensors
        ctx.replay.prepare(track_outputs=bool(group_parameters))
        saved = (recurrent, outputs, recurrent_weight, step_weight)
        grads = ctx.backend.backward(ctx, saved, grad_answer_hidden, grad_answer_reads)
        width = recurrent.shape[-1] - grads.hidden.shape[-1]
        input_grads = epilogue(recurrent, width, grads)
        return (None, None, None, None, *input_grads, *ctx.replay.parameter_grads(group_parameters))
