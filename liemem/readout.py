"""The output layer of the memory models: logits W_p h_t + sigmoid(c_t) * W_r r_t (the authors' `lantm.lua`
and `slantm.lua`), or W_p h_t + W_r r_t without the gate (their `ram.lua`).

The coefficient c_t = w_c . h_t lets the model turn the memory's contribution up or down per step; it is
computed together with W_p h_t in one layer. Neither feeds back into the recurrence, so a model calls this
once, after its time loop, on every answer step at once.
"""

from __future__ import annotations

import torch
from torch import nn


class Readout(nn.Module):
    """Logits from controller outputs `[..., hidden]` and read vectors `[..., width]`; `gated` adds the gate."""

    def __init__(self, hidden_size: int, read_size: int, vocab_size: int, gated: bool = True):
        super().__init__()
        self.gated = gated
        self.hidden = nn.Linear(hidden_size, vocab_size + int(gated))
        self.read = nn.Linear(read_size, vocab_size)

    def forward(self, hidden: torch.Tensor, reads: torch.Tensor) -> torch.Tensor:
        """Logits `[..., vocab_size]`."""
        out = self.hidden(hidden)
        if not self.gated:
            return out + self.read(reads)
        return out[..., :-1] + torch.sigmoid(out[..., -1:]) * self.read(reads)
