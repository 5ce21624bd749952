"""The compiled LANTM loop (liemem.native) and torch.compile of group moves (liemem.compiling): same function,
switches that turn them off, fallbacks when they cannot be built, and clear errors for bad buffers."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
import torch.nn.functional as F

import groups
import liemem
from helpers import require_compiled_kernels, require_torch_compile
from liemem import compiling, native
from liemem.models import lantm_compiled
from liemem.training import TrainConfig, train

VOCAB = 10


def batch(size=4, length=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (size, length), generator=generator), torch.randint(
        0, VOCAB, (size, length - 1), generator=generator
    )


def loss_and_grads(model, inputs, targets):
    model.zero_grad()
    logits = model(inputs, targets.shape[1])
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


def perturbed(name, **options):
    torch.manual_seed(3)
    model = liemem.build_model(name, VOCAB, **options)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return model


# Both weightings of the paper's models, then every registered group (the test session loads the example's SO(2)).
FLOAT32_MODELS = ["lantm", "lantm-s", "slantm", "slantm-s", *groups.names()]


@pytest.mark.parametrize("name", FLOAT32_MODELS)
def test_float32_compiled_loop_matches_the_plain_loop(name):
    """At training precision the compiled kernels and the tensor-operation loop agree with the autograd loop to
    float32 rounding."""
    require_compiled_kernels()
    model = perturbed(name)
    inputs, targets = batch(size=8, length=12)
    results = {}
    paths = {"plain": (False, False), "tensor operations": (True, False), "compiled": (True, True)}
    for path, (fused, compiled) in paths.items():
        model.fused_loop, model.compiled_loop = fused, compiled
        results[path] = loss_and_grads(model, inputs, targets)
    plain_loss, plain_grads = results.pop("plain")
    for path, (fast_loss, fast_grads) in results.items():
        torch.testing.assert_close(fast_loss, plain_loss, rtol=1e-5, atol=1e-6, msg=path)
        for key, grad in plain_grads.items():
            scale = grad.abs().max().item()
            tolerance = {"rtol": 1e-3, "atol": 1e-4 * max(scale, 1e-3)}
            torch.testing.assert_close(fast_grads[key], grad, **tolerance, msg=f"{path}: {key}")


def test_the_switch_turns_the_kernels_off(monkeypatch):
    monkeypatch.setenv(native.SWITCH, "0")
    assert not native.enabled() and native.lantm_loop() is None
    calls = []
    monkeypatch.setattr(lantm_compiled, "forward", lambda *args: calls.append(1))
    model = liemem.build_model("lantm", VOCAB)
    model(*batch()[:1], 5).sum().backward()
    assert calls == []  # the tensor-operation loop ran
    assert not model.compile_steps()


def test_the_kernels_run_by_default(monkeypatch):
    require_compiled_kernels()
    calls = []
    original = lantm_compiled.forward
    monkeypatch.setattr(lantm_compiled, "forward", lambda *args: calls.append(1) or original(*args))
    liemem.build_model("lantm", VOCAB)(*batch()[:1], 5)
    assert calls == [1]


def test_kernels_apply_to_cpu_float32_and_float64_only():
    require_compiled_kernels()
    model = liemem.build_model("lantm", VOCAB)
    for dtype in (torch.float32, torch.float64):
        assert lantm_compiled.kernels_for(model, torch.zeros(1, dtype=dtype)) is not None
    assert lantm_compiled.kernels_for(model, torch.zeros(1, dtype=torch.bfloat16)) is None
    assert lantm_compiled.kernels_for(model, torch.zeros(1, device="meta")) is None
    model.compiled_loop = False
    assert lantm_compiled.kernels_for(model, torch.zeros(1)) is None


def test_a_failed_build_warns_once_and_falls_back(monkeypatch):
    monkeypatch.setenv(native.SWITCH, "1")  # what happens with the switch on, whatever the environment says
    from torch.utils import cpp_extension

    def broken(*args, **kwargs):
        raise RuntimeError("Error building extension: no compiler\nmore details")

    model = liemem.build_model("lantm", VOCAB)
    inputs, targets = batch()
    model.compiled_loop = False
    expected = loss_and_grads(model, inputs, targets)
    model.compiled_loop = True
    monkeypatch.setattr(cpp_extension, "load", broken)
    native._build.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match=r"could not compile the LANTM loop \(Error building extension"):
            result = loss_and_grads(model, inputs, targets)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # once per process: the second forward pass does not warn again
            loss_and_grads(model, inputs, targets)
    finally:
        native._build.cache_clear()  # later tests load the real build (cached on disk)
    torch.testing.assert_close(result[0], expected[0], rtol=0, atol=0)


def _forward_loop_arguments(monkeypatch, kernels, name="lantm"):
    """The arguments one real forward pass gives `ForwardLoop`, and a model to pass them again."""
    captured = []

    class Capture:
        def __getattr__(self, attribute):
            return getattr(kernels, attribute)

        def ForwardLoop(self, *arguments):
            captured.append(arguments)
            return kernels.ForwardLoop(*arguments)

    monkeypatch.setattr(lantm_compiled, "kernels_for", lambda model, projected: Capture())
    liemem.build_model(name, VOCAB)(*batch()[:1], 5)
    monkeypatch.undo()
    return list(captured[0])


# The captured pass reads `batch()`'s 6 tokens with 5 answer steps: 5 input steps (every token but the separator,
# which begins the answer phase), so 5 + 1 = 6 memory slots and 5 + 5 = 10 steps in all.
@pytest.mark.parametrize(
    "index, replace, message",
    [
        (11, lambda keys: keys.transpose(1, 2).contiguous().transpose(1, 2), "keys must be contiguous"),
        (12, lambda values: values.double(), "values must be Float, not Double"),
        (11, lambda keys: keys[..., :-1].contiguous(), "the memory needs input_length \\+ 1 slots"),
        (12, lambda values: values[..., :-1].contiguous(), "values must have size 6 along dimension 2, not 5"),
        (15, lambda dist2: dist2[:, :, :-1].contiguous(), "dist2 must have size 6 along dimension 2, not 5"),
        (6, lambda outputs: outputs[:-1], "outputs must have size 10 along dimension 0, not 9"),
        (19, lambda nearest: nearest.int(), "nearest must be contiguous int64"),
        (0, lambda length: 10, "input_length must be in \\[1, steps\\)"),
    ],
)
def test_the_forward_loop_refuses_buffers_it_cannot_index(monkeypatch, index, replace, message):
    kernels = require_compiled_kernels()
    arguments = _forward_loop_arguments(monkeypatch, kernels)
    kernels.ForwardLoop(*arguments)  # as captured, accepted
    arguments[index] = replace(arguments[index])
    with pytest.raises(RuntimeError, match=message):
        kernels.ForwardLoop(*arguments)


def test_the_forward_loop_refuses_bad_steps_and_head_positions(monkeypatch):
    kernels = require_compiled_kernels()
    arguments = _forward_loop_arguments(monkeypatch, kernels)
    loop = kernels.ForwardLoop(*arguments)
    input_length, batch_size = arguments[0], arguments[1].shape[1]
    steps = arguments[1].shape[0]
    assert (input_length, steps) == (5, 10)  # 6 tokens: 5 input steps, then the separator's and 4 more answer steps
    assert loop.control(0).shape == (batch_size, 2, arguments[21])  # both heads while writing
    assert loop.control(input_length).shape == (batch_size, 1, arguments[21])  # the read head after
    for step in (-1, steps):
        with pytest.raises(RuntimeError, match=f"step {step} out of range"):
            loop.control(step)
    with pytest.raises(RuntimeError, match="read_write needs head positions"):
        loop.read_write(0, torch.zeros(batch_size, 1, 2))  # a writing step needs the write head too
    with pytest.raises(RuntimeError, match="head positions must have the memory's dtype"):
        loop.read_write(0, torch.zeros(batch_size, 2, 2, dtype=torch.float64))
    loop.read_write(input_length, torch.zeros(batch_size, 1, 2))  # an answer step reads only


def test_operation_count_matches_a_hand_count():
    x = torch.ones(3)
    assert compiling.operation_count(lambda t: (t + 1) * 2, x) == 2
    assert compiling.operation_count(lambda t: torch.sigmoid(t).sum().exp(), x) == 3
    assert not compiling.worth_compiling(lambda t: t + 1, x)
    assert compiling.worth_compiling(lambda t: [t := t + 1 for _ in range(compiling.MIN_OPERATIONS)][-1], x)


def test_compile_steps_compiles_rotations_not_translations(monkeypatch):
    monkeypatch.setenv(native.SWITCH, "1")  # what happens with the switch on, whatever the environment says
    compiled = []
    monkeypatch.setattr(compiling, "CompiledOrEager", lambda function, what, **_: compiled.append(what) or function)
    assert liemem.build_model("slantm", VOCAB).compile_steps()  # the kernels move the heads: the Jacobians only
    python_moves = liemem.build_model("slantm", VOCAB)
    python_moves.native_moves = False
    assert python_moves.compile_steps()
    assert not liemem.build_model("lantm", VOCAB).compile_steps()  # a translation's move is too light to pay
    plain = liemem.build_model("slantm", VOCAB)
    plain.fused_loop = False
    assert not plain.compile_steps()  # only the fused loops call the compiled functions
    # A group with trainable parameters: its move compiles, its gradients come from an autograd replay.
    assert liemem.build_model("slantm", VOCAB, group_options={"angle_bound": True}).compile_steps()
    assert compiled == [
        "the Jacobian of the so3 heads' move",
        "the so3 heads' move",
        "the Jacobian of the so3 heads' move",
        "the so3 heads' move",
    ]


@pytest.mark.parametrize("name, options", [("so3", {}), ("se2", {"action_interpolation": True})])
def test_move_jacobian_matches_autograd_one_move_at_a_time(name, options):
    """`move_jacobian` (vectorised torch.func) against torch.autograd.functional.jacobian of each move alone."""
    model = liemem.build_model(name, VOCAB, **options).double()
    heads, group = model.heads, model.group
    generator = torch.Generator().manual_seed(0)
    rows = 5
    raw = torch.randn(rows, heads.raw_size, dtype=torch.float64, generator=generator)
    position = model.key_space.random(rows, dtype=torch.float64, generator=generator)
    action = group.random(rows, dtype=torch.float64, generator=generator)
    jacobian = compiling.move_jacobian(heads)(raw, position, action)
    for i in range(rows):

        def one(r, p, a):
            moved = heads.move(r[None, None], liemem.heads.HeadState(p[None, None], a[None, None]))
            out = moved.position[0, 0]
            return torch.cat((out, moved.action[0, 0].flatten())) if heads.action_interpolation else out

        inputs = (raw[i], position[i], action[i]) if heads.action_interpolation else (raw[i], position[i])
        call = one if heads.action_interpolation else (lambda r, p, i=i: one(r, p, action[i]))
        parts = torch.autograd.functional.jacobian(call, inputs)
        expected = torch.cat([part.flatten(1) for part in parts], dim=-1)
        torch.testing.assert_close(jacobian[i], expected, rtol=1e-10, atol=1e-12)


def test_compiled_move_is_the_same_function_and_only_trains():
    """torch.compile of SO(3)'s move and of its Jacobians: the same loss and gradients as eager; inference
    passes stay eager."""
    require_torch_compile()
    model = perturbed("slantm")
    model.native_moves = False  # the group's Python move, compiled
    inputs, targets = batch(size=8, length=8)
    eager = loss_and_grads(model, inputs, targets)
    assert model.compile_steps()
    assert model.move_for(False) == model.heads.move and model.move_for(True) is model._compiled_move
    assert model.jacobian_for(False) is None and model.jacobian_for(True) is model._compiled_jacobian
    fast = loss_and_grads(model, inputs, targets)
    torch.testing.assert_close(fast[0], eager[0], rtol=1e-5, atol=1e-6)
    for key, grad in eager[1].items():
        torch.testing.assert_close(fast[1][key], grad, rtol=1e-3, atol=1e-5, msg=key)
    assert model._compiled_jacobian.compiled is not None  # it compiled, rather than falling back
    twin = copy.deepcopy(model)  # a compiled function does not copy; the copy runs eagerly
    assert twin._compiled_move is None and twin._compiled_jacobian is None
    torch.testing.assert_close(twin(inputs, 7), model(inputs, 7))


def test_a_move_that_fails_to_compile_runs_eagerly(monkeypatch):
    monkeypatch.setenv(native.SWITCH, "1")  # what happens with the switch on, whatever the environment says

    def failing_compile(function, **kwargs):
        def run(*args):
            raise RuntimeError("inductor: no working C++ compiler")

        return run

    monkeypatch.setattr(torch, "compile", failing_compile)
    model = perturbed("slantm")
    model.native_moves = False
    inputs, targets = batch()
    expected = loss_and_grads(model, inputs, targets)
    assert model.compile_steps()
    with pytest.warns(RuntimeWarning) as record:
        result = loss_and_grads(model, inputs, targets)
    messages = sorted(str(warning.message) for warning in record)
    assert messages == [
        "liemem: could not compile the Jacobian of the so3 heads' move (inductor: no working C++ compiler); "
        "running it eagerly",
        "liemem: could not compile the so3 heads' move (inductor: no working C++ compiler); running it eagerly",
    ]
    assert model._compiled_move.compiled is None and model._compiled_jacobian.compiled is None  # no retries
    torch.testing.assert_close(result[0], expected[0], rtol=0, atol=0)


@pytest.mark.parametrize("steps, compiles", [(2, False), (3, True)])
def test_training_runs_of_enough_steps_compile(monkeypatch, tmp_path, steps, compiles):
    from liemem.models import LieAccessMachine
    from liemem.training import loop

    calls = []
    monkeypatch.setattr(LieAccessMachine, "compile_steps", lambda self: calls.append("compile") or False)
    monkeypatch.setattr(torch.compiler, "reset", lambda: calls.append("reset"))
    monkeypatch.setattr(loop, "COMPILE_MIN_STEPS", 3)
    config = TrainConfig(task="copy", model="lantm", steps=steps, train_lengths=(2, 3), test_lengths=(4, 5))
    train(config, tmp_path, progress=False)
    # A run compiles from a clean slate, so that earlier runs' graphs do not use up torch's recompilation limit.
    assert calls == (["reset", "compile"] if compiles else [])


def test_bucket_rows_rounds_up_to_a_power_of_two():
    assert [compiling.bucket_rows(n) for n in (1, 256, 257, 1000, 1024, 6208)] == [256, 256, 512, 1024, 1024, 8192]


def test_padded_rows_meet_few_shapes_and_give_each_row_its_own_result(monkeypatch):
    shapes = []

    def recording_compile(function, **kwargs):
        return lambda *args: shapes.append(tuple(x.shape for x in args)) or function(*args)

    monkeypatch.setattr(torch, "compile", recording_compile)
    function = compiling.CompiledOrEager(lambda x, y: x * y.sum(-1, keepdim=True), "a product", pad_rows=True)
    for rows in (3, 300, 400):
        x, y = torch.arange(rows * 2.0).view(rows, 2), torch.ones(rows, 3)
        torch.testing.assert_close(function(x, y), 3 * x, rtol=0, atol=0)
    assert shapes == [((256, 2), (256, 3)), ((512, 2), (512, 3)), ((512, 2), (512, 3))]


def test_a_compiled_move_meets_one_graph_per_head_count(monkeypatch):
    """The fused loops hand `move` states of one layout: the first step's and the answer phase's states look like
    those `move` returns, so a statically compiled move is compiled twice (two heads, then one), not four times."""
    model = liemem.build_model("slantm", VOCAB)
    layouts = set()
    original = model.heads.move

    def recording_move(raw, state):
        tensors = (raw, state.position, state.action)
        if torch.is_inference_mode_enabled():  # the loop's own steps, not the replay of all of them
            layouts.add(tuple((x.shape, x.stride(), torch.is_inference(x)) for x in tensors))
        return original(raw, state)

    monkeypatch.setattr(model.heads, "move", recording_move)
    for compiled in (True, False):
        layouts.clear()
        model.compiled_loop = compiled
        model(*batch()[:1], 5).sum().backward()
        assert len(layouts) == 2, layouts


@pytest.mark.parametrize(
    "name, options, kind",
    [
        ("lantm", {}, lantm_compiled.TRANSLATION),
        ("lantm-s", {"group_options": {"n": 3}}, lantm_compiled.TRANSLATION),
        ("slantm", {}, lantm_compiled.ROTATION),
        ("slantm-s", {}, lantm_compiled.ROTATION),
        ("slantm", {"group_options": {"angle_bound": True}}, None),  # a learnable bound: the group's Python
        ("lantm", {"action_interpolation": True}, None),
        ("se2", {}, None),
        ("torus", {}, None),
    ],
)
def test_built_in_moves_run_inside_the_kernels_only_where_they_mirror_the_group(monkeypatch, name, options, kind):
    kernels = require_compiled_kernels()
    model = liemem.build_model(name, VOCAB, **options)
    assert lantm_compiled.native_move(model) == kind
    runs = []

    class Spy:
        def __getattr__(self, attribute):
            return getattr(kernels, attribute)

        def ForwardLoop(self, *arguments):
            loop = kernels.ForwardLoop(*arguments)

            class Loop:
                def __getattr__(self, attribute):
                    return getattr(loop, attribute)

                def run(self, *run_arguments):
                    runs.append(run_arguments[0])
                    return loop.run(*run_arguments)

            return Loop()

    monkeypatch.setattr(lantm_compiled, "kernels_for", lambda model, projected: Spy())
    model(*batch()[:1], 5)
    assert runs == ([] if kind is None else [kind])
    model.native_moves = False
    assert lantm_compiled.native_move(model) is None
    model.native_moves = True
    monkeypatch.setattr(model.heads, "move", model.heads.move)  # a move replaced on the instance is the user's
    assert lantm_compiled.native_move(model) is None


@pytest.mark.parametrize(
    "group_name, options", [("translation", {"n": 1}), ("translation", {}), ("translation", {"n": 3}), ("so3", {})]
)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_built_in_moves_equal_the_groups_python_moves(group_name, options, dtype):
    """The kernels' moves against `LieHeads.move` on the same inputs: typical, tiny, huge and zero raw outputs,
    gates fully open and shut, and heads at random keys."""
    kernels = require_compiled_kernels()
    heads = liemem.heads.LieHeads(groups.get(group_name, **options))
    kind = lantm_compiled.TRANSLATION if group_name == "translation" else lantm_compiled.ROTATION
    generator = torch.Generator().manual_seed(0)
    scales = torch.tensor([1.0, 1e-30, 1e-4, 0.3, 3.0, 1e4, 1e30, 0.0], dtype=torch.float64)
    rows = 16 * len(scales)
    raw = torch.randn(rows, heads.raw_size, dtype=torch.float64, generator=generator)
    raw = (raw * scales.repeat_interleave(16)[:, None]).to(dtype)
    raw[:8, heads.gate_index] = torch.tensor([-1e30, 1e30, -50, 50, 0, -1, 1, 30], dtype=dtype)
    raw[8, 0] = raw[9, heads.gate_index - 1] = raw[10, heads.gate_index] = math.nan  # NaNs carry through
    position = heads.group.key_space.random(rows, dtype=dtype, generator=generator)
    action = heads.group.random(rows, dtype=dtype, generator=generator)
    expected = heads.move(raw[:, None], liemem.heads.HeadState(position[:, None], action[:, None]))
    moved_position, moved_action = position.clone(), action.clone()
    kernels.native_move(kind, raw, moved_position, moved_action, *lantm_compiled.move_constants(dtype))
    tolerance = {"rtol": 1e-12, "atol": 1e-14} if dtype == torch.float64 else {"rtol": 2e-6, "atol": 2e-6}
    assert expected.position[8:11].isnan().any(dim=-1).all()
    torch.testing.assert_close(moved_position, expected.position[:, 0], equal_nan=True, **tolerance)
    torch.testing.assert_close(moved_action, expected.action[:, 0], equal_nan=True, **tolerance)
    if group_name == "so3":
        # Zero raw outputs (the last 16 rows): the key softly projects to 0, not to a point of the sphere, the gate
        # is sigmoid(0) = 1/2 and the rotation the identity, so the head lands at p / 2 / sqrt(1/4 + 1e-10) (the
        # sphere's softened projection of the lerp p / 2), next to where it was.
        start = position[-16:].double()
        reference = (0.5 * start / math.sqrt(0.25 + 1e-10)).to(dtype)
        torch.testing.assert_close(moved_position[-16:], reference, **tolerance)


def test_a_compiled_move_with_a_learnable_bound_gives_the_eager_gradients():
    """SLANTM with a learnable angle bound compiles its move but not its Jacobians: the bound's gradient comes
    from the autograd replay, and equals the eager one."""
    require_torch_compile()
    model = perturbed("slantm", group_options={"angle_bound": True})
    inputs, targets = batch(size=4, length=6)
    eager = loss_and_grads(model, inputs, targets)
    assert model.compile_steps()
    assert model._compiled_move is not None and model._compiled_jacobian is None
    fast = loss_and_grads(model, inputs, targets)
    torch.testing.assert_close(fast[0], eager[0], rtol=1e-5, atol=1e-6)
    assert eager[1]["heads.group.angle.bound_logit"].abs() > 0
    for key, grad in eager[1].items():
        torch.testing.assert_close(fast[1][key], grad, rtol=1e-3, atol=1e-5, msg=key)
