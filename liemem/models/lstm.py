"""The LSTM encoder-decoder baseline: no external memory, 1 to 4 layers of 256 cells (paper, section 5).

There is no feedback from outputs to inputs (no teacher forcing), so the whole stream, inputs then the
separator at every answer step, runs through one `nn.LSTM` call.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from ..config import INIT_SCHEMES, require_choice, require_int
from .base import SequenceModel, initialize_layers


@dataclasses.dataclass(frozen=True)
class LSTMConfig:
    """Hyperparameters of the baseline; the embedding of 128 follows the paper's table A.1."""

    hidden_size: int = 256
    layers: int = 1
    embedding_size: int = 128
    init: str = "default"

    def validate(self) -> None:
        """Raise `ConfigError` naming the first field with an invalid value."""
        require_int("LSTMConfig", "hidden_size", self.hidden_size)
        require_int("LSTMConfig", "layers", self.layers, maximum=4)
        require_int("LSTMConfig", "embedding_size", self.embedding_size)
        require_choice("LSTMConfig", "init", self.init, INIT_SCHEMES)


class EncoderDecoderLSTM(SequenceModel):
    """Embedding, a stacked LSTM over the stream from a learned initial state, and a linear output layer."""

    config_class = LSTMConfig

    def __init__(self, vocab_size: int, config: LSTMConfig | None = None):
        super().__init__(vocab_size, LSTMConfig() if config is None else config)
        config = self.config
        self.embedding = nn.Embedding(vocab_size, config.embedding_size)
        self.lstm = nn.LSTM(config.embedding_size, config.hidden_size, config.layers)
        self.output = nn.Linear(config.hidden_size, vocab_size)
        self.initial_hidden = nn.Parameter(torch.empty(config.layers, config.hidden_size))
        self.initial_cell = nn.Parameter(torch.empty(config.layers, config.hidden_size))
        self.reset_parameters(config.init)

    def reset_parameters(self, scheme: str = "default") -> None:
        """Initialise as the authors' code does (`layers/lstm.lua`, `train.lua`'s `reinit_params`).

        'default': each of a layer's two linear maps uniform in +-1/sqrt(fan_in), weights and bias (the first
        layer's input map has the embedding's width as fan-in), with no forget-gate offset. 'uniform': every
        parameter uniform in [-1, 1], then both forget-gate biases of each layer set to 1 (summing to 2). The
        learned initial state starts uniform in [-1, 1] either way.
        """
        initialize_layers((self.embedding, self.output), scheme)
        size = self.config.hidden_size
        with torch.no_grad():
            for layer in range(self.config.layers):
                fan_ins = {"ih": self.config.embedding_size if layer == 0 else size, "hh": size}
                for kind, fan_in in fan_ins.items():
                    bound = 1.0 / math.sqrt(fan_in) if scheme == "default" else 1.0
                    getattr(self.lstm, f"weight_{kind}_l{layer}").uniform_(-bound, bound)
                    bias = getattr(self.lstm, f"bias_{kind}_l{layer}")
                    bias.uniform_(-bound, bound)
                    if scheme == "uniform":
                        bias[size : 2 * size] = 1.0
            self.initial_hidden.uniform_(-1.0, 1.0)
            self.initial_cell.uniform_(-1.0, 1.0)

    def _forward(self, stream, input_length, answer_length):
        batch = stream.shape[1]
        start = tuple(
            s.unsqueeze(1).expand(-1, batch, -1).contiguous() for s in (self.initial_hidden, self.initial_cell)
        )
        hidden, _ = self.lstm(self.embedding(stream), start)
        return self.output(hidden[input_length:]).transpose(0, 1)

    def extra_repr(self) -> str:
        return f"vocab_size={self.vocab_size}, layers={self.config.layers}"
