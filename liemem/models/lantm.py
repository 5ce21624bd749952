"""The Lie-access neural Turing machine (paper, section 4) for any Lie group and key space.

`LANTMConfig(group="translation")` with the inverse-square read is the paper's LANTM, `group="so3"` its
SLANTM, `weighting="softmax"` their "-s" variants; any registered group, a user's included, plugs in by name.
Details the paper leaves open follow the authors' code (see the README): the controller's input is
[embed(x_t); r_{t-1}], one linear layer of h_t gives every head and write parameter, the write head starts
out following its own trail (gate bias -10), and the logits are W_p h_t + sigmoid(c_t) * W_r r_t.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import torch
from torch import nn

import groups

from .. import engine, memory, weighting
from ..config import ConfigError, require_bool, require_choice, require_controller_fields, require_float
from ..controller import Controller
from ..engine.buffers import LoopInputs, controller_inputs
from ..heads import HeadState, LieHeads
from ..readout import Readout
from .base import SequenceModel, initialize_layers
from .trace import AccessTrace, appended_slots, pad_slots

READ, WRITE = 0, 1
# The write head's initial gate bias (its weight of random access is sigmoid(-10)): it starts out following its
# own trail, as in the authors' code. The read head's is `LANTMConfig.read_gate_bias`. Action gates, when on,
# start leaning toward the previous action.
WRITE_GATE_BIAS = -10.0
ACTION_GATE_BIAS = -1.0
# The initial memory slot's strength is sigmoid(b - 10) with b drawn from [-1, 1] (1.7e-5 to 1.2e-4): memory is
# never empty, but the first real write outweighs it.
INITIAL_STRENGTH_OFFSET = 10.0


@dataclasses.dataclass(frozen=True)
class LANTMConfig:
    """Hyperparameters of a Lie-access machine; the defaults are the paper's LANTM, but for the read head's
    initial gate (`read_gate_bias`; the paper's is 0)."""

    group: str = "translation"
    group_options: dict = dataclasses.field(default_factory=dict)
    weighting: str = "inverse_square"
    controller: str = "lstm"
    controller_size: int = 50
    controller_layers: int = 1
    embedding_size: int = 14
    memory_width: int = 20
    action_interpolation: bool = False
    init: str = "default"
    # The softmax read's temperature starts near this value (None: softplus of the layer's random bias, about
    # 0.69, as in the authors' code).
    initial_temperature: float | None = None
    # Added to the read head's random-access gate bias at initialisation. The authors' code adds 0, starting it
    # half way between random access and its own trail; -4 starts it on its trail (weight of random access
    # about 0.02), which tasks that read back what was just written need: over seeds 1-10 at 2-8 symbols,
    # LANTM extrapolates reverse in 9 runs against 0, and copy as often as at 0 (README, "Training reliably").
    read_gate_bias: float = -4.0

    def validate(self) -> None:
        """Raise `ConfigError` naming the first field with an invalid value."""
        owner = "LANTMConfig"
        if self.initial_temperature is not None:
            require_float(owner, "initial_temperature", self.initial_temperature, positive=True)
            if self.weighting != "softmax":
                raise ConfigError(f"{owner}: initial_temperature needs weighting='softmax', got {self.weighting!r}")
        require_float(owner, "read_gate_bias", self.read_gate_bias)
        require_choice(owner, "group", self.group, groups.names())
        if not isinstance(self.group_options, dict):
            raise ConfigError(f"{owner}: group_options must be a table of arguments, got {self.group_options!r}")
        require_choice(owner, "weighting", self.weighting, weighting.names())
        require_bool(owner, "action_interpolation", self.action_interpolation)
        require_controller_fields(owner, self)
        try:
            groups.get(self.group, **self.group_options)
        except (TypeError, ValueError) as error:
            raise ConfigError(
                f"{owner}: group_options {self.group_options!r} for group {self.group!r}: {error}"
            ) from None


class LieAccessTrace(NamedTuple):
    """What a forward pass did, for inspection: head positions per step, read weights, and the memory."""

    logits: torch.Tensor  # [B, answer_length, V]
    read_positions: torch.Tensor  # [B, T, key_dim], after each step's move
    write_positions: torch.Tensor  # [B, input_length, key_dim]
    read_weights: list[torch.Tensor]  # per step, [B, slots at that step]
    keys: torch.Tensor  # [B, 1 + input_length, key_dim]; slot 0 is the learned initial slot
    values: torch.Tensor  # [B, 1 + input_length, memory_width]
    strengths: torch.Tensor  # [B, 1 + input_length]

    def access_trace(self) -> AccessTrace:
        """The read and write weightings per step over the memory's slots, in the form every memory model gives
        (slot 0 is the initial slot; input step t writes slot t + 1)."""
        input_length = self.write_positions.shape[1]
        reads = pad_slots([weights.unsqueeze(1) for weights in self.read_weights], input_length + 1)
        writes = appended_slots(reads, input_length, reads.shape[1] - input_length)
        return AccessTrace(self.logits, reads, writes, input_length)


class LieAccessMachine(engine.PlannedModel, SequenceModel):
    """An LSTM controller driving a read and a write head through `group`'s key space (paper, section 4)."""

    config_class = LANTMConfig
    has_memory = True

    def __init__(self, vocab_size: int, config: LANTMConfig | None = None):
        super().__init__(vocab_size, LANTMConfig() if config is None else config)
        config = self.config
        self.heads = LieHeads(groups.get(config.group, **config.group_options), config.action_interpolation)
        key_space = self.key_space
        width, hidden = config.memory_width, config.controller_size
        self.embedding = nn.Embedding(vocab_size, config.embedding_size)
        self.controller = Controller(config.embedding_size, width, hidden, config.controller_layers, config.controller)
        # Everything a step needs from h_t comes out of one matrix product, then is sliced.
        # Layout: both heads' raw outputs | the weighting's columns | write value | write strength.
        self.weighting = weighting.get(config.weighting)
        self._sizes = [2 * self.heads.raw_size, self.weighting.columns, width, 1]
        self.step_projection = nn.Linear(hidden, sum(self._sizes))
        self.readout = Readout(hidden, width, vocab_size)
        self.initial_positions = nn.Parameter(key_space.origin(2))
        self.initial_read = nn.Parameter(torch.zeros(width))
        self.initial_key = nn.Parameter(key_space.origin())
        self.initial_value = nn.Parameter(torch.zeros(width))
        self.initial_strength = nn.Parameter(torch.zeros(()))
        # How sequences run is the engine's plan (`plan`); `compile_steps` may compile parts of it.
        self._compiled_steps = None
        self.reset_parameters(config.init)

    @property
    def group(self) -> groups.LieGroup:
        """The Lie group moving the heads."""
        return self.heads.group

    @property
    def key_space(self):
        """The key space of memory and heads."""
        return self.heads.group.key_space

    def reset_parameters(self, scheme: str = "default") -> None:
        """Initialise layers by `scheme` ('default' or 'uniform' in [-1, 1]), then set the gate biases and
        draw the learned initial state uniformly from [-1, 1], as the authors' code does under either scheme
        (there, the initial state is the bias of a linear layer fed a zero). The head positions and the
        initial key are then projected onto the key space, and the initial read vector and slot value are
        squashed by tanh where they are used."""
        initialize_layers((self.embedding, self.step_projection, self.readout.hidden, self.readout.read), scheme)
        self.controller.reset_parameters(scheme)
        with torch.no_grad():
            # Offsets added to the layer's own initial bias, as the authors' code adds constants before the sigmoids.
            gate_biases = [float(self.config.read_gate_bias), WRITE_GATE_BIAS]
            head_bias = self.heads.initial_bias(gate_biases, ACTION_GATE_BIAS)
            self.step_projection.bias[: head_bias.numel()] += head_bias.flatten().to(self.step_projection.bias)
            if self.config.initial_temperature is not None:  # softmax's, by `validate`
                # softplus(b) = T at b = log(exp(T) - 1), added to the drawn bias as the gate offsets are.
                offset = math.log(math.expm1(self.config.initial_temperature))
                self.step_projection.bias[head_bias.numel()] += offset
            for parameter in self._initial_state():
                parameter.uniform_(-1.0, 1.0)

    def _initial_state(self) -> tuple[nn.Parameter, ...]:
        return (self.initial_positions, self.initial_read, self.initial_key, self.initial_value, self.initial_strength)

    def _forward(self, stream, input_length, answer_length):
        return self._run(stream, input_length, record=False).logits

    def trace(self, inputs: torch.Tensor, answer_length: int) -> LieAccessTrace:
        """Run like `forward`, and also return where the heads went and what memory held."""
        answer_length = self.check_inputs(inputs, answer_length)
        return self._run(self.stream(inputs, answer_length), self.input_steps(inputs), record=True)

    def access_trace(self, inputs: torch.Tensor, answer_length: int) -> AccessTrace:
        """Read weights per step over the memory's slots (slot 0 is the initial one; input step t writes slot
        t + 1), for drawing alongside other memory models'."""
        return self.trace(inputs, answer_length).access_trace()

    def compile_steps(self) -> bool:
        """Compile what the plan's training passes call, where that pays (`liemem.engine.compile_steps`)."""
        return engine.compile_steps(self)

    def __getstate__(self):
        # A compiled function neither copies nor pickles; a copy compiles its own with `compile_steps`.
        return {**self.__dict__, "_compiled_steps": None}

    def _run_engine(self, plan: engine.Plan, stream: torch.Tensor, input_length: int) -> torch.Tensor:
        batch = stream.shape[1]
        project = self.key_space.project
        inputs = LoopInputs(
            **controller_inputs(self, stream),
            positions=project(self.initial_positions).expand(batch, -1, -1),
            key=project(self.initial_key).expand(batch, -1),
            value=torch.tanh(self.initial_value).expand(batch, -1),
            strength=torch.sigmoid(self.initial_strength - INITIAL_STRENGTH_OFFSET).expand(batch),
        )
        answer_hidden, answer_reads = engine.run(self, plan, inputs, input_length)
        return self.readout(answer_hidden, answer_reads).transpose(0, 1)

    def _run(self, stream: torch.Tensor, input_length: int, record: bool):
        """The model, one step at a time in plain autograd: its definition, and the reference the engine's
        backends are tested against. Forward passes that record nothing run on the engine's plan instead."""
        if not record:
            plan = engine.plan_for(self, stream.device, self.step_projection.weight.dtype, torch.is_grad_enabled())
            if plan.backend != "autograd":
                return LieAccessTrace(self._run_engine(plan, stream, input_length), None, None, None, None, None, None)
        batch, steps = stream.shape[1], stream.shape[0]
        # unbind, not projected[t]: each slice's backward would fill a zero tensor the size of the whole stream
        projected = self.controller.project_inputs(self.embedding(stream)).unbind(0)
        state = self.controller.initial_state(batch)
        heads = self.heads.initial_state(self.initial_positions, batch)
        mem = memory.empty(batch, input_length + 1, self.key_space.dim, self.config.memory_width, projected[0])
        mem = memory.append(
            mem,
            self.key_space.project(self.initial_key).expand(batch, -1),
            torch.tanh(self.initial_value).expand(batch, -1),
            torch.sigmoid(self.initial_strength - INITIAL_STRENGTH_OFFSET).expand(batch),
        )
        read = torch.tanh(self.initial_read).expand(batch, -1)
        raw_size = self.heads.raw_size
        answer_hidden, answer_reads = [], []
        positions, weights = [], []
        for t in range(steps):
            writing = t < input_length
            if t == input_length:  # the answer phase moves the read head only
                heads = HeadState(heads.position[:, :1], heads.action[:, :1])
            hidden, state = self.controller.step(projected[t], read, state)
            raw, weighting_raw, value, strength = self.step_projection(hidden).split(self._sizes, dim=1)
            raw = raw.unflatten(1, (2, raw_size))
            heads = self.heads.move(raw if writing else raw[:, :1], heads)
            parameters = self.weighting.parameters(weighting_raw)
            result = memory.read_by_distance(mem, heads.position[:, :1], self.key_space, parameters, self.weighting)
            read = result.value.squeeze(1)
            if writing:
                strength = torch.sigmoid(strength.squeeze(1))
                mem = memory.append(mem, heads.position[:, WRITE], torch.tanh(value), strength)
            else:
                answer_hidden.append(hidden)
                answer_reads.append(read)
            if record:
                positions.append(heads.position.detach())
                weights.append(result.weights.squeeze(1))
        logits = self.readout(torch.stack(answer_hidden), torch.stack(answer_reads)).transpose(0, 1)
        if not record:
            return LieAccessTrace(logits, None, None, None, None, None, None)
        tape = mem.tape
        return LieAccessTrace(
            logits=logits,
            read_positions=torch.stack([p[:, READ] for p in positions], dim=1),
            write_positions=torch.stack([p[:, WRITE] for p in positions[:input_length]], dim=1),
            read_weights=weights,
            keys=tape.contents(mem.size)[0].clone(),
            values=tape.contents(mem.size)[1].clone(),
            strengths=tape.contents(mem.size)[2].clone(),
        )

    def extra_repr(self) -> str:
        c = self.config
        plan = self.plan_description()
        return f"vocab_size={self.vocab_size}, group={c.group!r}, weighting={c.weighting!r}, engine={plan!r}"
