"""The heads' movements of a whole sequence, replayed as one batch to give each movement's Jacobian.

The hand-differentiated backends know every formula of a time step but the group's move, which a user writes in
Python. Heads move each sample independently, so after the forward pass every step's movement is replayed at once,
and the Jacobian of each movement comes from a handful of vector-Jacobian products over that batch (or from
`move_jacobian`, compiled). The reverse loops then apply those small Jacobians, and one last product gives the
gradients of the group's own parameters.
"""

from __future__ import annotations

import torch

from ..heads import HeadState


def stacked_states(states: list[HeadState], input_length: int) -> tuple[HeadState, HeadState]:
    """Each step's head states before it moved, stacked over time: the input steps' `[L, B, 2, ...]` and the
    answer steps' `[A, B, 1, ...]`, as `HeadsReplay` takes them."""

    def stack(part):
        return HeadState(torch.stack([s.position for s in part]), torch.stack([s.action for s in part]))

    return stack(states[:input_length]), stack(states[input_length:])


class HeadsReplay:
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
        if jacobian is not None:  # a function giving the Jacobians directly (see `liemem.engine.compiling`)
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


def detached(tensor: torch.Tensor) -> torch.Tensor:
    """The saved-tensor hook under which the replay's graph is recorded: each saved tensor detached."""
    # Detached: a node that saves its own output would otherwise hold that output's grad_fn, i.e. itself, a
    # reference cycle through C++ that Python's collector cannot see, leaking every step's replay graph.
    return tensor.detach()


def _or_zeros(grad: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(like) if grad is None else grad


def move_jacobian(heads):
    """A function of N movements' inputs, raw outputs `[N, raw]`, positions `[N, key_dim]` and actions
    `[N, *element_shape]`, giving each movement's Jacobian `[N, outputs, inputs]`: outputs the new position (and
    action, with action interpolation), inputs laid out (raw | position [| action]), as `HeadsReplay` takes them.

    It differentiates `heads.move` one movement at a time, vectorised over N (`torch.func`), which compiles into
    a few fused loops where autograd's batched backward pass runs a hundred operations."""
    with_action = heads.action_interpolation

    def one(raw, position, action):
        moved = heads.move(raw[None, None], HeadState(position[None, None], action[None, None]))
        if not with_action:
            return moved.position[0, 0]
        return torch.cat((moved.position[0, 0], moved.action[0, 0].flatten()))

    jacobians = torch.func.vmap(torch.func.jacrev(one, argnums=(0, 1, 2) if with_action else (0, 1)))

    def jacobian(raw, position, action):
        return torch.cat([part.flatten(2) for part in jacobians(raw, position, action)], dim=-1)

    return jacobian
