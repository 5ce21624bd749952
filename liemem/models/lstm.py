"""The LSTM encoder-decoder baseline: no external memory, 1 to 4 layers of 256 cells (paper, section 5).

There is no feedback from outputs to inputs (no teacher forcing), so the whole stream, inputs then
placeholders, runs through one `nn.LSTM` call.
"""

from __future__ import annotations

import dataclasses

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
    """Embedding, a stacked LSTM over inputs and answer placeholders, and a linear output layer."""

    config_class = LSTMConfig

    def __init__(self, vocab_size: int, config: LSTMConfig | None = None):
        super().__init__(vocab_size, LSTMConfig() if config is None else config)
        config = self.config
        self.embedding = nn.Embedding(vocab_size + 1, config.embedding_size)
        self.lstm = nn.LSTM(config.embedding_size, config.hidden_size, config.layers)
        self.output = nn.Linear(config.hidden_size, vocab_size)
        self.reset_parameters(config.init)

    def reset_parameters(self, scheme: str = "default") -> None:
        """'default' (torch's) or 'uniform' in [-1, 1]; either way the forget-gate bias sums to 1."""
        initialize_layers((self.embedding, self.lstm, self.output), scheme)
        with torch.no_grad():
            size = self.config.hidden_size
            for layer in range(self.config.layers):
                getattr(self.lstm, f"bias_ih_l{layer}")[size : 2 * size] = 1.0
                getattr(self.lstm, f"bias_hh_l{layer}")[size : 2 * size] = 0.0

    def _forward(self, stream, input_length, answer_length):
        hidden, _ = self.lstm(self.embedding(stream))
        return self.output(hidden[input_length:]).transpose(0, 1)

    def extra_repr(self) -> str:
        return f"vocab_size={self.vocab_size}, layers={self.config.layers}"
