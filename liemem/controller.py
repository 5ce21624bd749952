"""The controller of a memory model: an LSTM (or one feed-forward layer) fed `[embed(x_t); r_{t-1}]`.

The part of the first layer's pre-activation that depends on the input symbols is computed for the whole
stream in one matrix product (`project_inputs`), so a time step only multiplies what the recurrence feeds
back: the previous read vector and hidden state.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from .config import CONTROLLER_KINDS, INIT_SCHEMES, require_choice, require_int
from .engine.cells import lstm_cell


class ControllerState(NamedTuple):
    """Hidden and cell states, one `[batch, hidden]` tensor per layer (cells are empty for feed-forward)."""

    hidden: tuple[torch.Tensor, ...]
    cell: tuple[torch.Tensor, ...]


class Controller(nn.Module):
    """A stack of LSTM layers, or one tanh layer, whose first layer also sees the previous read vector.

    Gates are laid out (input, forget, output, candidate) so that one `sigmoid` covers the first three.
    Initial hidden and cell states are learned.
    """

    def __init__(self, input_size: int, read_size: int, hidden_size: int, layers: int = 1, kind: str = "lstm"):
        super().__init__()
        require_int("Controller", "input_size", input_size)
        require_int("Controller", "read_size", read_size, minimum=0)
        require_int("Controller", "hidden_size", hidden_size)
        require_int("Controller", "layers", layers)
        require_choice("Controller", "kind", kind, CONTROLLER_KINDS)
        if kind == "feedforward" and layers != 1:
            raise ValueError(f"Controller: a feed-forward controller has one layer, got layers={layers}")
        self.kind, self.hidden_size, self.layers = kind, hidden_size, layers
        gates = 4 * hidden_size if kind == "lstm" else hidden_size
        self.input_weight = nn.Parameter(torch.empty(gates, input_size))
        self.bias = nn.ParameterList([nn.Parameter(torch.empty(gates)) for _ in range(layers)])
        # The authors' LSTM layer is two linear layers, each with a bias; kept as two parameters because RMSProp
        # moves each by a full step, so one bias in their place would learn at half the pace.
        self.hidden_bias = nn.ParameterList(
            [nn.Parameter(torch.empty(gates)) for _ in range(layers if kind == "lstm" else 0)]
        )
        first_recurrent = read_size + (hidden_size if kind == "lstm" else 0)
        self.recurrent_weight = nn.ParameterList(
            [nn.Parameter(torch.empty(gates, first_recurrent))]
            + [nn.Parameter(torch.empty(gates, 2 * hidden_size)) for _ in range(layers - 1)]
        )
        # A feed-forward controller has no state to start from.
        self.initial_hidden = nn.Parameter(torch.zeros(layers, hidden_size)) if kind == "lstm" else None
        self.initial_cell = nn.Parameter(torch.zeros(layers, hidden_size)) if kind == "lstm" else None
        self.reset_parameters()

    def reset_parameters(self, scheme: str = "default") -> None:
        """Initialise as the authors' code does (`layers/lstm.lua`, `train.lua`'s `reinit_params`).

        There an LSTM layer is two linear layers, one on its input ([embed(x_t); r_{t-1}], or the layer below)
        and one on h_{t-1}, each with its own bias (here `bias` and `hidden_bias`), which add up. 'default' is
        each of those layers' own initialisation: weights and bias uniform in +-1/sqrt(fan_in), the fan-in being
        the input's width or the hidden size, and no forget-gate offset. 'uniform' (the paper's table A.1)
        draws every weight and bias from [-1, 1], then sets each of the two forget-gate biases to 1: the summed
        bias starts at 2. The learned initial state starts uniform in [-1, 1], as the bias of the one-input
        linear layer that the authors' code makes it with.
        """
        require_choice("Controller", "init", scheme, INIT_SCHEMES)
        hidden = self.hidden_size
        read_size = self.recurrent_weight[0].shape[1] - (hidden if self.kind == "lstm" else 0)
        input_fan_in = self.input_weight.shape[1] + read_size

        def bound(fan_in: int) -> float:
            return 1.0 / math.sqrt(fan_in) if scheme == "default" else 1.0

        with torch.no_grad():
            for layer in range(self.layers):
                below = bound(input_fan_in if layer == 0 else hidden)
                weight = self.recurrent_weight[layer]
                if layer == 0:
                    self.input_weight.uniform_(-below, below)
                    weight[:, :read_size].uniform_(-below, below)
                    weight[:, read_size:].uniform_(-bound(hidden), bound(hidden))
                else:
                    weight[:, :hidden].uniform_(-below, below)
                    weight[:, hidden:].uniform_(-bound(hidden), bound(hidden))
                bias = self.bias[layer]
                bias.uniform_(-below, below)
                if self.kind == "lstm":
                    hidden_bias = self.hidden_bias[layer]
                    hidden_bias.uniform_(-bound(hidden), bound(hidden))
                    if scheme == "uniform":
                        bias[hidden : 2 * hidden] = 1.0
                        hidden_bias[hidden : 2 * hidden] = 1.0
            if self.kind == "lstm":
                self.initial_hidden.uniform_(-1.0, 1.0)
                self.initial_cell.uniform_(-1.0, 1.0)

    def initial_state(self, batch: int) -> ControllerState:
        """The learned initial state, expanded to `batch` rows (empty for a feed-forward controller)."""
        if self.kind == "feedforward":
            return ControllerState((), ())
        hidden = tuple(h.expand(batch, -1) for h in self.initial_hidden)
        return ControllerState(hidden, tuple(c.expand(batch, -1) for c in self.initial_cell))

    def project_inputs(self, embedded: torch.Tensor) -> torch.Tensor:
        """The first layer's input term and biases for every step at once: `[time, batch, gates]`."""
        return torch.nn.functional.linear(embedded, self.input_weight, self._biases(0))

    def _biases(self, layer: int) -> torch.Tensor:
        return self.bias[layer] + self.hidden_bias[layer] if self.kind == "lstm" else self.bias[layer]

    def step(
        self, projected_input: torch.Tensor, read: torch.Tensor, state: ControllerState
    ) -> tuple[torch.Tensor, ControllerState]:
        """One time step from this step's row of `project_inputs` and the previous read vector.

        Returns the top layer's output `[batch, hidden]` and the new state.
        """
        if self.kind == "feedforward":
            output = torch.tanh(torch.addmm(projected_input, read, self.recurrent_weight[0].t()))
            return output, ControllerState((output,), ())
        hidden, cell = [], []
        layer_input, pre = read, projected_input
        for layer in range(self.layers):
            if layer > 0:
                pre = self._biases(layer)
            recurrent = torch.cat((layer_input, state.hidden[layer]), dim=1)
            h, c = lstm_cell(torch.addmm(pre, recurrent, self.recurrent_weight[layer].t()), state.cell[layer])
            hidden.append(h)
            cell.append(c)
            layer_input = h
        return layer_input, ControllerState(tuple(hidden), tuple(cell))

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, hidden_size={self.hidden_size}, layers={self.layers}"
