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
from .fused import lstm_cell


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
        """'default': uniform in +-1/sqrt(hidden), as `nn.LSTM`; 'uniform': uniform in [-1, 1] (paper, A.1).

        Both set the forget-gate bias to 1, and start the learned initial state at 0.
        """
        require_choice("Controller", "init", scheme, INIT_SCHEMES)
        bound = 1.0 / math.sqrt(self.hidden_size) if scheme == "default" else 1.0
        with torch.no_grad():
            for weight in [self.input_weight, *self.bias, *self.recurrent_weight]:
                weight.uniform_(-bound, bound)
            if self.kind == "lstm":
                for bias in self.bias:
                    bias[self.hidden_size : 2 * self.hidden_size] = 1.0
            if self.kind == "lstm":
                self.initial_hidden.zero_()
                self.initial_cell.zero_()

    def initial_state(self, batch: int) -> ControllerState:
        """The learned initial state, expanded to `batch` rows (empty for a feed-forward controller)."""
        if self.kind == "feedforward":
            return ControllerState((), ())
        hidden = tuple(h.expand(batch, -1) for h in self.initial_hidden)
        return ControllerState(hidden, tuple(c.expand(batch, -1) for c in self.initial_cell))

    def project_inputs(self, embedded: torch.Tensor) -> torch.Tensor:
        """The first layer's input term and bias for every step at once: `[time, batch, gates]`."""
        return torch.nn.functional.linear(embedded, self.input_weight, self.bias[0])

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
                pre = self.bias[layer]
            recurrent = torch.cat((layer_input, state.hidden[layer]), dim=1)
            h, c = lstm_cell(torch.addmm(pre, recurrent, self.recurrent_weight[layer].t()), state.cell[layer])
            hidden.append(h)
            cell.append(c)
            layer_input = h
        return layer_input, ControllerState(tuple(hidden), tuple(cell))

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, hidden_size={self.hidden_size}, layers={self.layers}"
