"""The protocol every liemem model follows: read the input stream, then answer without teacher forcing.

A model sees one stream per sample, as the authors' code feeds it (`fb.lua`): the input tokens up to the last,
then the last one (the task's separator) at each of `answer_length` answer steps. The separator's own step is
thus the first answer step: it predicts the first answer symbol and, like every answer step, writes nothing.
A model returns logits for the answer steps only; what it emits there is all that is scored (paper, section 5).
"""

from __future__ import annotations

import abc
import operator

import torch

from ..config import ConfigError
from .trace import AccessTrace

_NATIVE_TOKEN_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def initialize_layers(layers, scheme: str) -> None:
    """Initialise `layers` by `scheme`: 'default' is each layer's own `reset_parameters`; 'uniform' draws every
    parameter uniformly from [-1, 1] (the paper's table A.1)."""
    if scheme not in ("default", "uniform"):
        raise ValueError(f"unknown initialisation {scheme!r}; valid: 'default', 'uniform'")
    with torch.no_grad():
        for layer in layers:
            if scheme == "default":
                layer.reset_parameters()
                continue
            for parameter in layer.parameters():
                parameter.uniform_(-1.0, 1.0)


class SequenceModel(torch.nn.Module, abc.ABC):
    """Base class of the LANTM family and the baselines.

    `forward(inputs, answer_length)` takes token ids of shape `[batch, input_length]` (any integer dtype, values
    in `[0, vocab_size)`) and returns logits of shape `[batch, answer_length, vocab_size]` in the parameters'
    dtype, on their device. The last input token begins the answer phase and is its input at every answer step
    (see `stream`). Subclasses implement `_forward` on time-major token ids.
    """

    config_class: type  # the dataclass of the subclass's hyperparameters, with a `validate()` method
    has_memory: bool = False  # whether `access_trace` is implemented

    def __init__(self, vocab_size: int, config):
        super().__init__()
        name = type(self).__name__
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < 2:
            raise ValueError(f"{name}: vocab_size must be an integer >= 2, got {vocab_size!r}")
        if not isinstance(config, self.config_class):
            raise ConfigError(f"{name}: config must be a {self.config_class.__name__}, got {type(config).__name__}")
        config.validate()
        self.vocab_size = vocab_size
        self.config = config

    def forward(self, inputs: torch.Tensor, answer_length: int) -> torch.Tensor:
        """Logits `[batch, answer_length, vocab_size]` for the answer steps after reading `inputs`."""
        answer_length = self.check_inputs(inputs, answer_length)
        stream = self.stream(inputs, answer_length)
        return self._forward(stream, self.input_steps(inputs), answer_length)

    @abc.abstractmethod
    def _forward(self, stream: torch.Tensor, input_length: int, answer_length: int) -> torch.Tensor:
        """Logits for the answer steps; `stream` is `[input_length + answer_length, batch]` token ids, of which
        the first `input_length` steps read the input (and write memory)."""

    def compile_steps(self) -> bool:
        """Compile per-step work for training forward passes where that pays (see `liemem.engine.compiling`); return
        whether anything was compiled. A trainer calls it once, before training; by default it does nothing."""
        return False

    def access_trace(self, inputs: torch.Tensor, answer_length: int) -> AccessTrace:
        """Run like `forward`, and also return every step's read and write weightings over memory slots."""
        raise TypeError(f"{type(self).__name__} has no external memory whose accesses could be traced")

    @staticmethod
    def input_steps(inputs: torch.Tensor) -> int:
        """How many steps of the stream read `inputs` before the answer phase: all tokens but the last."""
        return inputs.shape[1] - 1

    def stream(self, inputs: torch.Tensor, answer_length: int) -> torch.Tensor:
        """Time-major token ids: the inputs but the last, then the last one (the separator) `answer_length` times,
        as the authors' code feeds its separator during the answer phase (`blank_input_during_response`)."""
        tokens = inputs.t().long()
        return torch.cat((tokens[:-1], tokens[-1:].expand(answer_length, -1)), dim=0)

    def check_inputs(self, inputs: torch.Tensor, answer_length: int) -> int:
        """Raise `ValueError` for inputs that are not a batch of token ids of length 2 or more, or a non-positive
        answer length.

        Returns the answer length as an `int` (it may come as any integer, a NumPy one or a 0-d tensor).
        """
        name = type(self).__name__
        if not isinstance(inputs, torch.Tensor):
            raise ValueError(f"{name}: inputs must be a tensor of token ids, got {type(inputs).__name__}")
        if inputs.ndim != 2 or inputs.shape[0] == 0 or inputs.shape[1] < 2:
            raise ValueError(
                f"{name}: inputs must have shape [batch, length] with batch > 0 and length >= 2 (the input, then "
                f"the token that begins the answer phase), got {tuple(inputs.shape)}"
            )
        if inputs.is_floating_point() or inputs.is_complex() or inputs.dtype == torch.bool:
            raise ValueError(f"{name}: inputs must be integer token ids, got {inputs.dtype}")
        try:
            length = None if isinstance(answer_length, bool) else operator.index(answer_length)
        except TypeError:
            length = None
        if length is None or length < 1:
            raise ValueError(f"{name}: answer_length must be an integer >= 1, got {answer_length!r}")
        if inputs.device.type != "meta":
            # Widen first: aminmax has no kernels for the wider unsigned types.
            checked = inputs if inputs.dtype in _NATIVE_TOKEN_DTYPES else inputs.long()
            low, high = torch.stack(torch.aminmax(checked)).tolist()  # one reduction, one device sync
            if low < 0 or high >= self.vocab_size:
                raise ValueError(
                    f"{name}: token ids must lie in [0, {self.vocab_size}), got values from {low} to {high}"
                )
        return length

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the parameters, which the computation follows."""
        return next(self.parameters()).dtype

    def extra_repr(self) -> str:
        return f"vocab_size={self.vocab_size}"
