"""Every model by name: shapes, dtypes, devices, errors, learning, and the hand-differentiated LANTM loop."""

from __future__ import annotations

import gc
import math

import pytest
import torch
import torch.nn.functional as F

import liemem
from helpers import PATHS, require_compiled_kernels
from liemem import ConfigError, build_model, engine, memory, model_names
from liemem.readout import Readout

VOCAB = 8  # symbols 3..7; 0 starts the input, 1 separates it from the answer, 2 ends the answer
PRESETS = ["lantm", "lantm-s", "slantm", "slantm-s", "lstm", "ram", "ram-tape", "ntm"]


def copy_batch(batch=8, length=4, seed=0):
    """A fixed batch of copy data: inputs <s> a1..ak </s>, targets a1..ak <e>."""
    generator = torch.Generator().manual_seed(seed)
    symbols = torch.randint(3, VOCAB, (batch, length), generator=generator)
    start, separator = torch.zeros(batch, 1, dtype=torch.long), torch.ones(batch, 1, dtype=torch.long)
    inputs = torch.cat((start, symbols, separator), dim=1)
    return inputs, torch.cat((symbols, torch.full((batch, 1), 2)), dim=1)


def loss_of(model, inputs, targets):
    logits = model(inputs, targets.shape[1])
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def all_names():
    return [*model_names(), "so2"]  # the user-defined group of examples/custom_group.py


def test_the_named_configurations_are_all_there():
    assert set(PRESETS) <= set(model_names())
    assert {"se2", "so3", "torus", "translation"} <= set(model_names())


@pytest.mark.parametrize("name", all_names())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapes_and_dtypes(name, dtype):
    model = build_model(name, VOCAB).to(dtype)
    inputs, targets = copy_batch(batch=3)
    logits = model(inputs, 5)
    assert logits.shape == (3, 5, VOCAB) and logits.dtype == dtype
    assert torch.isfinite(logits).all()
    F.cross_entropy(logits.flatten(0, 1), targets.flatten()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", all_names())
def test_forward_on_the_meta_device(name):
    """No tensor is pinned to the CPU: the whole forward pass runs on `meta`, where nothing is computed."""
    model = build_model(name, VOCAB).to("meta")
    logits = model(torch.zeros(2, 6, dtype=torch.long, device="meta"), 4)
    assert logits.device.type == "meta" and logits.shape == (2, 4, VOCAB)


@pytest.mark.parametrize("name", [*PRESETS, "so2"])
def test_every_model_overfits_a_tiny_copy_batch(name):
    torch.manual_seed(0)
    model = build_model(name, VOCAB)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    inputs, targets = copy_batch()
    first = loss_of(model, inputs, targets).item()
    for _ in range(400):
        optimizer.zero_grad()
        loss = loss_of(model, inputs, targets)
        if loss.item() < 0.02:
            break
        loss.backward()
        optimizer.step()
    assert first > 1.0 and loss.item() < 0.02


def test_user_defined_group_trains_with_no_change_to_liemem():
    model = build_model("so2", VOCAB)
    assert type(model.group).__name__ == "SO2" and model.plan().backend != "autograd"
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    inputs, targets = copy_batch()
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = loss_of(model, inputs, targets)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


FUSED_CASES = {
    "lantm": {},
    "lantm-s": {},
    "slantm": {"group_options": {"angle_bound": True}},
    "slantm-s": {},
    "se2": {"action_interpolation": True},
    "so3": {"action_interpolation": True, "group_options": {"angle_bound": True}},
    "torus": {},
    "so2": {"weighting": "softmax"},
}


@pytest.mark.parametrize("compiled", [False, True], ids=["tensor-ops", "compiled"])
@pytest.mark.parametrize("name", FUSED_CASES)
def test_hand_differentiated_loop_equals_the_autograd_loop(name, compiled):
    """The fast paths (in tensor operations, and on compiled kernels) compute the same function, with the same
    gradients, as the plain autograd loop."""
    if compiled:
        require_compiled_kernels()
    torch.manual_seed(1)
    model = build_model(name, VOCAB, **FUSED_CASES[name]).double()
    with torch.no_grad():  # move away from the symmetric initial state, so every path matters
        for parameter in model.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    inputs, targets = copy_batch(batch=3)
    results = []
    for path in ("autograd", "kernels" if compiled else "tensor-ops"):
        with engine.forced(PATHS[path]):
            model.zero_grad()
            logits = model(inputs, 5)
            (logits.sin().sum() + loss_of(model, inputs, targets)).backward()
            results.append((logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (plain, plain_grads), (fast, fast_grads) = results
    torch.testing.assert_close(fast, plain, rtol=1e-12, atol=1e-12)
    assert plain_grads.keys() == fast_grads.keys()
    for key in plain_grads:
        torch.testing.assert_close(fast_grads[key], plain_grads[key], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", [*PRESETS, "lantm-plain", "lantm-tensorops"])
def test_gradients_stay_finite_over_500_steps(name):
    torch.manual_seed(0)
    model = build_model(name.removesuffix("-plain").removesuffix("-tensorops"), VOCAB)
    switch = "autograd" if name.endswith("-plain") else "loop" if name.endswith("-tensorops") else "auto"
    inputs = torch.randint(0, VOCAB, (2, 250))
    with engine.forced(switch):
        logits = model(inputs, 250)
        F.cross_entropy(logits.flatten(0, 1), torch.randint(0, VOCAB, (500,))).backward()
    assert torch.isfinite(logits).all()
    for name_, parameter in model.named_parameters():
        assert torch.isfinite(parameter.grad).all(), name_


@pytest.mark.parametrize("path", list(PATHS))
def test_heads_sitting_exactly_on_keys_give_finite_gradients(path, monkeypatch):
    """With the step projection zeroed, both heads stay at the origin, where every key is written."""
    monkeypatch.setenv(engine.SWITCH, PATHS[path] if path != "kernels" else "auto")
    model = build_model("lantm", VOCAB)
    with torch.no_grad():
        model.step_projection.weight.zero_()
        model.step_projection.bias.zero_()
        model.initial_positions.zero_()
        model.initial_key.zero_()
    trace = model.trace(*copy_batch(batch=2)[:1], 5)
    assert not trace.keys.any() and not trace.read_positions.any()  # every distance is exactly 0
    loss_of(model, *copy_batch(batch=2)).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_initial_gates_and_memory_follow_the_authors_code():
    model = build_model("lantm", VOCAB, read_gate_bias=0.0)  # the authors' read gate; the default is -4
    heads = model.heads
    bias = model.step_projection.bias.detach()[: 2 * heads.raw_size].view(2, heads.raw_size)
    # The layer's own bias (+-1/sqrt(50)) plus the authors' offsets: 0 for the read gate (half random access),
    # -10 for the write gate (it follows its own trail).
    bound = 1 / 50**0.5
    assert abs(bias[0, heads.gate_index]) <= bound
    assert abs(build_model("lantm", VOCAB).step_projection.bias[heads.gate_index] + 4) <= bound
    assert abs(bias[1, heads.gate_index] + 10) <= bound
    assert bias.abs().max() > 0 and (bias[:, : heads.gate_index].abs() <= bound).all()
    # With the write gate shut, each write head position is the previous one moved by the bounded action.
    trace = model.trace(copy_batch(batch=2)[0], 5)
    # The initial slot's strength is sigmoid(b - 10) with b drawn from [-1, 1], as the authors' code draws it.
    b = float(model.initial_strength.detach())
    assert -1 <= b <= 1
    torch.testing.assert_close(trace.strengths[:, 0], torch.full((2,), 1 / (1 + math.exp(10 - b))))
    for state in (model.initial_positions, model.initial_key, model.initial_read, model.initial_value):
        assert state.abs().max() <= 1 and state.abs().max() > 0
    steps = trace.write_positions.diff(dim=1)
    assert (torch.linalg.vector_norm(steps, dim=-1) < 1 + 1e-4).all()


def test_the_softmax_temperature_starts_where_it_is_asked_to():
    bound = 1 / 50**0.5  # the layer's own random bias
    for temperature in (0.02, 0.5, 3.0):
        model = build_model("lantm-s", VOCAB, initial_temperature=temperature)
        raw = float(model.step_projection.bias.detach()[2 * model.heads.raw_size])
        # softplus(b) = T at b = log(e^T - 1): 0.02 -> -3.902, 0.5 -> -0.433, 3.0 -> 2.948
        assert abs(raw - math.log(math.expm1(temperature))) <= bound
    paper = build_model("lantm-s", VOCAB)  # unset: the layer's random bias alone, softplus ~ 0.69
    assert abs(float(paper.step_projection.bias.detach()[2 * paper.heads.raw_size])) <= bound
    with pytest.raises(ConfigError, match="initial_temperature must be > 0"):
        build_model("lantm-s", VOCAB, initial_temperature=0.0)
    with pytest.raises(ConfigError, match="initial_temperature needs weighting='softmax'"):
        build_model("lantm", VOCAB, initial_temperature=0.1)  # no temperature to start


@pytest.mark.parametrize("name", ["lantm", "slantm-s"])
def test_the_read_gate_bias_offsets_only_the_read_heads_gate(name):
    torch.manual_seed(4)
    plain = build_model(name, VOCAB, read_gate_bias=0.0)
    torch.manual_seed(4)
    shifted = build_model(name, VOCAB, read_gate_bias=-3.0)
    difference = shifted.step_projection.bias.detach() - plain.step_projection.bias.detach()
    expected = torch.zeros_like(difference)
    expected[plain.heads.gate_index] = -3.0  # head 0 is the read head; its gate follows the key and the action
    torch.testing.assert_close(difference, expected, rtol=0, atol=1e-6)
    # The write head's gate keeps its -10 offset either way: sigmoid(-10 + b) < 1e-4 for |b| <= 1/sqrt(50).
    write_gate = plain.heads.raw_size + plain.heads.gate_index
    assert torch.sigmoid(shifted.step_projection.bias[write_gate]) < 1e-4
    with pytest.raises(ConfigError, match="read_gate_bias must be a finite number"):
        build_model(name, VOCAB, read_gate_bias=float("nan"))


def test_trace_agrees_with_forward():
    model = build_model("slantm", VOCAB)
    inputs, _ = copy_batch(batch=2)
    trace = model.trace(inputs, 5)
    torch.testing.assert_close(trace.logits, model(inputs, 5))
    # 6 input tokens: 5 input steps (each writes a slot after the initial one), then 5 answer steps, the first
    # of which reads the separator.
    assert trace.read_positions.shape == (2, 10, 3) and trace.write_positions.shape == (2, 5, 3)
    assert trace.keys.shape == (2, 6, 3) and len(trace.read_weights) == 10
    torch.testing.assert_close(trace.read_weights[-1].sum(-1), torch.ones(2))
    torch.testing.assert_close(torch.linalg.vector_norm(trace.read_positions, dim=-1), torch.ones(2, 10))


def test_readout_is_wp_h_plus_sigmoid_c_times_wr_r():
    readout = Readout(3, 2, 4)
    h, r = torch.randn(5, 3), torch.randn(5, 2)
    out = readout.hidden(h)
    expected = out[:, :4] + torch.sigmoid(out[:, 4:]) * (r @ readout.read.weight.t() + readout.read.bias)
    torch.testing.assert_close(readout(h, r), expected)


def test_ram_tape_neighbour_keys_are_the_keys_beside_the_read_position():
    keys = torch.arange(10.0).view(1, 5, 2)
    state = memory.empty(1, 5, 2, 1, keys)
    for i in range(5):
        state = memory.append(state, keys[:, i], torch.zeros(1, 1), torch.ones(1))
    one_hot = torch.tensor([[[0.0, 0.0, 1.0, 0.0, 0.0]]])
    result = memory.read(state, torch.zeros(1, 1, 2), lambda q, k, s: one_hot, shifted_keys=True)
    torch.testing.assert_close(result.left_key, keys[:, 1:2])
    torch.testing.assert_close(result.right_key, keys[:, 3:4])


def test_same_state_dict_same_outputs():
    first, second = build_model("lantm", VOCAB), build_model("lantm", VOCAB)
    second.load_state_dict(first.state_dict())
    inputs, _ = copy_batch(batch=2)
    torch.testing.assert_close(first(inputs, 5), second(inputs, 5))


def test_uniform_initialisation():
    model = build_model("lantm", VOCAB, init="uniform")
    assert model.step_projection.weight.abs().max() <= 1.0 and model.step_projection.weight.abs().max() > 0.5
    write_gate = float(model.step_projection.bias[model.heads.raw_size + model.heads.gate_index].detach())
    assert -11.0 <= write_gate <= -9.0  # uniform in [-1, 1], plus the offset -10


def test_unknown_model_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown model 'lantmm'; valid models: lantm, lantm-s"):
        build_model("lantmm", VOCAB)


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [
        ("lantm", {"controller_sizes": 3}, r"unknown option 'controller_sizes'; valid options: group"),
        ("lantm", {"controller_size": 0}, "controller_size must be >= 1"),
        ("lantm", {"weighting": "cosine"}, "weighting must be one of"),
        ("lantm", {"group": "se4"}, "group must be one of"),
        ("lantm", {"action_interpolation": 1}, "action_interpolation must be true or false"),
        ("slantm", {"group_options": {"angle": True}}, "angle"),
        ("lstm", {"layers": 5}, r"layers must be in \[1, 4\]"),
        ("ram", {"key_dim": 2.5}, "key_dim must be an integer"),
        ("ntm", {"memory_slots": -1}, "memory_slots"),
        ("lantm", {"controller": "feedforward", "controller_layers": 2}, "controller_layers must be 1"),
        ("slantm", {"group_options": {"angle_bound": "yes"}}, "angle_bound must be True or False"),
        ("lantm", {"owner": 1}, "unknown option 'owner'"),
    ],
)
def test_bad_overrides_are_named(name, overrides, message):
    with pytest.raises(ValueError, match=message):
        build_model(name, VOCAB, **overrides)


@pytest.mark.parametrize(
    ("inputs", "answer_length", "message"),
    [
        (torch.zeros(3, dtype=torch.long), 2, r"shape \[batch, length\]"),
        (torch.zeros(2, 3), 2, "integer token ids"),
        (torch.full((2, 3), VOCAB), 2, r"token ids must lie in \[0, 8\)"),
        (torch.full((2, 3), -1), 2, "token ids must lie"),
        (torch.zeros(2, 3, dtype=torch.long), 0, "answer_length must be an integer >= 1"),
        ([[0, 1]], 2, "must be a tensor"),
    ],
)
@pytest.mark.parametrize("name", ["lantm", "ntm"])
def test_bad_inputs_get_a_clear_error(name, inputs, answer_length, message):
    with pytest.raises(ValueError, match=message):
        build_model(name, VOCAB)(inputs, answer_length)


def test_bad_vocabulary_size():
    with pytest.raises(ValueError, match="vocab_size"):
        build_model("lantm", 1)


def test_package_exports():
    assert liemem.build_model is build_model
    config = liemem.model_config("slantm-s", controller_size=20)
    assert config.group == "so3" and config.weighting == "softmax" and config.controller_size == 20


@pytest.mark.parametrize("path", list(PATHS))
def test_a_retained_graph_gives_the_same_gradients_twice(path, monkeypatch):
    monkeypatch.setenv(engine.SWITCH, PATHS[path] if path != "kernels" else "auto")
    model = build_model("lantm-s", VOCAB)
    loss = loss_of(model, *copy_batch(batch=2))
    loss.backward(retain_graph=True)
    first = [p.grad.clone() for p in model.parameters()]
    loss.backward()
    for once, twice in zip(first, (p.grad for p in model.parameters()), strict=True):
        torch.testing.assert_close(twice, 2 * once)


def test_forward_without_gradients_matches():
    model = build_model("slantm", VOCAB)
    inputs, _ = copy_batch(batch=2)
    with torch.no_grad():
        quiet = model(inputs, 5)
    torch.testing.assert_close(quiet, model(inputs, 5).detach())


@pytest.mark.parametrize("path", list(PATHS))
def test_functional_call_with_substituted_group_parameters(path, monkeypatch):
    """Gradients follow the parameters a forward pass used, also when torch.func swaps them in for it."""
    torch.manual_seed(0)
    model = build_model("slantm", VOCAB, group_options={"angle_bound": True}).double()
    monkeypatch.setenv(engine.SWITCH, PATHS[path] if path != "kernels" else "auto")
    params = {name: p.detach().clone().requires_grad_() for name, p in model.named_parameters()}
    with torch.no_grad():
        params["heads.group.angle.bound_logit"].fill_(4.0)
    inputs, targets = copy_batch(batch=2)
    grads = torch.autograd.grad(
        F.cross_entropy(torch.func.functional_call(model, params, (inputs, 5)).flatten(0, 1), targets.flatten()),
        list(params.values()),
    )
    with torch.no_grad():
        model.heads.group.angle.bound_logit.fill_(4.0)
    monkeypatch.setenv(engine.SWITCH, "autograd")
    loss_of(model, inputs, targets).backward()
    for (name, parameter), grad in zip(model.named_parameters(), grads, strict=True):
        torch.testing.assert_close(grad, parameter.grad, rtol=1e-9, atol=1e-12, msg=name)


@pytest.mark.parametrize("name", ["lantm", "ram", "ntm"])
def test_feedforward_controllers_leave_no_parameter_unused(name):
    model = build_model(name, VOCAB, controller="feedforward")
    loss_of(model, *copy_batch(batch=2)).backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64])
def test_any_integer_token_dtype(dtype):
    model = build_model("lantm", VOCAB)
    inputs, _ = copy_batch(batch=2)
    torch.testing.assert_close(model(inputs.to(dtype), 5), model(inputs, 5))


def test_a_model_refuses_another_models_config():
    from liemem.models import LANTMConfig, NeuralTuringMachine

    with pytest.raises(ConfigError, match="config must be a NTMConfig, got LANTMConfig"):
        NeuralTuringMachine(VOCAB, LANTMConfig())


def test_checkpointing_recomputes_the_loop_once(monkeypatch):
    """Under torch.utils.checkpoint the model is recomputed once in the backward pass, and gradients agree."""
    from liemem.engine import recurrence

    calls = []
    original = recurrence.LieAccessLoop.forward

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(recurrence.LieAccessLoop, "forward", staticmethod(counting))
    model = build_model("slantm", VOCAB, action_interpolation=True, group_options={"angle_bound": True})
    inputs, targets = copy_batch(batch=2)
    loss_of(model, inputs, targets).backward()
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    calls.clear()
    logits = torch.utils.checkpoint.checkpoint(model, inputs, 5, use_reentrant=False)
    F.cross_entropy(logits.flatten(0, 1), targets.flatten()).backward()
    assert len(calls) == 2
    for grad, parameter in zip(expected, model.parameters(), strict=True):
        torch.testing.assert_close(parameter.grad, grad)


def test_half_precision_head_on_a_key_stays_finite():
    """float16 cannot hold the paper's eps of 1e-10; its smallest normal number takes its place."""
    model = build_model("lantm", VOCAB).half()
    with torch.no_grad():
        model.step_projection.weight.zero_()
        model.step_projection.bias.zero_()
    logits = model(copy_batch(batch=2)[0], 5)
    logits.float().sum().backward()
    assert torch.isfinite(logits).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("dtype", [torch.uint16, torch.uint32, torch.uint64])
def test_wide_unsigned_token_dtypes(dtype):
    model = build_model("lantm", VOCAB)
    inputs, _ = copy_batch(batch=2)
    torch.testing.assert_close(model(inputs.to(dtype), 5), model(inputs, 5))
    with pytest.raises(ValueError, match="token ids must lie"):
        model(torch.full((2, 3), VOCAB, dtype=dtype), 5)


def test_answer_length_may_be_any_integer():
    import numpy as np

    model = build_model("lantm", VOCAB)
    inputs, _ = copy_batch(batch=2)
    for length in (np.int64(5), torch.tensor(5)):
        assert model(inputs, length).shape == (2, 5, VOCAB)
    with pytest.raises(ValueError, match="answer_length"):
        model(inputs, 2.0)


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precisions_give_finite_values_and_gradients(name, dtype):
    model = build_model(name, VOCAB).to(dtype)
    logits = model(*copy_batch(batch=2)[:1], 5)
    assert logits.dtype == dtype and torch.isfinite(logits).all()
    logits.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def _live_tensors() -> int:
    gc.collect()
    return sum(issubclass(type(obj), torch.Tensor) for obj in gc.get_objects())  # type(): no lazy attribute


@pytest.mark.parametrize("name", ["lantm", "slantm"])
def test_training_steps_leave_no_tensor_behind(name):
    """A step's graph must be freed with it: a reference cycle through autograd's C++ nodes would keep each
    step's replayed head movement alive, and memory would grow at every training step."""
    model = build_model(name, 8)
    inputs = torch.randint(0, 8, (4, 6))
    model(inputs, 5).sum().backward()  # the first step allocates the gradients
    before = _live_tensors()
    for _ in range(3):
        model(inputs, 5).sum().backward()
    assert _live_tensors() == before
