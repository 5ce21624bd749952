"""The random-access memory baselines of the paper: RAM (section 2) and RAM/tape (appendix A).

Both append one slot (write key, tanh value, sigmoid strength) per input step, like the LANTM, and read by
w_i proportional to s_i exp(<q, k_i>). RAM/tape also offers the controller the keys one slot to the left
and right of where it last read, k_L = sum_i w_{i+1} k_i and k_R = sum_i w_{i-1} k_i, and reads at a
softmax-weighted mix of those and its random-access key. It may sharpen its weights as the authors' code does
(`ram.lua`, `_get_read_weights`): w_i proportional to s_i exp(gamma <q, k_i>), gamma = 1 + softplus(.), which
sharpens the content scores but not the strengths. As there, the read enters the logits ungated:
W_p h + W_r r, and RAM/tape starts from two learned slots, so that the neighbour keys it is offered at its first
steps are learned too (`options.get_opt` raises `init_mem_length` to 2 with the tape).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from .. import engine, memory, weighting
from ..config import require_bool, require_controller_fields, require_int
from ..controller import Controller
from ..engine import content
from ..engine.buffers import controller_inputs
from ..readout import Readout
from .base import SequenceModel, initialize_layers
from .trace import AccessTrace, appended_slots, pad_slots

INITIAL_STRENGTH_OFFSET = 10.0


@dataclasses.dataclass(frozen=True)
class RAMConfig:
    """Hyperparameters of RAM and RAM/tape (paper, table A.1: key dimension 2 or 20)."""

    tape: bool = False
    sharpening: bool = False
    key_dim: int = 20
    controller: str = "lstm"
    controller_size: int = 50
    controller_layers: int = 1
    embedding_size: int = 14
    memory_width: int = 20
    init: str = "default"

    def validate(self) -> None:
        """Raise `ConfigError` naming the first field with an invalid value."""
        owner = "RAMConfig"
        require_bool(owner, "tape", self.tape)
        require_bool(owner, "sharpening", self.sharpening)
        require_int(owner, "key_dim", self.key_dim)
        require_controller_fields(owner, self)


class RandomAccessMachine(engine.PlannedModel, SequenceModel):
    """An LSTM controller with an append-only key-value memory read by content-free attention."""

    config_class = RAMConfig
    has_memory = True
    recurrence = "content"  # how `liemem.engine` runs it (`engine.content`)

    def __init__(self, vocab_size: int, config: RAMConfig | None = None):
        super().__init__(vocab_size, RAMConfig() if config is None else config)
        config = self.config
        key_dim, width, hidden = config.key_dim, config.memory_width, config.controller_size
        self.embedding = nn.Embedding(vocab_size, config.embedding_size)
        self.controller = Controller(config.embedding_size, width, hidden, config.controller_layers, config.controller)
        # Layout of the step projection: read key | write key | [3 tape choices] | [gamma] | value | strength.
        offset = 2 * key_dim
        self._choice = slice(offset, offset + 3) if config.tape else None
        offset += 3 * int(config.tape)
        self._gamma = offset if config.sharpening else None
        offset += int(config.sharpening)
        self._value = slice(offset, offset + width)
        self._strength = offset + width
        self.step_projection = nn.Linear(hidden, self._strength + 1)
        self.readout = Readout(hidden, width, vocab_size, gated=False)
        self.initial_read = nn.Parameter(torch.zeros(width))
        # With one slot the tape would have no neighbours to offer: its first step's left and right keys would be
        # empty sums, and the learned keys it reads at that step would never receive a gradient.
        self.initial_slots = 2 if config.tape else 1
        # Plain RAM keeps its one slot's parameters unbatched, so that its earlier checkpoints still load.
        slots = (self.initial_slots,) if config.tape else ()
        self.initial_key = nn.Parameter(torch.zeros(*slots, key_dim))
        self.initial_value = nn.Parameter(torch.zeros(*slots, width))
        self.initial_strength = nn.Parameter(torch.zeros(slots))
        self.initial_neighbours = nn.Parameter(torch.zeros(2, key_dim)) if config.tape else None
        self.reset_parameters(config.init)

    def reset_parameters(self, scheme: str = "default") -> None:
        """Initialise layers by `scheme` ('default' or 'uniform' in [-1, 1]); the learned initial state starts
        uniform in [-1, 1] either way, as in the authors' code (the initial read vector and slot value are
        squashed by tanh where they are used)."""
        initialize_layers((self.embedding, self.step_projection, self.readout.hidden, self.readout.read), scheme)
        self.controller.reset_parameters(scheme)
        with torch.no_grad():
            for parameter in (self.initial_read, self.initial_key, self.initial_value, self.initial_strength):
                parameter.uniform_(-1.0, 1.0)
            if self.initial_neighbours is not None:
                self.initial_neighbours.uniform_(-1.0, 1.0)

    def _weigh(self, query, keys, strengths, *gamma):
        scores = torch.matmul(query, keys.transpose(1, 2))
        return weighting.exp_dot(gamma[0] * scores if gamma else scores, strengths.unsqueeze(1))

    def _forward(self, stream, input_length, answer_length):
        plan = engine.plan_for(self, stream.device, self.step_projection.weight.dtype, torch.is_grad_enabled())
        if plan.backend != "autograd":
            return self._run_engine(plan, stream, input_length)
        return self._run(stream, input_length)

    def _run_engine(self, plan: engine.Plan, stream: torch.Tensor, input_length: int) -> torch.Tensor:
        batch, config, slots = stream.shape[1], self.config, self.initial_slots
        key_dim, width = config.key_dim, config.memory_width
        neighbours = self.initial_neighbours
        inputs = content.ContentInputs(
            **controller_inputs(self, stream),
            keys=self.initial_key.reshape(slots, key_dim).expand(batch, -1, -1),
            values=torch.tanh(self.initial_value).reshape(slots, width).expand(batch, -1, -1),
            strengths=torch.sigmoid(self.initial_strength - INITIAL_STRENGTH_OFFSET).reshape(slots).expand(batch, -1),
            neighbours=(
                self.initial_read.new_zeros(batch, 2, key_dim)
                if neighbours is None
                else neighbours.expand(batch, -1, -1)
            ),
        )
        layout = content.Layout(
            key_dim=key_dim,
            choice=self._choice.start if self._choice is not None else -1,
            gamma=self._gamma if self._gamma is not None else -1,
            value=self._value.start,
            strength=self._strength,
        )
        answer_hidden, answer_reads = content.run(plan, inputs, layout, input_length)
        return self.readout(answer_hidden, answer_reads).transpose(0, 1)

    def access_trace(self, inputs: torch.Tensor, answer_length: int) -> AccessTrace:
        """Read weights per step over the memory's slots: the initial slots first (one, two for RAM/tape), then
        the slot written at each input step."""
        answer_length = self.check_inputs(inputs, answer_length)
        weights, steps = [], self.input_steps(inputs)
        logits = self._run(self.stream(inputs, answer_length), steps, weights)
        reads = pad_slots(weights, steps + self.initial_slots)
        writes = appended_slots(reads, steps, answer_length, self.initial_slots)
        return AccessTrace(logits, reads, writes, steps)

    def _run(self, stream, input_length, record: list | None = None):
        """The model, one step at a time in plain autograd: its definition, and the reference `engine.content` is
        tested against."""
        batch, config = stream.shape[1], self.config
        # unbind, not projected[t]: each slice's backward would fill a zero tensor the size of the whole stream
        projected = self.controller.project_inputs(self.embedding(stream)).unbind(0)
        state = self.controller.initial_state(batch)
        slots = self.initial_slots
        mem = memory.empty(batch, input_length + slots, config.key_dim, config.memory_width, projected[0])
        initial = zip(
            self.initial_key.reshape(slots, -1),
            torch.tanh(self.initial_value).reshape(slots, -1),
            torch.sigmoid(self.initial_strength - INITIAL_STRENGTH_OFFSET).reshape(slots),
            strict=True,
        )
        for key, value, strength in initial:
            mem = memory.append(mem, key.expand(batch, -1), value.expand(batch, -1), strength.expand(batch))
        read = torch.tanh(self.initial_read).expand(batch, -1)
        neighbours = None if self.initial_neighbours is None else self.initial_neighbours.expand(batch, -1, -1)
        key_dim = config.key_dim
        answer_hidden, answer_reads = [], []
        for t in range(stream.shape[0]):
            hidden, state = self.controller.step(projected[t], read, state)
            out = self.step_projection(hidden)
            query = out[:, :key_dim]
            if neighbours is not None:
                candidates = torch.cat((query.unsqueeze(1), neighbours), dim=1)  # [B, 3, key_dim]
                choice = torch.softmax(out[:, self._choice], dim=-1)
                query = torch.matmul(choice.unsqueeze(1), candidates).squeeze(1)
            params = () if self._gamma is None else (1 + nn.functional.softplus(out[:, self._gamma, None, None]),)
            result = memory.read(mem, query.unsqueeze(1), self._weigh, params, shifted_keys=config.tape)
            read = result.value.squeeze(1)
            if record is not None:
                record.append(result.weights)
            if neighbours is not None:
                neighbours = torch.cat((result.left_key, result.right_key), dim=1)
            if t < input_length:
                value, strength = torch.tanh(out[:, self._value]), torch.sigmoid(out[:, self._strength])
                mem = memory.append(mem, out[:, key_dim : 2 * key_dim], value, strength)
            else:
                answer_hidden.append(hidden)
                answer_reads.append(read)
        return self.readout(torch.stack(answer_hidden), torch.stack(answer_reads)).transpose(0, 1)

    def extra_repr(self) -> str:
        c = self.config
        text = f"vocab_size={self.vocab_size}, tape={c.tape}, sharpening={c.sharpening}, key_dim={c.key_dim}"
        return f"{text}, engine={self.plan_description()!r}"
