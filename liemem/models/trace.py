"""What a memory model's heads did over one batch, in one form for every model with an external memory.

`SequenceModel.access_trace` returns an `AccessTrace`; the Lie-access machines, RAM, RAM/tape and the NTM
implement it, so a read-weight heatmap or a write pattern is drawn the same way for all of them.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class AccessTrace(NamedTuple):
    """Every step's read and write weightings over the memory's slots.

    Steps run over the whole stream: `input_length` input steps, then the answer steps. Slots are those of the
    memory at the end of the input; an append-only memory's slots not yet written at a step have weight 0 there.
    """

    logits: torch.Tensor  # [B, answer_length, V]
    read_weights: torch.Tensor  # [B, steps, read_heads, slots]
    write_weights: torch.Tensor  # [B, steps, write_heads, slots]
    input_length: int

    @property
    def answer_read_weights(self) -> torch.Tensor:
        """Read weights of the answer steps, `[B, answer_length, read_heads, slots]`."""
        return self.read_weights[:, self.input_length :]


def pad_slots(weights: list[torch.Tensor], slots: int) -> torch.Tensor:
    """Stack per-step weights `[B, heads, n_t]` of a growing memory into `[B, steps, heads, slots]`, zero-padded."""
    padded = [torch.nn.functional.pad(w, (0, slots - w.shape[-1])) for w in weights]
    return torch.stack(padded, dim=1)


def appended_slots(
    reference: torch.Tensor, input_length: int, answer_length: int, initial_slots: int = 1
) -> torch.Tensor:
    """Write weights of a memory that appends one slot per input step after `initial_slots` learned ones: input
    step t writes slot t + initial_slots, answer steps write nothing. Shape
    `[B, steps, 1, initial_slots + input_length]`."""
    batch, slots = reference.shape[0], initial_slots + input_length
    eye = torch.eye(slots, dtype=reference.dtype, device=reference.device)
    writes = torch.cat((eye[initial_slots:], eye.new_zeros(answer_length, slots)))
    return writes.expand(batch, -1, -1).unsqueeze(2)
