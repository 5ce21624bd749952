"""The append-only memory Sigma = {(k_i, v_i, s_i)}, stored for a whole sequence at once.

A forward pass allocates one buffer `[batch, capacity, key_dim + value_dim + 1]` (key | value | strength per
slot) and writes each new slot into it in place, so no step copies the memory. Autograd cannot follow
in-place writes into a tensor that earlier reads saved, so two small autograd functions stand between them:

- `append` writes a slot and returns a new `MemoryState`, whose `token` (a 0-d tensor) marks the write's
  place in the graph;
- a read takes views of the slots written so far through a function that depends on that token, so the
  backward pass handles every read before the writes it saw. The views come from an alias of the buffer
  with its own version counter: writes never touch the rows a read saw, so what the read saved stays valid.
  Its backward adds the gradients for those rows into one gradient buffer, and each write's backward hands
  its row of that buffer on to whatever produced the slot.

Everything between, the distances, the weighting and the smoothing, is ordinary autograd, so `weigh` can be
any differentiable function. States are values: an older `MemoryState` keeps reading the slots it had.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch.autograd.function import once_differentiable

from manifolds import KeySpace

from . import fused, weighting

# weigh(query [B, H, key_dim], keys [B, N, key_dim], strengths [B, N], *params) -> weights [B, H, N]
Weigh = Callable[..., torch.Tensor]


class MemoryTape:
    """Preallocated storage for one sequence's memory, and the gradient buffers its backward pass fills.

    Keys, values and strengths live in separate buffers, so that the rows written so far are a prefix that
    matrix products take without copying.
    """

    def __init__(self, batch: int, capacity: int, key_dim: int, value_dim: int, like: torch.Tensor):
        self.capacity = capacity
        self.buffers = (
            like.new_zeros(batch, capacity, key_dim),
            like.new_zeros(batch, capacity, value_dim),
            like.new_zeros(batch, capacity),
        )
        # Reads take views of these aliases: they share the storage but not the version counters.
        self.aliases = tuple(buffer.data for buffer in self.buffers)
        self.written = 0
        self.grads: tuple[torch.Tensor, ...] | None = None

    def contents(self, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Views of the first `size` keys, values and strengths."""
        return tuple(alias[:, :size] for alias in self.aliases)

    def grad_contents(self, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Views of the gradient buffers' first `size` rows, allocated at the first call."""
        if self.grads is None:
            self.grads = tuple(torch.zeros_like(buffer) for buffer in self.buffers)
        return tuple(grad[:, :size] for grad in self.grads)


class MemoryState(NamedTuple):
    """The memory after `size` writes: the shared tape, and the token that orders this state in the graph."""

    tape: MemoryTape
    size: int
    token: torch.Tensor

    def contents(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Keys `[B, size, key_dim]`, values `[B, size, value_dim]` and strengths `[B, size]`, differentiable."""
        return _Contents.apply(self.tape, self.size, self.token)


class Read(NamedTuple):
    """A read: the value `[B, H, value_dim]` and weights `[B, H, size]`; with `shifted_keys`, also the keys
    one slot before and after the weighted position, `[B, H, key_dim]`."""

    value: torch.Tensor
    weights: torch.Tensor
    left_key: torch.Tensor | None = None
    right_key: torch.Tensor | None = None


def empty(batch: int, capacity: int, key_dim: int, value_dim: int, like: torch.Tensor) -> MemoryState:
    """A memory with room for `capacity` slots, on the device and in the dtype of `like`."""
    if capacity < 1:
        raise ValueError(f"memory capacity must be at least 1, got {capacity}")
    return MemoryState(MemoryTape(batch, capacity, key_dim, value_dim, like), 0, like.new_zeros(()))


def append(state: MemoryState, key: torch.Tensor, value: torch.Tensor, strength: torch.Tensor) -> MemoryState:
    """Sigma + {(key, value, strength)}: `key` `[B, key_dim]`, `value` `[B, value_dim]`, `strength` `[B]`."""
    tape = state.tape
    if state.size != tape.written:
        raise RuntimeError("append: this memory state is not the latest one; memories are append-only")
    if state.size >= tape.capacity:
        raise RuntimeError(f"append: the memory is full ({tape.capacity} slots)")
    token = _Append.apply(tape, state.size, state.token, key, value, strength)
    tape.written += 1
    return MemoryState(tape, state.size + 1, token)


def read(
    state: MemoryState,
    query: torch.Tensor,
    weigh: Weigh,
    params: Sequence[torch.Tensor] = (),
    shifted_keys: bool = False,
) -> Read:
    """Linear smoothing rho = sum_i w_i v_i over the memory's slots, for queries `[B, H, key_dim]`.

    `weigh(query, keys, strengths, *params)` gives the weights. With `shifted_keys`, also returns
    k_L = sum_i w_{i+1} k_i and k_R = sum_i w_{i-1} k_i, the tape neighbours of the RAM/tape model.
    """
    if state.size == 0:
        raise RuntimeError("read: the memory is empty")
    keys, values, strengths = state.contents()
    weights = weigh(query, keys, strengths, *params)
    value = torch.matmul(weights, values)
    if not shifted_keys:
        return Read(value, weights)
    left = torch.matmul(weights[..., 1:], keys[:, :-1])
    right = torch.matmul(weights[..., :-1], keys[:, 1:])
    return Read(value, weights, left, right)


def read_by_distance(
    state: MemoryState, query: torch.Tensor, key_space: KeySpace, temperature: torch.Tensor | None = None
) -> Read:
    """The Lie-access read (paper, 4.2) over `key_space.dist2`: inverse-square weights, or softmax weights
    at `temperature` (`[B, H, 1]`) when one is given.

    Key spaces whose distance is chordal take a fused kernel; any other goes through `read`.
    """
    if state.size == 0:
        raise RuntimeError("read: the memory is empty")
    if key_space.chordal:
        return Read(*fused.ChordalRead.apply(state.tape, state.size, state.token, query, temperature))
    params = () if temperature is None else (temperature,)
    return read(state, query, functools.partial(distance_weights, key_space), params)


def distance_weights(key_space: KeySpace, query, keys, strengths, *temperature) -> torch.Tensor:
    """Weights `[B, H, N]` of queries `[B, H, d]` over keys `[B, N, d]`: inverse-square, or softmax if a
    temperature is given."""
    dist2 = key_space.dist2(query.unsqueeze(-2), keys.unsqueeze(1))
    if temperature:
        return weighting.softmax(dist2, strengths.unsqueeze(1), temperature[0])
    return weighting.inverse_square(dist2, strengths.unsqueeze(1))


class _Append(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tape, index, token, *slot):
        for buffer, part in zip(tape.buffers, slot, strict=True):
            buffer[:, index] = part
        ctx.tape, ctx.index = tape, index
        return token.new_zeros(())

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_token):
        if ctx.tape.grads is None:
            return None, None, grad_token, None, None, None
        rows = [grad[:, ctx.index] for grad in ctx.tape.grads]
        grad_slot = [row.clone() for row in rows]
        for row in rows:
            row.zero_()  # so that another backward pass through the same graph starts from zero
        return None, None, grad_token, *grad_slot


class _Contents(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tape, size, token):
        ctx.set_materialize_grads(False)
        ctx.tape, ctx.size = tape, size
        return tape.contents(size)

    @staticmethod
    @once_differentiable
    def backward(ctx, *grads):
        for grad, rows in zip(grads, ctx.tape.grad_contents(ctx.size), strict=True):
            if grad is not None:
                rows.add_(grad)
        # A defined gradient for the token, so that the writes this read saw run their backward after it.
        return None, None, ctx.tape.buffers[0].new_zeros(())
