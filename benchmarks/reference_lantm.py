"""A straightforward LANTM, written the way a first reader of the paper would write it.

Two uses: it is the baseline of the speed benchmark (`benchmarks/models.py`), showing what the models in
`liemem` gain over the obvious implementation, and it is a readable statement of the model of Yang & Rush,
"Lie-Access Neural Turing Machines" (ICLR 2017), sections 4.1-4.3: key space R^2, heads moved by bounded
translations after interpolating with a random-access key, inverse-square reads, one memory slot appended per
input step. Where the paper leaves a choice open it follows the authors' Lua code (harvardnlp/lie-access-memory).

Every time step runs one `LSTMCell`, a separate small `Linear` per controller output, and grows the memory with
`torch.cat`. Nothing here is fused, batched over time or otherwise optimised, on purpose.

    model = ReferenceLANTM(vocab_size=130)
    logits = model(inputs, answer_length)  # inputs [batch, input_length] -> [batch, answer_length, 130]
"""

from __future__ import annotations

import torch
from torch import nn

EMBEDDING_SIZE = 14
HIDDEN_SIZE = 50
VALUE_SIZE = 20
KEY_SIZE = 2
DISTANCE_EPS = 1e-10
WEIGHT_FLOOR = 1e-9
WRITE_GATE_BIAS = -10.0
INITIAL_STRENGTH_OFFSET = -10.0


def bounded_action(raw: torch.Tensor) -> torch.Tensor:
    """Translation a / sqrt(1 + |a|^2), so every step moves a head by less than 1."""
    return raw / torch.sqrt(1 + (raw**2).sum(dim=-1, keepdim=True))


def move_head(head: torch.Tensor, action: torch.Tensor, gate: torch.Tensor, random_key: torch.Tensor) -> torch.Tensor:
    """q' = a + (g * k_random + (1 - g) * q): interpolate with the random-access key, then translate."""
    return action + (gate * random_key + (1 - gate) * head)


def inverse_square_weights(head: torch.Tensor, keys: torch.Tensor, strengths: torch.Tensor) -> torch.Tensor:
    """Read weights w_i proportional to s_i / |q - k_i|^2, L1-normalised over the slots.

    Shapes: head [batch, key], keys [batch, slots, key], strengths [batch, slots] -> weights [batch, slots].
    """
    squared_distances = ((head.unsqueeze(1) - keys) ** 2).sum(dim=-1)
    nearest = squared_distances.min(dim=1, keepdim=True).values
    # Scaling by the nearest distance keeps every ratio at most 1, so a head sitting on a key gives that slot a
    # finite weight and finite gradients instead of 1 / eps.
    ratios = (nearest + DISTANCE_EPS) / (squared_distances + DISTANCE_EPS)
    weights = strengths * ratios + WEIGHT_FLOOR
    return weights / weights.sum(dim=1, keepdim=True)


def read_memory(head: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, strengths: torch.Tensor) -> torch.Tensor:
    """r = sum_i w_i v_i with inverse-square weights; values [batch, slots, value] -> r [batch, value]."""
    weights = inverse_square_weights(head, keys, strengths)
    return (weights.unsqueeze(-1) * values).sum(dim=1)


class ReferenceLANTM(nn.Module):
    """LANTM with key space R^2, translation actions and inverse-square reads, one time step at a time.

    `forward(inputs, answer_length)`: token ids `[batch, input_length]` in `[0, vocab_size)` give logits
    `[batch, answer_length, vocab_size]`. The controller reads every input token but the last, then sees the
    last one (the separator) at each of the `answer_length` answer steps; memory is written during the input
    steps only. The initial read vector and slot value are the tanh of learned vectors.
    """

    def __init__(self, vocab_size: int):
        super().__init__()
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, EMBEDDING_SIZE)
        self.lstm = nn.LSTMCell(EMBEDDING_SIZE + VALUE_SIZE, HIDDEN_SIZE)

        self.read_random_key = nn.Linear(HIDDEN_SIZE, KEY_SIZE)
        self.write_random_key = nn.Linear(HIDDEN_SIZE, KEY_SIZE)
        self.read_action = nn.Linear(HIDDEN_SIZE, KEY_SIZE)
        self.write_action = nn.Linear(HIDDEN_SIZE, KEY_SIZE)
        self.read_gate = nn.Linear(HIDDEN_SIZE, 1)
        self.write_gate = nn.Linear(HIDDEN_SIZE, 1)
        self.write_value = nn.Linear(HIDDEN_SIZE, VALUE_SIZE)
        self.write_strength = nn.Linear(HIDDEN_SIZE, 1)
        self.output_coefficient = nn.Linear(HIDDEN_SIZE, 1)
        self.output_from_hidden = nn.Linear(HIDDEN_SIZE, vocab_size)
        self.output_from_read = nn.Linear(VALUE_SIZE, vocab_size)

        # The write head starts by following its own trail rather than jumping to random-access keys.
        nn.init.constant_(self.write_gate.bias, WRITE_GATE_BIAS)
        nn.init.zeros_(self.read_gate.bias)

        self.initial_hidden = nn.Parameter(torch.zeros(HIDDEN_SIZE))
        self.initial_cell = nn.Parameter(torch.zeros(HIDDEN_SIZE))
        self.initial_read = nn.Parameter(torch.zeros(VALUE_SIZE))
        self.initial_read_head = nn.Parameter(torch.zeros(KEY_SIZE))
        self.initial_write_head = nn.Parameter(torch.zeros(KEY_SIZE))
        # One learned slot keeps the memory non-empty; its strength starts near 0 so it barely disturbs reads.
        self.initial_key = nn.Parameter(torch.zeros(KEY_SIZE))
        self.initial_value = nn.Parameter(torch.zeros(VALUE_SIZE))
        self.initial_strength = nn.Parameter(torch.zeros(1))

    def forward(self, inputs: torch.Tensor, answer_length: int) -> torch.Tensor:
        batch, input_length = inputs.shape[0], inputs.shape[1] - 1
        separators = inputs[:, -1:].expand(batch, answer_length)
        stream = torch.cat([inputs[:, :-1], separators], dim=1)

        hidden = self.initial_hidden.expand(batch, HIDDEN_SIZE)
        cell = self.initial_cell.expand(batch, HIDDEN_SIZE)
        read_vector = torch.tanh(self.initial_read).expand(batch, VALUE_SIZE)
        read_head = self.initial_read_head.expand(batch, KEY_SIZE)
        write_head = self.initial_write_head.expand(batch, KEY_SIZE)
        keys = self.initial_key.expand(batch, 1, KEY_SIZE)
        values = torch.tanh(self.initial_value).expand(batch, 1, VALUE_SIZE)
        strengths = torch.sigmoid(self.initial_strength + INITIAL_STRENGTH_OFFSET).expand(batch, 1)

        logits = []
        for step in range(stream.shape[1]):
            symbol = self.embedding(stream[:, step])
            hidden, cell = self.lstm(torch.cat([symbol, read_vector], dim=-1), (hidden, cell))

            read_head = move_head(
                read_head,
                bounded_action(self.read_action(hidden)),
                torch.sigmoid(self.read_gate(hidden)),
                self.read_random_key(hidden),
            )
            # Read before this step's write: the slot written now is visible from the next step on.
            read_vector = read_memory(read_head, keys, values, strengths)

            if step < input_length:
                write_head = move_head(
                    write_head,
                    bounded_action(self.write_action(hidden)),
                    torch.sigmoid(self.write_gate(hidden)),
                    self.write_random_key(hidden),
                )
                keys = torch.cat([keys, write_head.unsqueeze(1)], dim=1)
                values = torch.cat([values, torch.tanh(self.write_value(hidden)).unsqueeze(1)], dim=1)
                strengths = torch.cat([strengths, torch.sigmoid(self.write_strength(hidden))], dim=1)
            else:
                coefficient = torch.sigmoid(self.output_coefficient(hidden))
                logits.append(self.output_from_hidden(hidden) + coefficient * self.output_from_read(read_vector))

        return torch.stack(logits, dim=1)

    def extra_repr(self) -> str:
        return f"vocab_size={self.vocab_size}"
