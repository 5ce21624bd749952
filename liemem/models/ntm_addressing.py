"""Neural Turing Machine memory access (Graves et al. 2014, section 3) as pure functions on batched tensors.

Every function takes the state it needs and returns a new tensor; nothing is stored or modified in place, so the
same functions serve any number of heads, read and write heads alike, and any batch size. Shapes use `B` for the
batch, `H` for heads, `N` for memory slots, `M` for the slot width and `S` for the shift kernel's size.

Addressing chains four steps (paper, figure 2):

    content      w^c = softmax_i(beta * K(k, M_i))
    interpolate  w^g = g w^c + (1 - g) w_{t-1}
    shift        w~(i) = sum_j w^g(j) s(i - j)          (indices mod N)
    sharpen      w(i) = w~(i)^gamma / sum_j w~(j)^gamma

then a read returns `r = sum_i w(i) M_i`, and a write erases, then adds.
"""

from __future__ import annotations

import torch

__all__ = ["address", "content_weights", "cosine_similarity", "interpolate", "read", "sharpen", "shift", "write"]

COSINE_EPS = 1e-6
"""Norms below this are raised to it in the cosine's denominator (see `cosine_similarity`)."""


def cosine_similarity(memory: torch.Tensor, keys: torch.Tensor, eps: float = COSINE_EPS) -> torch.Tensor:
    """Cosine of every key with every memory row: `K(k, M_i) = k . M_i / (|k| |M_i|)`, shape `[B, H, N]`.

    `memory` is `[B, N, M]`, `keys` `[B, H, M]`. Each norm is computed as `sqrt(max(|x|^2, eps^2))`: the clamp
    comes before the square root, so a zero row or key gives a similarity of 0 with a finite gradient instead of
    0/0 (the gradient of `sqrt` at 0 is infinite, and a clamp after it would multiply that by 0). Vectors with a
    norm above `eps`, including a memory filled with the constant 1e-6 of width 2 or more, get the exact cosine.
    """
    floor = max(eps * eps, torch.finfo(memory.dtype).tiny)  # eps^2 underflows to 0 in float16
    key_norm = keys.square().sum(-1).clamp_min(floor).sqrt()
    memory_norm = memory.square().sum(-1).clamp_min(floor).sqrt()
    dot = torch.bmm(keys, memory.transpose(1, 2))
    return dot / (key_norm.unsqueeze(-1) * memory_norm.unsqueeze(1))


def content_weights(
    memory: torch.Tensor, keys: torch.Tensor, strength: torch.Tensor, eps: float = COSINE_EPS
) -> torch.Tensor:
    """Content addressing: `w^c(i) = exp(beta K(k, M_i)) / sum_j exp(beta K(k, M_j))`, shape `[B, H, N]`.

    `memory` `[B, N, M]`, `keys` `[B, H, M]`, `strength` (beta >= 0) `[B, H]`. `K` is `cosine_similarity`.
    """
    return torch.softmax(strength.unsqueeze(-1) * cosine_similarity(memory, keys, eps), dim=-1)


def interpolate(content: torch.Tensor, previous: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """Interpolation: `w^g = g w^c + (1 - g) w_{t-1}`, with `content`, `previous` `[B, H, N]` and `gate` `[B, H]`.

    Computed as `w_{t-1} + g (w^c - w_{t-1})`, the same expression rearranged.
    """
    return torch.lerp(previous, content, gate.unsqueeze(-1))


def shift(weights: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Circular convolution: `w~(i) = sum_j w(j) s(i - j)`, indices taken mod N.

    `weights` is `[B, H, N]`; `kernel` `[B, H, S]`, S odd, holds `s` over the offsets `-(S//2) .. +(S//2)`:
    with S = 3, `kernel[..., 2]` is the weight of moving every slot's mass one slot up (i -> i + 1, slot N - 1
    wrapping to 0). Substituting `o = i - j` gives `w~ = sum_o s(o) roll(w, o)`, one roll per offset, so the cost
    is O(S N) with no loop over slots.
    """
    size = kernel.shape[-1]
    if size % 2 != 1:
        raise ValueError(f"shift: the kernel must have an odd size (offsets -S//2 .. +S//2), got {size}")
    half = size // 2
    rolled = torch.stack([torch.roll(weights, offset, dims=-1) for offset in range(-half, half + 1)], dim=-2)
    return torch.matmul(kernel.unsqueeze(-2), rolled).squeeze(-2)


def sharpen(weights: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Sharpening: `w(i) = w~(i)^gamma / sum_j w~(j)^gamma`, with `weights` `[B, H, N]` and `gamma >= 1` `[B, H]`.

    Computed as `softmax(gamma log w~)`, which is the same quantity, for two reasons. A plain `w~ ** gamma`
    underflows for a spread-out weighting and a large gamma (every term 0, then 0/0), while the softmax subtracts
    the largest term first. And at `w~(i) = 0` the derivative by gamma, `w~^gamma log w~`, is 0 * log(0) = NaN;
    raising the weights to the smallest normal number before the logarithm keeps every gradient finite (a zero
    weight then gets gradient 0, and its output stays 0 to within that number).
    """
    tiny = torch.finfo(weights.dtype).tiny
    return torch.softmax(gamma.unsqueeze(-1) * torch.log(weights.clamp_min(tiny)), dim=-1)


def address(
    memory: torch.Tensor,
    previous: torch.Tensor,
    keys: torch.Tensor,
    strength: torch.Tensor,
    gate: torch.Tensor,
    kernel: torch.Tensor,
    gamma: torch.Tensor,
    eps: float = COSINE_EPS,
) -> torch.Tensor:
    """The full addressing of section 3.3: `sharpen(shift(interpolate(content(M, k, beta), w_{t-1}, g), s), gamma)`.

    `memory` `[B, N, M]`, `previous` (w_{t-1}) `[B, H, N]`, `keys` `[B, H, M]`, `strength`, `gate` and `gamma`
    `[B, H]`, `kernel` `[B, H, S]`. Returns the new weightings `[B, H, N]`, each on the probability simplex.
    """
    content = content_weights(memory, keys, strength, eps)
    return sharpen(shift(interpolate(content, previous, gate), kernel), gamma)


def read(memory: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Reading: `r = sum_i w(i) M_i` for every head; `memory` `[B, N, M]`, `weights` `[B, R, N]` -> `[B, R, M]`."""
    return torch.bmm(weights, memory)


def write(memory: torch.Tensor, weights: torch.Tensor, erase: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
    """Writing, erase then add, for all write heads at once (paper, section 3.2):

        M~ = M * prod_h (1 - w_h e_h^T)
        M' = M~ + sum_h w_h a_h^T

    `memory` `[B, N, M]`, `weights` `[B, W, N]`, `erase` (in [0, 1]) and `add` `[B, W, M]`; returns `[B, N, M]`.
    Erasures multiply and additions sum, so the heads' order does not matter.
    """
    retain = torch.prod(1 - weights.unsqueeze(-1) * erase.unsqueeze(-2), dim=1)
    return torch.baddbmm(memory * retain, weights.transpose(1, 2), add)
