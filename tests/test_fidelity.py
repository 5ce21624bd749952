"""Details that follow the authors' Lua code (docs/fidelity.md), each against a hand-computed or float64 reference."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import groups
from liemem import build_model
from liemem.heads import HeadState, LieHeads
from liemem.readout import Readout
from manifolds import Euclidean, Sphere

F64 = torch.float64


def test_the_separator_begins_the_answer_phase_and_is_fed_at_every_answer_step():
    # fb.lua: `^ x1 x2 #` then `#` again at each later answer step; the step fed `#` is the first answer step.
    model = build_model("lstm", 10)
    inputs = torch.tensor([[7, 1, 2, 8], [7, 3, 4, 8]])
    stream = model.stream(inputs, 3)
    assert stream.t().tolist() == [[7, 1, 2, 8, 8, 8], [7, 3, 4, 8, 8, 8]]
    assert model.input_steps(inputs) == 3
    assert model.embedding.num_embeddings == 10  # no row for a placeholder of its own
    with pytest.raises(ValueError, match="length >= 2"):
        model(inputs[:, :1], 2)


def test_the_lstm_baseline_answers_from_the_separator_step_on():
    """Logits of the answer steps, against the LSTM run by hand over [x_0 .. x_{L-2}, sep, sep, ...]."""
    torch.manual_seed(0)
    model = build_model("lstm", 9, hidden_size=6, layers=2, embedding_size=5).double()
    inputs = torch.tensor([[6, 2, 3, 7]])
    tokens = [6, 2, 3] + [7] * 4
    h = [model.initial_hidden[layer] for layer in range(2)]
    c = [model.initial_cell[layer] for layer in range(2)]
    outputs = []
    for token in tokens:
        x = model.embedding.weight[token]
        for layer in range(2):
            w_ih, w_hh = getattr(model.lstm, f"weight_ih_l{layer}"), getattr(model.lstm, f"weight_hh_l{layer}")
            b = getattr(model.lstm, f"bias_ih_l{layer}") + getattr(model.lstm, f"bias_hh_l{layer}")
            i, f, g, o = (w_ih @ x + w_hh @ h[layer] + b).split(6)
            c[layer] = torch.sigmoid(f) * c[layer] + torch.sigmoid(i) * torch.tanh(g)
            h[layer] = torch.sigmoid(o) * torch.tanh(c[layer])
            x = h[layer]
        outputs.append(model.output(x))
    expected = torch.stack(outputs[3:])  # the step fed the separator, and the three after it
    torch.testing.assert_close(model(inputs, 4)[0], expected)


def test_a_lie_access_machine_writes_one_slot_per_input_step_and_none_while_answering():
    model = build_model("lantm", 9)
    inputs = torch.tensor([[6, 1, 2, 3, 7]])
    trace = model.trace(inputs, 4)
    assert trace.keys.shape[1] == 1 + 4  # the initial slot, then `^`, 1, 2, 3; the separator writes nothing
    assert trace.write_positions.shape[1] == 4 and trace.read_positions.shape[1] == 4 + 4


def test_the_initial_state_is_uniform_and_squashed_as_the_authors_draw_it():
    torch.manual_seed(3)
    model = build_model("lantm", 9)
    for state in (model.initial_positions, model.initial_key, model.initial_read, model.initial_value):
        assert state.abs().max() <= 1 and state.abs().min() > 0
    trace_model = build_model("lantm", 9)
    with torch.no_grad():
        trace_model.load_state_dict(model.state_dict())
        trace_model.initial_value.fill_(2.0)
    trace = trace_model.trace(torch.tensor([[6, 1, 7]]), 2)
    assert trace.values.shape[1] == 3
    torch.testing.assert_close(trace.values[0, 0], torch.full((20,), math.tanh(2.0)))


def test_ram_sharpening_scales_the_scores_inside_the_softmax():
    # ram.lua: w_i proportional to s_i softmax(gamma <q, k_i>)_i + 1e-9; worked by hand in float64.
    model = build_model("ram", 9, key_dim=1).double()
    scores = [2.0, 1.0, 0.0, -1.0]
    strengths = [0.9, 0.2, 0.9, 4.5e-5]
    gamma = 3.0
    query = torch.ones(1, 1, 1, dtype=F64)
    keys = torch.tensor(scores, dtype=F64).view(1, 4, 1)
    weights = model._weigh(query, keys, torch.tensor([strengths], dtype=F64), torch.full((1, 1, 1), gamma, dtype=F64))
    softmax = [math.exp(gamma * x) / sum(math.exp(gamma * y) for y in scores) for x in scores]
    floored = [s * p + 1e-9 for s, p in zip(strengths, softmax, strict=True)]
    expected = [w / sum(floored) for w in floored]
    assert expected[0] == pytest.approx(0.98664, abs=1e-5) and expected[1] == pytest.approx(0.010916, abs=1e-6)
    # liemem floors the unnormalised exponentials; the two floors differ by less than 1e-9 here.
    torch.testing.assert_close(weights.view(4), torch.tensor(expected, dtype=F64), rtol=0, atol=1e-9)


def test_the_ram_reads_into_the_logits_without_a_gate():
    readout = Readout(3, 2, 4, gated=False).double()
    h, r = torch.randn(5, 3, dtype=F64), torch.randn(5, 2, dtype=F64)
    expected = h @ readout.hidden.weight.t() + readout.hidden.bias + r @ readout.read.weight.t() + readout.read.bias
    torch.testing.assert_close(readout(h, r), expected)
    assert not build_model("ram", 9).readout.gated and build_model("lantm", 9).readout.gated


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_the_sphere_heads_normalise_softly_as_the_authors_normalize(dtype):
    # layers/Normalize.lua: x / (1e-10 + sum x^2)^(1/2).
    space = Sphere(3)
    x = torch.tensor([[3.0, -4.0, 12.0], [1e-3, 2e-3, -2e-3], [0.0, 0.0, 0.0], [1e30, 1e30, 0.0]], dtype=dtype)
    reference = [[v / math.sqrt(sum(c * c for c in row) + 1e-10) for v in row] for row in x.double().tolist()]
    torch.testing.assert_close(space.soft_project(x).double(), torch.tensor(reference, dtype=F64), rtol=1e-6, atol=0)
    assert space.soft_project(torch.tensor([[math.nan, 0.0, 1.0]], dtype=dtype)).isnan().all()
    assert torch.equal(Euclidean(2).soft_project(x[:, :2]), x[:, :2])  # a flat space has nothing to soften


def test_a_mix_of_opposite_keys_keeps_a_bounded_gradient():
    """The write head at q and a random key at -q, mixed half and half, land at the sphere's centre: the exact
    projection's gradient there is unbounded, the authors' softened one at most 1e5."""
    heads = LieHeads(groups.get("so3")).double()
    position = torch.tensor([[[0.0, 0.6, 0.8]]], dtype=F64)
    raw = torch.cat((-position[0, 0], torch.tensor([0.0, 0.0, 1.0, 0.5, 0.0], dtype=F64))).view(1, 1, 8)
    raw.requires_grad_(True)
    state = HeadState(position, groups.get("so3").identity(1, 1, dtype=F64))
    moved = heads.move(raw, state).position
    assert moved.norm() < 1e-5  # the mix is ~2.5e-11 q, softened to ~2.5e-6 q
    moved.sum().backward()
    assert torch.isfinite(raw.grad).all() and raw.grad.abs().max() <= 1e5 * 1.01


def test_the_angle_bound_starts_as_the_authors_draw_it():
    torch.manual_seed(0)
    bounds = [groups.get("so3", angle_bound=True).angle.bound_logit.item() for _ in range(50)]
    assert all(-1 <= b <= 1 for b in bounds) and max(bounds) - min(bounds) > 1


def test_the_ram_starts_from_a_uniform_squashed_state():
    torch.manual_seed(1)
    model = build_model("ram-tape", 9)
    for state in (model.initial_read, model.initial_key, model.initial_value, model.initial_neighbours):
        assert state.abs().max() <= 1 and state.abs().min() > 0
    trace = model.access_trace(torch.tensor([[6, 1, 7]]), 2)
    assert trace.read_weights.shape[-1] == 4  # two initial slots (ram.lua with the tape), then `^` and 1
    assert trace.write_weights[0, :2, 0].tolist() == [[0, 0, 1, 0], [0, 0, 0, 1]]
    assert torch.tanh(model.initial_value[0]).ne(torch.tanh(model.initial_value[1])).all()


@pytest.mark.parametrize("scheme", ["default", "uniform"])
def test_the_lstm_baseline_is_initialised_as_the_authors_layers(scheme):
    # layers/lstm.lua under train.lua: two linear maps per layer, +-1/sqrt(fan_in) by default with no forget
    # offset; every parameter in [-1, 1] and both forget biases at 1 with `uniform`.
    torch.manual_seed(0)
    model = build_model("lstm", 9, hidden_size=64, layers=2, embedding_size=16, init=scheme)
    lstm = model.lstm
    for layer, fan_in in ((0, 16), (1, 64)):
        for name, bound in ((f"weight_ih_l{layer}", fan_in), (f"weight_hh_l{layer}", 64)):
            limit = 1 / bound**0.5 if scheme == "default" else 1.0
            weight = getattr(lstm, name)
            assert weight.abs().max() <= limit and weight.abs().max() > 0.95 * limit
        forget = [getattr(lstm, f"bias_{kind}_l{layer}")[64:128] for kind in ("ih", "hh")]
        if scheme == "uniform":
            assert all(torch.equal(bias, torch.ones(64)) for bias in forget)
        else:
            assert all(bias.abs().max() <= 1 / 16**0.5 for bias in forget)
    assert model.initial_hidden.abs().max() <= 1 and model.initial_hidden.abs().max() > 0.9


def test_a_run_trains_and_restores_in_the_dtype_it_asks_for(tmp_path):
    # The authors' CPU runs were in Torch7's default dtype, float64.
    from liemem.config import ConfigError
    from liemem.training import TrainConfig, restore_model, train

    config = TrainConfig(
        task="copy", train_lengths=(2, 3), test_lengths=(4, 4), steps=2, eval_every=2, eval_samples=4, device="cpu"
    )
    train(dataclasses.replace(config, dtype="float64"), tmp_path, progress=False)
    model, _, restored, _ = restore_model(tmp_path, "cpu")
    assert restored.dtype == "float64" and {p.dtype for p in model.parameters()} == {F64}
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"]
    assert state["step_projection.weight"].dtype == F64
    with pytest.raises(ConfigError, match="dtype"):
        train(dataclasses.replace(config, dtype="double"), tmp_path / "bad", progress=False)


def test_finite_gradients_too_large_for_a_float32_sum_of_squares_are_clipped_not_stopped():
    """The authors clip in float64; a float32 sum of squares overflows once the norm passes 1.8e19."""
    from liemem.training.loop import clip_gradients

    a = torch.nn.Parameter(torch.zeros(2))
    b = torch.nn.Parameter(torch.zeros(3))
    a.grad = torch.tensor([3e19, 0.0])
    b.grad = torch.tensor([4e19, 0.0, 0.0])
    probe = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))]
    probe[0].grad, probe[1].grad = a.grad.clone(), b.grad.clone()
    assert not torch.isfinite(torch.nn.utils.clip_grad_norm_(probe, 32.0))  # the overflow this guards against
    norm = clip_gradients([a, b], 32.0)
    assert float(norm) == pytest.approx(5e19, rel=1e-6)  # sqrt(3^2 + 4^2) * 1e19, by hand
    clipped = torch.cat((a.grad, b.grad)).double()
    assert float(torch.linalg.vector_norm(clipped)) == pytest.approx(32.0, rel=1e-5)
    assert clipped[0] == pytest.approx(32.0 * 3 / 5, rel=1e-5)
    small = torch.nn.Parameter(torch.zeros(2))
    small.grad = torch.tensor([3.0, 4.0])
    assert float(clip_gradients([small], 32.0)) == pytest.approx(5.0) and torch.equal(
        small.grad, torch.tensor([3.0, 4.0])
    )
    small.grad = torch.tensor([math.inf, 1.0])
    assert not torch.isfinite(clip_gradients([small], 32.0))  # a gradient that is not finite still stops training
