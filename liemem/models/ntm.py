"""The Neural Turing Machine (Graves et al. 2014): a controller with read and write heads on an N x M memory.

Each step, the controller sees `[embed(x_t); r_{t-1}]`, where `r_{t-1}` holds every read head's previous read
vector. One linear layer of its output `h_t` gives every head's addressing parameters, and each write head's
erase and add vectors; the heads then address the memory (`ntm_addressing.address`), the read heads read the
memory as it was before this step's write, and the write heads write. The logits are `Linear([h_t; r_t])`.

Heads are an axis of the tensors, not a Python loop, and read and write heads share one addressing call. The
memory starts as a small constant (Collier & Beel 2018 found this converges about twice as fast as the next
best scheme they tried); the initial read vectors and head weightings are learned.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..config import INIT_SCHEMES, require_choice, require_controller_fields, require_float, require_int
from ..controller import Controller
from . import ntm_addressing as addressing
from .base import SequenceModel, initialize_layers
from .trace import AccessTrace

__all__ = ["NTMConfig", "NeuralTuringMachine"]

# The initial weightings' logits: slot 0 gets this much more than any other slot, so each head starts on slot 0
# (weight about 1 - (N - 1) e^-10) while the softmax is not so saturated that the logits stop learning.
INITIAL_FOCUS = 10.0


@dataclasses.dataclass(frozen=True)
class NTMConfig:
    """Sizes and options of a `NeuralTuringMachine`.

    `shift_range` r gives a shift kernel over the offsets -r..+r (r = 1: the paper's {-1, 0, +1}). `memory_init`
    is the constant every memory cell starts at. `init` is 'default' (PyTorch's initialisation) or 'uniform'
    (every layer's weights and biases uniform in [-1, 1], as in the Lie-access paper's grid); the forget-gate bias
    starts at 1 under both.
    """

    controller_size: int = 100
    controller_layers: int = 1
    controller: str = "lstm"
    embedding_size: int = 14
    memory_slots: int = 128
    memory_width: int = 20
    read_heads: int = 1
    write_heads: int = 1
    shift_range: int = 1
    memory_init: float = 1e-6
    init: str = "default"

    def validate(self) -> None:
        """Raise `ConfigError`, naming the field, for a value the model cannot be built with."""
        owner = type(self).__name__
        require_controller_fields(owner, self)
        require_int(owner, "memory_slots", self.memory_slots)
        require_int(owner, "read_heads", self.read_heads)
        require_int(owner, "write_heads", self.write_heads)
        # Offsets beyond half the memory would wrap onto the other side's offsets and duplicate them.
        require_int(owner, "shift_range", self.shift_range, minimum=0, maximum=(self.memory_slots - 1) // 2)
        require_float(owner, "memory_init", self.memory_init)

    @property
    def shift_size(self) -> int:
        """The shift kernel's length, `2 * shift_range + 1`."""
        return 2 * self.shift_range + 1


class NeuralTuringMachine(SequenceModel):
    """A Neural Turing Machine following the `SequenceModel` protocol.

    Parameters: the symbol embedding (`vocab_size` rows), the
    controller, the fused head layer `heads`, the output layer, the initial read vectors `[R, M]` and the logits
    of the initial weightings `[R + W, N]` (read heads first). The memory itself is not a parameter.
    """

    config_class = NTMConfig
    has_memory = True

    def __init__(self, vocab_size: int, config: NTMConfig | None = None):
        super().__init__(vocab_size, NTMConfig() if config is None else config)
        config = self.config
        reads, width = config.read_heads, config.memory_width
        self.embedding = nn.Embedding(vocab_size, config.embedding_size)
        self.controller = Controller(
            config.embedding_size, reads * width, config.controller_size, config.controller_layers, config.controller
        )
        # Per head: key (M), strength, gate, shift kernel (S), gamma; per write head also erase (M) and add (M).
        self._address_size = width + config.shift_size + 3
        heads = reads + config.write_heads
        self.heads = nn.Linear(config.controller_size, heads * self._address_size + config.write_heads * 2 * width)
        self.output = nn.Linear(config.controller_size + reads * width, vocab_size)
        self.initial_reads = nn.Parameter(torch.empty(reads, width))
        self.initial_weight_logits = nn.Parameter(torch.empty(heads, config.memory_slots))
        self.reset_parameters(config.init)

    def reset_parameters(self, scheme: str = "default") -> None:
        """Initialise layers by `scheme` ('default' or 'uniform' in [-1, 1]; see `NTMConfig`).

        The initial reads start as what any read of the constant initial memory returns, and every head's initial
        weighting starts on slot 0.
        """
        require_choice(type(self).__name__, "init", scheme, INIT_SCHEMES)
        self.controller.reset_parameters(scheme)
        initialize_layers((self.embedding, self.heads, self.output), scheme)
        with torch.no_grad():
            self.initial_reads.fill_(self.config.memory_init)
            self.initial_weight_logits.zero_()
            self.initial_weight_logits[:, 0] = INITIAL_FOCUS

    def _forward(self, stream: torch.Tensor, input_length: int, answer_length: int) -> torch.Tensor:
        """Run every step of `stream` (`[input_length + answer_length, batch]`); logits of the answer steps."""
        return self._run(stream, input_length)

    def access_trace(self, inputs: torch.Tensor, answer_length: int) -> AccessTrace:
        """Every step's read and write weightings over the memory's slots."""
        answer_length = self.check_inputs(inputs, answer_length)
        weights = []
        logits = self._run(self.stream(inputs, answer_length), self.input_steps(inputs), weights)
        weights = torch.stack(weights, dim=1)  # [B, steps, heads, slots]
        reads = self.config.read_heads
        return AccessTrace(logits, weights[:, :, :reads], weights[:, :, reads:], self.input_steps(inputs))

    def _run(self, stream: torch.Tensor, input_length: int, record: list | None = None) -> torch.Tensor:
        config = self.config
        steps, batch = stream.shape
        reads, writes, width = config.read_heads, config.write_heads, config.memory_width
        heads = reads + writes
        address_split = [width, 1, 1, config.shift_size, 1]

        # unbind, not projected[t]: each slice's backward would fill a zero tensor the size of the whole stream
        projected = self.controller.project_inputs(self.embedding(stream)).unbind(0)
        state = self.controller.initial_state(batch)
        read = self.initial_reads.reshape(1, reads * width).expand(batch, -1)
        weights = torch.softmax(self.initial_weight_logits, dim=-1).expand(batch, -1, -1)
        # A constant, not a parameter: built from a parameter so that it follows the model's device and dtype.
        memory = self.initial_weight_logits.new_full((batch, config.memory_slots, width), config.memory_init)

        hiddens, answer_reads = [], []
        for t in range(steps):
            hidden, state = self.controller.step(projected[t], read, state)
            params = self.heads(hidden)
            key, strength, gate, kernel, gamma = (
                params[:, : heads * self._address_size].view(batch, heads, -1).split(address_split, dim=-1)
            )
            weights = addressing.address(
                memory,
                weights,
                key,
                nn.functional.softplus(strength.squeeze(-1)),
                torch.sigmoid(gate.squeeze(-1)),
                torch.softmax(kernel, dim=-1),
                1 + nn.functional.softplus(gamma.squeeze(-1)),
            )
            if record is not None:
                record.append(weights)
            # Reads see the memory before this step's write, as the write heads' own addressing did.
            read = addressing.read(memory, weights[:, :reads]).reshape(batch, reads * width)
            erase, add = params[:, heads * self._address_size :].view(batch, writes, 2 * width).chunk(2, dim=-1)
            memory = addressing.write(memory, weights[:, reads:], torch.sigmoid(erase), torch.tanh(add))
            if t >= input_length:
                hiddens.append(hidden)
                answer_reads.append(read)

        # One output product for all answer steps instead of one per step.
        features = torch.cat((torch.stack(hiddens), torch.stack(answer_reads)), dim=-1)
        return self.output(features).transpose(0, 1)

    def extra_repr(self) -> str:
        config = self.config
        return (
            f"{super().extra_repr()}, memory={config.memory_slots}x{config.memory_width}, "
            f"read_heads={config.read_heads}, write_heads={config.write_heads}, shift_range={config.shift_range}"
        )
