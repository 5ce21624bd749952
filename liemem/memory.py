"""The append-only memory Sigma = {(k_i, v_i, s_i)}, stored for a whole sequence at once.

A forward pass allocates buffers for the keys, values and strengths of every slot the sequence will write, and
writes each new slot into them in place, so no step copies the memory. Autograd cannot follow in-place writes
into tensors that earlier reads saved, so two small autograd functions stand between them:

- `append` writes a slot and returns a new `MemoryState`, whose `token` marks the write's place in the graph;
- a read takes views of the slots written so far through a function of that token. The views come from
  aliases of the buffers with their own version counters: writes never touch the rows a read saw, so what the
  read saved stays valid.

Gradients travel back along the tokens. The token of a memory of n slots has the shape of their packed
gradient, `[B, n, key_dim + value_dim + 1]` (a broadcast zero in the forward pass, so it costs nothing); a read's
backward returns its gradients for the n slots it saw as the token's; autograd sums what every read and later
write sends to a token, and each write's backward takes its own row and passes the rows before it on. The work
per read is proportional to the slots it read, and no state outlives a backward pass, so partial and repeated
backward passes are exact. Everything between, the distances, the
weighting and the smoothing, is ordinary autograd, so `weigh` can be any differentiable function; it runs under
a checkpoint that recomputes it in the backward pass, so that a sequence's graph keeps no per-slot state and grows
linearly with the sequence's length. States are values: an older `MemoryState` keeps reading the slots it had.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

from manifolds import KeySpace

from . import weighting
from .engine import cells

# weigh(query [B, H, key_dim], keys [B, N, key_dim], strengths [B, N], *params) -> weights [B, H, N]
Weigh = Callable[..., torch.Tensor]


class MemoryTape:
    """Preallocated storage for one sequence's memory.

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
        self.sizes = [key_dim, value_dim, 1]
        self.written = 0

    def contents(self, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Views of the first `size` keys, values and strengths."""
        return tuple(alias[:, :size] for alias in self.aliases)

    def token(self, size: int, like: torch.Tensor) -> torch.Tensor:
        """The token of a memory of `size` slots: zeros shaped like their packed gradient,
        `[B, size, key_dim + value_dim + 1]`, as a broadcast view that allocates nothing."""
        return like.new_zeros(()).expand(self.buffers[0].shape[0], size, sum(self.sizes))

    def token_grad(self, size: int, grad_keys, grad_values, grad_strengths) -> torch.Tensor:
        """The packed gradient `[B, size, key_dim + value_dim + 1]` of the first `size` slots, for a read's token.

        Parts that are None (a read whose keys, say, got no gradient) are zero.
        """
        contents = self.contents(size)
        parts = [
            torch.zeros_like(content) if grad is None else grad
            for grad, content in zip((grad_keys, grad_values, grad_strengths), contents, strict=True)
        ]
        return torch.cat((parts[0], parts[1], parts[2].unsqueeze(-1)), dim=-1)


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
    tape = MemoryTape(batch, capacity, key_dim, value_dim, like)
    return MemoryState(tape, 0, tape.token(0, like))


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
    if torch.is_grad_enabled():
        # Recomputed in the backward pass instead of kept: the distances and weights of every read would make a
        # sequence's graph grow with the square of its length.
        return checkpoint(
            _read, state, query, weigh, params, shifted_keys, use_reentrant=False, preserve_rng_state=False
        )
    return _read(state, query, weigh, params, shifted_keys)


def _read(state: MemoryState, query, weigh: Weigh, params, shifted_keys: bool) -> Read:
    keys, values, strengths = state.contents()
    weights = weigh(query, keys, strengths, *params)
    value = torch.matmul(weights, values)
    if not shifted_keys:
        return Read(value, weights)
    left = torch.matmul(weights[..., 1:], keys[:, :-1])
    right = torch.matmul(weights[..., :-1], keys[:, 1:])
    return Read(value, weights, left, right)


def read_by_distance(
    state: MemoryState,
    query: torch.Tensor,
    key_space: KeySpace,
    parameters: torch.Tensor | None = None,
    weigh: weighting.Weighting | None = None,
) -> Read:
    """The Lie-access read (paper, 4.2) over `key_space.dist2`, weighted by `weigh` (default: inverse-square,
    or softmax when only `parameters`, a temperature `[B, H, 1]`, is given) at its per-step `parameters`.

    Key spaces whose distance is chordal take a hand-differentiated node for the weightings it has formulas for
    (`cells.CHORDAL_READ_WEIGHTINGS`); anything else goes through `read`, as ordinary autograd.
    """
    if state.size == 0:
        raise RuntimeError("read: the memory is empty")
    if weigh is None:
        weigh = weighting.get("inverse_square" if parameters is None else "softmax")
    if key_space.chordal and weigh.name in cells.CHORDAL_READ_WEIGHTINGS:
        temperature = parameters if weigh.name == "softmax" else None
        return Read(*cells.ChordalRead.apply(state.tape, state.size, state.token, query, temperature))
    extra = () if parameters is None else (parameters,)
    return read(state, query, functools.partial(distance_weights, key_space, weigh), extra)


def distance_weights(key_space: KeySpace, weigh: weighting.Weighting, query, keys, strengths, *parameters):
    """Weights `[B, H, N]` of queries `[B, H, d]` over keys `[B, N, d]` by `weigh` at its `parameters`."""
    dist2 = key_space.dist2(query.unsqueeze(-2), keys.unsqueeze(1))
    return weigh.weights(dist2, strengths.unsqueeze(1), parameters[0] if parameters else None)


class _Append(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tape, index, token, *slot):
        ctx.set_materialize_grads(False)
        for buffer, part in zip(tape.buffers, slot, strict=True):
            buffer[:, index] = part
        ctx.tape, ctx.index = tape, index
        return tape.token(index + 1, token)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_token):
        if grad_token is None:
            return (None,) * 6
        # This slot's gradient is complete: every read that saw it ran its backward before this (they hang off
        # this write's token or a later one). Small copies, since autograd may add into `grad_token` later.
        key, value, strength = (part.clone() for part in grad_token[:, ctx.index].split(ctx.tape.sizes, dim=-1))
        return None, None, grad_token[:, : ctx.index], key, value, strength.squeeze(-1)


class _Contents(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tape, size, token):
        ctx.set_materialize_grads(False)
        ctx.tape, ctx.size = tape, size
        return tape.contents(size)

    @staticmethod
    @once_differentiable
    def backward(ctx, *grads):
        if all(grad is None for grad in grads):
            return None, None, None
        return None, None, ctx.tape.token_grad(ctx.size, *grads)
