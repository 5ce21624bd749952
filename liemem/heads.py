"""Heads that move through a key space by Lie group actions, mixed with random access (paper 4.3, appendix B).

Each step the controller emits, per head, a random-access key, a raw action and a gate (and, with action
interpolation, a second gate). The new position is

    q' = a . pi(g * k~ + (1 - g) * q)

with k~ = pi(raw key), a = group.from_controller(raw action), and pi the key space's `soft_project` (its
projection, softened near the sphere's centre as the authors' code does; for the random-access key k~, the key
space's `random_access_key`, which is pi unless the space says otherwise); g is the weight of random access
(the paper's 1 - t). With action interpolation the action is first moved from the
previous one toward the new one, a = group.interpolate(a_prev, a, r), so that it works for every group. For
translations this is appendix B's straight line r a + (1 - r) a_prev; for SO(3) it is slerp, the geodesic
between the two rotations, where the appendix interpolates axis and angle separately. A group that wants
another rule overrides `interpolate`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from groups import LieGroup


class HeadState(NamedTuple):
    """Positions `[batch, heads, key_dim]` and the actions that moved there `[batch, heads, *element_shape]`."""

    position: torch.Tensor
    action: torch.Tensor

    @staticmethod
    def start(positions: torch.Tensor, group: LieGroup) -> HeadState:
        """Heads at `positions` `[batch, heads, key_dim]` with identity actions, as fresh contiguous tensors.

        Made under the caller's grad mode (inference mode in the fused loops), every state a loop passes to `move`
        then has the same layout and kind, so that a compiled `move` meets one graph per head count."""
        batch, heads = positions.shape[:2]
        action = group.identity(batch, heads, dtype=positions.dtype, device=positions.device)
        return HeadState(positions.clone(memory_format=torch.contiguous_format), action)

    def read_head(self) -> HeadState:
        """The read head's state alone (head 0), contiguous like the states `move` returns."""
        return HeadState(self.position[:, :1].contiguous(), self.action[:, :1].contiguous())


class LieHeads(nn.Module):
    """The movement rule shared by a model's heads; the heads are an axis of the tensors it takes.

    `move(raw, state)` reads `raw` of shape `[batch, heads, raw_size]`, laid out as
    (random-access key | action | gate [| action gate]).
    """

    def __init__(self, group: LieGroup, action_interpolation: bool = False):
        super().__init__()
        if not isinstance(group, LieGroup):
            raise TypeError(f"LieHeads needs a LieGroup, got {type(group).__name__}")
        self.group = group
        self.action_interpolation = bool(action_interpolation)
        key_dim, action_dim = group.key_space.dim, group.controller_dim
        self._sizes = [key_dim, action_dim, 1] + [1] * self.action_interpolation
        self.gate_index = key_dim + action_dim
        self.action_gate_index = self.gate_index + 1 if self.action_interpolation else None
        self.raw_size = sum(self._sizes)

    def initial_state(self, positions: torch.Tensor, batch: int) -> HeadState:
        """Heads at `positions` `[heads, key_dim]` (ambient coordinates, projected here), with identity actions."""
        position = self.group.key_space.project(positions).expand(batch, -1, -1)
        action = self.group.identity(batch, positions.shape[0], dtype=positions.dtype, device=positions.device)
        return HeadState(position, action)

    def move(self, raw: torch.Tensor, state: HeadState) -> HeadState:
        """The heads after one step of the rule in the module docstring."""
        space = self.group.key_space
        key, action, gate, *action_gate = raw.split_with_sizes(self._sizes, dim=-1)
        mixed = space.soft_project(torch.lerp(state.position, space.random_access_key(key), torch.sigmoid(gate)))
        action = self.group.from_controller(action)
        if self.action_interpolation:
            action = self.group.interpolate(state.action, action, torch.sigmoid(action_gate[0].squeeze(-1)))
        return HeadState(self.group.act(action, mixed), action)

    def initial_bias(self, gate_biases: list[float], action_gate_bias: float) -> torch.Tensor:
        """Bias of the controller layer feeding `move`, `[heads, raw_size]`: zero except the gates'."""
        bias = torch.zeros(len(gate_biases), self.raw_size)
        bias[:, self.gate_index] = torch.tensor(gate_biases)
        if self.action_interpolation:
            bias[:, self.action_gate_index] = action_gate_bias
        return bias

    def extra_repr(self) -> str:
        return f"action_interpolation={self.action_interpolation}"
