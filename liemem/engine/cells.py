"""Hand-differentiated kernels for what every time step repeats: the LSTM cell and the distance read.

Written as ordinary autograd ops they cost a dozen graph nodes each per step, and at the paper's sizes
(batch 32, 50 cells, 20-wide memory) per-op overhead, not arithmetic, is the time. The forward and backward
formulas are plain functions, used by the one-node autograd functions here and by the whole-sequence loop
of `engine.tensor_ops`; tests compare them with the autograd formulas by `gradcheck`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch.autograd.function import once_differentiable

from manifolds import poincare

from .. import weighting

# g * y * (1 - y) and g * (1 - y^2), given y, as single kernels.
sigmoid_backward = torch.ops.aten.sigmoid_backward.default
tanh_backward = torch.ops.aten.tanh_backward.default

# --- LSTM cell --------------------------------------------------------------------------------------------


class LSTMSaved(NamedTuple):
    """What the cell's backward needs: the three gates, the candidate, the previous cell and tanh(new cell)."""

    sigmoids: torch.Tensor
    candidate: torch.Tensor
    cell: torch.Tensor
    squashed: torch.Tensor


def lstm_forward(gates: torch.Tensor, cell: torch.Tensor, out: torch.Tensor | None = None):
    """(h', c', saved) from pre-activations `[B, 4H]` laid out (input, forget, output, candidate) and the
    cell `[B, H]`; h' is written into `out` when given."""
    size = cell.shape[-1]
    sigmoids = torch.sigmoid(gates[:, : 3 * size])
    candidate = torch.tanh(gates[:, 3 * size :])
    input_gate, forget_gate, output_gate = sigmoids.chunk(3, dim=1)
    new_cell = torch.addcmul(forget_gate * cell, input_gate, candidate)
    squashed = torch.tanh(new_cell)
    return torch.mul(output_gate, squashed, out=out), new_cell, LSTMSaved(sigmoids, candidate, cell, squashed)


def lstm_backward(saved: LSTMSaved, grad_hidden: torch.Tensor, grad_cell: torch.Tensor, out: torch.Tensor):
    """The gradient of the previous cell, given those of (h', c'); the pre-activations' gradient `[B, 4H]` is
    written into `out`."""
    sigmoids, candidate, cell, squashed = saved
    input_gate, forget_gate, output_gate = sigmoids.chunk(3, dim=1)
    grad_cell = grad_cell + tanh_backward(grad_hidden * output_gate, squashed)
    grad_sigmoids = torch.cat((grad_cell * candidate, grad_cell * cell, grad_hidden * squashed), dim=1)
    grad_candidate = tanh_backward(grad_cell * input_gate, candidate)
    torch.cat((sigmoid_backward(grad_sigmoids, sigmoids), grad_candidate), dim=1, out=out)
    return grad_cell * forget_gate


class LSTMCell(torch.autograd.Function):
    """`lstm_forward` as one autograd node."""

    @staticmethod
    def forward(ctx, gates, cell):
        hidden, new_cell, saved = lstm_forward(gates, cell)
        ctx.save_for_backward(*saved)
        return hidden, new_cell

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_hidden, grad_cell):
        saved = LSTMSaved(*ctx.saved_tensors)
        grad_gates = grad_hidden.new_empty(grad_hidden.shape[0], 4 * grad_hidden.shape[1])
        return grad_gates, lstm_backward(saved, grad_hidden, grad_cell, out=grad_gates)


def lstm_cell(gates: torch.Tensor, cell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM update (see `lstm_forward`), differentiable."""
    return LSTMCell.apply(gates, cell)


# --- distance read ----------------------------------------------------------------------------------------


# The weightings `distance_read_forward` and `distance_read_backward` have formulas for.
CHORDAL_READ_WEIGHTINGS = ("inverse_square", "softmax")
# The distances they read by, as a key space declares them (`KeySpace.kernel_distance`).
DISTANCES = ("chordal", "poincare")


class PoincareSaved(NamedTuple):
    """What the backward pass of a read by the Poincaré ball's distance needs besides the chordal part's."""

    slope: torch.Tensor  # F'(s_i) of d_i^2 = F(s_i), [B, H, N]
    s: torch.Tensor  # s_i = |q - k_i|^2 / (gap_q gap_i), [B, H, N]
    gap_query: torch.Tensor  # 1 - |q|^2, [B, H, 1]
    gap_keys: torch.Tensor  # 1 - |k_i|^2, [B, 1, N]
    query: torch.Tensor  # [B, H, d]
    keys: torch.Tensor  # [B, d, N]


class ReadSaved(NamedTuple):
    """What the read's backward needs besides the memory itself."""

    diff: torch.Tensor  # q - k_i, [B, H, d, N]
    excess: torch.Tensor | None  # d_i - min_j d_j (softmax only)
    factor: torch.Tensor  # the unnormalised kernel, [B, H, N]
    scale: torch.Tensor  # 1 / (d_i + eps) (inverse-square) or 1 / max(T, floor) (softmax)
    total: torch.Tensor  # the normaliser, [B, H, 1]
    weights: torch.Tensor  # [B, H, N]
    nearest_index: torch.Tensor  # the (first) nearest slot, [B, H, 1]
    poincare: PoincareSaved | None = None  # the Poincaré ball's terms; None for the chordal distance


def distance_read_forward(keys, values, strengths, query, temperature, out=None, distance="chordal"):
    """The read value `[B, H, m]` (written into `out` when given) and what its backward needs.

    Keys come coordinate-major, `[B, d, N]`, so that sums over coordinates run along a middle axis (a
    reduction over a last axis of size 2 or 3 is slow); values are `[B, N, m]`, strengths `[B, 1, N]`,
    queries `[B, H, d]`. Weights are inverse-square if `temperature` is None, else softmax at `temperature`
    `[B, H, 1]` (see `weighting`), of the squared `distance`: "chordal", |q - k|^2, or "poincare", the
    Poincaré ball's, a function of the chord and the two points' norms.
    """
    diff = query.unsqueeze(-1) - keys.unsqueeze(1)
    dist2 = (diff * diff).sum(dim=2)
    terms = None
    if distance == "poincare":
        eps = torch.finfo(dist2.dtype).eps
        gap_query = (1 - query.square().sum(dim=-1, keepdim=True)).clamp_min(eps)
        gap_keys = (1 - keys.square().sum(dim=1, keepdim=True)).clamp_min(eps)
        s = dist2 / (gap_query * gap_keys)
        dist2, slope = poincare.squared_distance(s, slope=True)
        terms = PoincareSaved(slope, s, gap_query, gap_keys, query, keys)
    nearest, nearest_index = dist2.min(dim=-1, keepdim=True)
    excess = None
    if temperature is None:
        eps = weighting.inverse_square_eps(dist2.dtype)
        scale = (dist2 + eps).reciprocal_()
        factor = scale * (nearest + eps)
    else:
        scale = temperature.clamp_min(weighting.TEMPERATURE_FLOOR).reciprocal_()
        excess = dist2 - nearest
        factor = torch.exp(-excess * scale)
    unnormalised = torch.mul(factor, strengths).add_(weighting.WEIGHT_FLOOR)
    total = unnormalised.sum(dim=-1, keepdim=True)
    weights = unnormalised / total
    saved = ReadSaved(diff, excess, factor, scale, total, weights, nearest_index, terms)
    if out is not None:
        torch.bmm(weights, values, out=out)
        return saved
    return torch.bmm(weights, values), saved


def distance_read_backward(saved: ReadSaved, values, strengths, grad_value, slot_grads=True):
    """Gradients (query, temperature, keys `[B, d, N]`, values, strengths `[B, 1, N]`) of a read, given that
    of its value, `grad_value` `[B, H, m]`.

    With `slot_grads=False` the last three are returned unreduced over heads, as (the keys' gradient / 2
    `[B, H, d, N]`, d rho / d s `[B, H, N]`, None), for a caller that sums them over many reads at once; the
    values' gradient is then the caller's weights^T @ grad_value.
    """
    diff, excess, factor, scale, total, weights, nearest_index, terms = saved
    grad_value = grad_value.contiguous()  # an expanded gradient sends bmm down a per-sample loop
    grad_weights = torch.bmm(grad_value, values.transpose(1, 2))
    grad_unnormalised = (grad_weights - (grad_weights * weights).sum(dim=-1, keepdim=True)) / total
    grad_factor = grad_unnormalised * strengths
    # d factor / d dist2 is -factor / (dist2 + eps) for inverse-square and -factor / T for softmax.
    minus_grad_dist2 = grad_factor * factor * scale
    grad_temperature = None
    if excess is None:  # factor = (m + eps) / (d + eps): d factor / d m = 1 / (d + eps)
        grad_nearest = (grad_factor * scale).sum(dim=-1, keepdim=True)
    else:  # factor = exp((m - d) / T): d factor / d m = factor / T
        grad_nearest = minus_grad_dist2.sum(dim=-1, keepdim=True)
        grad_temperature = (minus_grad_dist2 * excess).sum(dim=-1, keepdim=True) * scale
        grad_temperature = grad_temperature * (scale < 1 / weighting.TEMPERATURE_FLOOR)  # the floor's clamp
    # The nearest distance m = min_j d_j passes its gradient to its slot, as `min(dim)` does.
    minus_grad_dist2.scatter_add_(-1, nearest_index, grad_nearest.neg_())
    if terms is None:
        minus_grad_diff = minus_grad_dist2.unsqueeze(2) * diff
        grad_query = minus_grad_diff.sum(dim=-1).mul_(-2.0)
    else:
        # d_i^2 = F(s_i), s_i = |q - k_i|^2 / (gap_q gap_i), gap = 1 - |.|^2: the chord's part, scaled by
        # F'(s_i) / (gap_q gap_i), and a radial part for each point, -2 x F'(s_i) s_i / gap_x.
        minus_grad_s = minus_grad_dist2 * terms.slope
        radial = minus_grad_s * terms.s
        minus_grad_diff = (minus_grad_s / (terms.gap_query * terms.gap_keys)).unsqueeze(2) * diff
        grad_query = minus_grad_diff.sum(dim=-1).mul_(-2.0)
        grad_query -= 2 * terms.query * radial.sum(dim=-1, keepdim=True) / terms.gap_query
        minus_grad_diff = minus_grad_diff - (terms.keys / terms.gap_keys).unsqueeze(1) * radial.unsqueeze(2)
    grad_strengths = grad_unnormalised * factor
    if not slot_grads:
        return grad_query, grad_temperature, minus_grad_diff, grad_strengths, None
    grad_keys = _sum_heads(minus_grad_diff).mul(2.0)
    if weights.shape[1] == 1:  # one head: an outer product
        grad_values = weights.transpose(1, 2) * grad_value
    else:
        grad_values = torch.bmm(weights.transpose(1, 2), grad_value)
    return grad_query, grad_temperature, grad_keys, grad_values, _sum_heads(grad_strengths).unsqueeze(1)


def _sum_heads(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over the heads axis (1); with one head, a view."""
    return tensor[:, 0] if tensor.shape[1] == 1 else tensor.sum(dim=1)


class ChordalRead(torch.autograd.Function):
    """A chordal-distance read straight off a memory tape (see `memory.read_by_distance`), as one node.

    Inputs: the tape, the number of slots, the read's token, queries `[B, H, key_dim]`, and a temperature
    `[B, H, 1]` or None. Outputs the value and the weights (for inspection: not differentiable). The
    backward pass returns the gradients of keys, values and strengths as the token's (see `memory`). It keeps
    only the query and the temperature, and recomputes the rest from the tape, so that a sequence's graph grows
    linearly with its length, not with the slots each read sees.
    """

    @staticmethod
    def forward(ctx, tape, size, token, query, temperature):
        ctx.set_materialize_grads(False)
        keys, values, strengths = tape.contents(size)
        value, saved = distance_read_forward(keys.transpose(1, 2), values, strengths.unsqueeze(1), query, temperature)
        ctx.tape, ctx.size = tape, size
        ctx.save_for_backward(query, temperature)
        ctx.mark_non_differentiable(saved.weights)
        return value, saved.weights

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_value, _grad_weights):
        if grad_value is None:
            return (None,) * 5
        query, temperature = ctx.saved_tensors
        keys, values, strengths = ctx.tape.contents(ctx.size)
        strengths = strengths.unsqueeze(1)
        _, saved = distance_read_forward(keys.transpose(1, 2), values, strengths, query, temperature)
        grads = distance_read_backward(saved, values, strengths, grad_value)
        grad_query, grad_temperature, grad_keys, grad_values, grad_strengths = grads
        grad_token = ctx.tape.token_grad(ctx.size, grad_keys.transpose(1, 2), grad_values, grad_strengths.squeeze(1))
        return None, None, grad_token, grad_query, grad_temperature
