"""The controller and its hand-differentiated LSTM cell, against `torch.nn.LSTMCell`."""

from __future__ import annotations

import pytest
import torch

from liemem.controller import Controller
from liemem.engine import cells as fused


def reorder(rows: torch.Tensor, size: int) -> torch.Tensor:
    """Rows in PyTorch's gate order (input, forget, candidate, output) to the controller's (i, f, output, candidate)."""
    i, f, g, o = rows.split(size, dim=0)
    return torch.cat((i, f, o, g), dim=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_controller_step_is_an_lstm_cell_on_input_and_read(dtype):
    torch.manual_seed(0)
    embed, read, hidden, batch = 5, 3, 4, 6
    reference = torch.nn.LSTMCell(embed + read, hidden).to(dtype)
    controller = Controller(embed, read, hidden).to(dtype)
    with torch.no_grad():
        controller.input_weight.copy_(reorder(reference.weight_ih[:, :embed], hidden))
        recurrent = torch.cat((reference.weight_ih[:, embed:], reference.weight_hh), dim=1)
        controller.recurrent_weight[0].copy_(reorder(recurrent, hidden))
        controller.bias[0].copy_(reorder(reference.bias_ih, hidden))
        controller.hidden_bias[0].copy_(reorder(reference.bias_hh, hidden))
        controller.initial_hidden.normal_()
        controller.initial_cell.normal_()
    x = torch.randn(batch, embed, dtype=dtype)
    r = torch.randn(batch, read, dtype=dtype)
    state = controller.initial_state(batch)
    output, new_state = controller.step(controller.project_inputs(x[None])[0], r, state)
    expected_h, expected_c = reference(torch.cat((x, r), dim=1), (state.hidden[0], state.cell[0]))
    tolerance = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}
    torch.testing.assert_close(output, expected_h, **tolerance)
    torch.testing.assert_close(new_state.cell[0], expected_c, **tolerance)


def test_lstm_cell_gradcheck():
    gates = torch.randn(3, 8, dtype=torch.float64, requires_grad=True)
    cell = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fused.lstm_cell, (gates, cell))


def test_default_initialisation_is_the_authors_two_linear_layers():
    # layers/lstm.lua: Linear(embed + read -> 4H) on the input and Linear(H -> 4H) on h, each +-1/sqrt(fan_in),
    # biases adding up, and no forget-gate offset unless the weights are reinitialised (train.lua).
    torch.manual_seed(0)
    embed, read, hidden = 30, 34, 100
    controller = Controller(embed, read, hidden)
    input_bound, hidden_bound = 1 / (embed + read) ** 0.5, 1 / hidden**0.5
    for block, bound in (
        (controller.input_weight, input_bound),
        (controller.recurrent_weight[0][:, :read], input_bound),
        (controller.recurrent_weight[0][:, read:], hidden_bound),
    ):
        assert block.abs().max() <= bound and block.abs().max() > 0.95 * bound
    for bias, bound in ((controller.bias[0], input_bound), (controller.hidden_bias[0], hidden_bound)):
        assert bias.abs().max() <= bound and bias.abs().max() > 0.9 * bound
        assert abs(float(bias[hidden : 2 * hidden].detach().mean())) < 0.3 * bound  # no forget-gate offset
    for state in (controller.initial_hidden, controller.initial_cell):
        assert state.abs().max() <= 1 and state.abs().max() > 0.9


def test_uniform_initialisation_sets_both_forget_biases_to_one():
    torch.manual_seed(0)
    controller = Controller(4, 2, 50, layers=2)
    controller.reset_parameters("uniform")
    for layer in range(2):
        for bias in (controller.bias[layer], controller.hidden_bias[layer]):
            assert torch.equal(bias[50:100], torch.ones(50))  # the summed forget bias starts at 2
            others = torch.cat((bias[:50], bias[100:]))
            assert others.abs().max() <= 1 and others.abs().max() > 0.9
        weight = controller.recurrent_weight[layer]
        assert weight.abs().max() <= 1 and weight.abs().max() > 0.99
    with pytest.raises(ValueError, match="init"):
        controller.reset_parameters("normal")


def test_stacked_and_feedforward_controllers():
    stacked = Controller(4, 2, 3, layers=2)
    out, state = stacked.step(torch.zeros(5, 12), torch.zeros(5, 2), stacked.initial_state(5))
    assert out.shape == (5, 3) and len(state.hidden) == len(state.cell) == 2
    feedforward = Controller(4, 2, 3, kind="feedforward")
    out, state = feedforward.step(torch.zeros(5, 3), torch.ones(5, 2), feedforward.initial_state(5))
    expected = torch.tanh(torch.ones(5, 2) @ feedforward.recurrent_weight[0].t())
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError, match="one layer"):
        Controller(4, 2, 3, layers=2, kind="feedforward")
    with pytest.raises(ValueError, match="kind"):
        Controller(4, 2, 3, kind="gru")
