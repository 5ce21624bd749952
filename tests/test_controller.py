"""The controller and its hand-differentiated LSTM cell, against `torch.nn.LSTMCell`."""

from __future__ import annotations

import pytest
import torch

from liemem import fused
from liemem.controller import Controller


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
        controller.bias[0].copy_(reorder(reference.bias_ih + reference.bias_hh, hidden))
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


def test_forget_bias_starts_at_one_and_initial_state_at_zero():
    for scheme in ("default", "uniform"):
        controller = Controller(4, 2, 3)
        controller.reset_parameters(scheme)
        assert torch.equal(controller.bias[0][3:6], torch.ones(3))
        assert not controller.initial_hidden.any() and not controller.initial_cell.any()
    assert Controller(4, 2, 3).recurrent_weight[0].abs().max() <= 1 / 3**0.5  # torch's LSTM bound 1/sqrt(H)


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
