"""The engine (liemem.engine): the plan and its switch, the compiled kernels and torch.compile of group moves
(same function as the reference, fallbacks when they cannot be built, clear errors for bad buffers), weightings
as objects, and the groups' declared kernel moves."""

from __future__ import annotations

import copy
import math
import os
import warnings

import pytest
import torch
import torch.nn.functional as F

import groups
import liemem
import manifolds
from helpers import PATHS, require_compiled_kernels, require_torch_compile
from liemem import engine
from liemem.engine import compiling, native, replay
from liemem.engine import kernels as kernel_backend
from liemem.engine import plan as planning
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


def _switch_on(monkeypatch):
    """What happens with the switch at its default, whatever the environment says."""
    monkeypatch.delenv(engine.SWITCH, raising=False)
    monkeypatch.delenv(planning.LEGACY_SWITCH, raising=False)


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
    float32 rounding: within 1e-4 of each gradient's scale, or, where the autograd loop's own float32 gradient is
    further than half that from the float64 one, within twice its distance, which is how far apart two paths as
    accurate as it may be. The second bound matters where rounding carries far: the Möbius group's reads divide by
    1 - |x|^2, which is 2e-3 at the Poincaré ball's margin, and its gradients part from float64 by up to 3e-4 of
    their scale on every path."""
    require_compiled_kernels()
    model = perturbed(name)
    inputs, targets = batch(size=8, length=12)
    results = {}
    for path, switch in PATHS.items():
        with engine.forced(switch):
            results[path] = loss_and_grads(model, inputs, targets)
    with engine.forced("autograd"):
        _, exact_grads = loss_and_grads(copy.deepcopy(model).double(), inputs, targets)
    plain_loss, plain_grads = results.pop("autograd")
    for path, (fast_loss, fast_grads) in results.items():
        torch.testing.assert_close(fast_loss, plain_loss, rtol=1e-5, atol=1e-6, msg=path)
        for key, grad in plain_grads.items():
            scale = grad.abs().max().item()
            own_error = (grad.double() - exact_grads[key]).abs().max().item()
            tolerance = {"rtol": 1e-3, "atol": max(1e-4 * max(scale, 1e-3), 2 * own_error)}
            torch.testing.assert_close(fast_grads[key], grad, **tolerance, msg=f"{path}: {key}")


@pytest.mark.parametrize("variable, value", [(engine.SWITCH, "no-compile"), (planning.LEGACY_SWITCH, "0")])
def test_the_switch_turns_the_kernels_off(monkeypatch, variable, value):
    monkeypatch.delenv(engine.SWITCH, raising=False)
    monkeypatch.delenv(planning.LEGACY_SWITCH, raising=False)
    monkeypatch.setenv(variable, value)
    assert not native.enabled()
    calls = []
    monkeypatch.setattr(kernel_backend, "forward", lambda *args: calls.append(1))
    model = liemem.build_model("lantm", VOCAB)
    assert model.plan() == ("loop", "python", "autograd", f"compiling is off ({variable}={value})")
    model(*batch()[:1], 5).sum().backward()
    assert calls == []  # the tensor-operation loop ran
    assert not model.compile_steps()


def test_the_kernels_run_by_default(monkeypatch):
    require_compiled_kernels()
    calls = []
    original = kernel_backend.forward
    monkeypatch.setattr(kernel_backend, "forward", lambda *args: calls.append(1) or original(*args))
    liemem.build_model("lantm", VOCAB)(*batch()[:1], 5)
    assert calls == [1]


def test_kernels_apply_to_cpu_float32_and_float64_only(monkeypatch):
    require_compiled_kernels()
    monkeypatch.delenv(engine.SWITCH, raising=False)
    model = liemem.build_model("lantm", VOCAB)
    for dtype in (torch.float32, torch.float64):
        assert engine.plan_for(model, "cpu", dtype, True) == engine.Plan("kernels", "built-in", "autograd")
    bfloat16 = engine.plan_for(model, "cpu", torch.bfloat16, True)
    assert bfloat16 == engine.Plan("loop", "python", "autograd", "the kernels run in float32 or float64, and the "
                                   "model is in bfloat16")  # fmt: skip
    assert (
        engine.plan_for(model, "meta", torch.float32, True).note
        == "the kernels run on the CPU, and the model is on meta"
    )
    with engine.forced("kernels"), pytest.raises(engine.EngineError, match="the kernels backend cannot run this model: "
                                                  "the kernels run in float32 or float64"):  # fmt: skip
        engine.plan_for(model, "cpu", torch.bfloat16, True)


def test_a_failed_build_is_reported_once_per_machine_and_falls_back(monkeypatch, tmp_path):
    monkeypatch.delenv(engine.SWITCH, raising=False)  # the switch on, whatever the environment says
    monkeypatch.delenv(planning.LEGACY_SWITCH, raising=False)
    from torch.utils import cpp_extension

    attempts = []

    def broken(*args, **kwargs):
        attempts.append(1)
        raise RuntimeError("Error building extension: no compiler\nmore details")

    model = liemem.build_model("lantm", VOCAB)
    inputs, targets = batch()
    with engine.forced("loop:python"):
        expected = loss_and_grads(model, inputs, targets)
    monkeypatch.setattr(cpp_extension, "load", broken)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    native._build.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match=r"could not compile the loop kernels \(Error building extension"):
            result = loss_and_grads(model, inputs, targets)
        assert model.plan().note == "the kernels did not build on this machine"
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the second forward pass does not warn again
            loss_and_grads(model, inputs, targets)
            native._build.cache_clear()  # another process on this machine: it reads the note, and stays quiet
            loss_and_grads(model, inputs, targets)
        assert attempts == [1]
        (note,) = tmp_path.glob(f"*/{native.FAILED_NOTE}")
        monkeypatch.setenv("CXX", "another-c++")  # another compiler: worth a new attempt, reported again
        native._build.cache_clear()
        with pytest.warns(RuntimeWarning, match="could not compile the loop kernels"):
            loss_and_grads(model, inputs, targets)
        assert attempts == [1, 1]
        assert note.read_text() == "compiler: another-c++\nError building extension: no compiler\n"
    finally:
        native._build.cache_clear()  # later tests load the real build (cached on disk)
    torch.testing.assert_close(result[0], expected[0], rtol=0, atol=0)  # the tensor-operation loop, bit for bit
    for key, grad in expected[1].items():
        torch.testing.assert_close(result[1][key], grad, rtol=0, atol=0, msg=key)


def _captured_loop(monkeypatch, kernels, name="lantm"):
    """The buffers and layout one real forward pass gives `ForwardLoop`."""
    captured = []

    class Capture:
        def __getattr__(self, attribute):
            return getattr(kernels, attribute)

        def ForwardLoop(self, buffers, layout):
            captured.append((buffers, layout))
            return kernels.ForwardLoop(buffers, layout)

    monkeypatch.setattr(native, "lantm_loop", lambda: Capture())
    liemem.build_model(name, VOCAB)(*batch()[:1], 5)
    monkeypatch.undo()
    return captured[0]


def _copy(struct, kind):
    copied = kind()
    for field in dir(struct):
        if not field.startswith("_") and getattr(struct, field) is not None:  # an unset tensor reads as None
            setattr(copied, field, getattr(struct, field))
    return copied


# The captured pass reads `batch()`'s 6 tokens with 5 answer steps: 5 input steps (every token but the separator,
# which begins the answer phase), so 5 + 1 = 6 memory slots and 5 + 5 = 10 steps in all.
@pytest.mark.parametrize(
    "field, replace, message",
    [
        ("keys", lambda keys: keys.transpose(1, 2).contiguous().transpose(1, 2), "keys must be contiguous"),
        ("values", lambda values: values.double(), "values must be Float, not Double"),
        ("keys", lambda keys: keys[..., :-1].contiguous(), "the memory needs input_length \\+ initial_slots slots"),
        ("values", lambda values: values[..., :-1].contiguous(), "values must have size 6 along dimension 2, not 5"),
        ("dist2", lambda dist2: dist2[:, :, :-1].contiguous(), "dist2 must have size 6 along dimension 2, not 5"),
        ("outputs", lambda outputs: outputs[:-1], "outputs must have size 10 along dimension 0, not 9"),
        ("nearest", lambda nearest: nearest.int(), "nearest must be contiguous int64"),
        ("input_length", lambda length: 10, "input_length must be in \\[1, steps\\)"),
    ],
)
def test_the_forward_loop_refuses_buffers_it_cannot_index(monkeypatch, field, replace, message):
    kernels = require_compiled_kernels()
    buffers, layout = _captured_loop(monkeypatch, kernels)
    kernels.ForwardLoop(buffers, layout)  # as captured, accepted
    buffers, layout = _copy(buffers, kernels.LoopBuffers), _copy(layout, kernels.LoopLayout)
    owner = layout if hasattr(layout, field) else buffers
    setattr(owner, field, replace(getattr(owner, field)))
    with pytest.raises(RuntimeError, match=message):
        kernels.ForwardLoop(buffers, layout)


def test_the_forward_loop_refuses_bad_steps_and_head_positions(monkeypatch):
    kernels = require_compiled_kernels()
    buffers, layout = _captured_loop(monkeypatch, kernels)
    loop = kernels.ForwardLoop(buffers, layout)
    input_length, batch_size = layout.input_length, buffers.projected.shape[1]
    steps = buffers.projected.shape[0]
    assert (input_length, steps) == (5, 10)  # 6 tokens: 5 input steps, then the separator's and 4 more answer steps
    assert loop.control(0).shape == (batch_size, 2, layout.raw_size)  # both heads while writing
    assert loop.control(input_length).shape == (batch_size, 1, layout.raw_size)  # the read head after
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
    require_compiled_kernels()
    _switch_on(monkeypatch)
    compiled = []
    monkeypatch.setattr(compiling, "CompiledOrEager", lambda function, what, **_: compiled.append(what) or function)
    assert liemem.build_model("slantm", VOCAB).compile_steps()  # the kernels move the heads: the Jacobians only
    with engine.forced("kernels:compiled"):
        assert liemem.build_model("slantm", VOCAB).compile_steps()
    assert not liemem.build_model("lantm", VOCAB).compile_steps()  # a translation's move is too light to pay
    with engine.forced("autograd"):
        assert not liemem.build_model("slantm", VOCAB).compile_steps()  # only the fast backends call them
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
    jacobian = replay.move_jacobian(heads)(raw, position, action)
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
    model.heads.move = model.heads.move  # the group's Python move (replaced, so not built in), compiled
    inputs, targets = batch(size=8, length=8)
    eager = loss_and_grads(model, inputs, targets)
    assert model.compile_steps()
    assert model.plan(training=False)[:3] == ("kernels", "python", "autograd")
    assert model.plan(training=True)[:3] == ("kernels", "compiled", "compiled")
    fast = loss_and_grads(model, inputs, targets)
    torch.testing.assert_close(fast[0], eager[0], rtol=1e-5, atol=1e-6)
    for key, grad in eager[1].items():
        torch.testing.assert_close(fast[1][key], grad, rtol=1e-3, atol=1e-5, msg=key)
    assert model._compiled_steps.jacobian.compiled is not None  # it compiled, rather than falling back
    twin = copy.deepcopy(model)  # a compiled function does not copy; the copy runs eagerly
    assert twin._compiled_steps is None and twin.plan()[:3] == ("kernels", "python", "autograd")
    torch.testing.assert_close(twin(inputs, 7), model(inputs, 7))


def test_a_move_that_fails_to_compile_runs_eagerly(monkeypatch):
    _switch_on(monkeypatch)

    def failing_compile(function, **kwargs):
        def run(*args):
            raise RuntimeError("inductor: no working C++ compiler")

        return run

    monkeypatch.setattr(torch, "compile", failing_compile)
    model = perturbed("slantm")
    model.heads.move = model.heads.move  # not built in: the group's Python
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
    compiled = model._compiled_steps
    assert compiled.move.compiled is None and compiled.jacobian.compiled is None  # no retries
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
    # A run compiles its own functions without resetting what the process compiled before (`own_code`).
    assert calls == (["compile"] if compiles else [])


def test_own_code_copies_the_code_and_keeps_the_function():
    model = liemem.build_model("slantm", VOCAB)
    move = compiling.own_code(model.heads.move)
    assert move.__code__ is not type(model.heads).move.__code__ and move.__self__ is model.heads
    state = model.heads.initial_state(model.initial_positions.detach(), 2)
    raw = torch.randn(2, 2, model.heads.raw_size)
    torch.testing.assert_close(move(raw, state).position, model.heads.move(raw, state).position, rtol=0, atol=0)
    closure = compiling.own_code(lambda x, k=2: x * k)
    assert closure(3) == 6


def test_training_leaves_the_callers_random_generator_as_it_was(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    config = TrainConfig(task="copy", model="lantm", steps=2, train_lengths=(2, 3), test_lengths=(4, 5))
    train(config, tmp_path, progress=False, echo=lambda line: None)
    torch.testing.assert_close(torch.rand(3), expected, rtol=0, atol=0)


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
    for switch in ("auto", "loop"):  # the kernels where they build, then the tensor-operation loop
        layouts.clear()
        with engine.forced(switch):
            model(*batch()[:1], 5).sum().backward()
        assert len(layouts) == 2, layouts


@pytest.mark.parametrize(
    "name, options, kind",
    [
        ("lantm", {}, kernel_backend.MOVES["translation"]),
        ("lantm-s", {"group_options": {"n": 3}}, kernel_backend.MOVES["translation"]),
        ("slantm", {}, kernel_backend.MOVES["rotation"]),
        ("slantm-s", {}, kernel_backend.MOVES["rotation"]),
        ("slantm", {"group_options": {"angle_bound": True}}, None),  # a learnable bound: the group's Python
        ("lantm", {"action_interpolation": True}, None),
        ("se2", {}, None),
        ("torus", {}, None),
    ],
)
def test_built_in_moves_run_inside_the_kernels_only_where_they_mirror_the_group(monkeypatch, name, options, kind):
    kernels = require_compiled_kernels()
    monkeypatch.delenv(engine.SWITCH, raising=False)
    model = liemem.build_model(name, VOCAB, **options)
    assert model.plan().move == ("python" if kind is None else "built-in")
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

    monkeypatch.setattr(native, "lantm_loop", lambda: Spy())
    model(*batch()[:1], 5)
    assert runs == ([] if kind is None else [kind])
    with engine.forced("kernels:python"):
        assert model.plan().move == "python"
    monkeypatch.setattr(model.heads, "move", model.heads.move)  # a move replaced on the instance is the user's
    assert model.plan().move == "python"


def test_a_key_space_with_its_own_random_access_keys_runs_the_groups_python_move(monkeypatch):
    """The built-in moves aim random access at pi(raw), as `KeySpace.random_access_key` does by default; a key space
    that aims elsewhere (as the Poincaré ball does) must not have its rule replaced by theirs."""
    require_compiled_kernels()
    monkeypatch.delenv(engine.SWITCH, raising=False)
    assert liemem.build_model("lantm", VOCAB).plan().move == "built-in"
    monkeypatch.setattr(manifolds.Euclidean, "random_access_key", lambda self, raw: 0.5 * raw, raising=False)
    model = liemem.build_model("lantm", VOCAB)
    assert model.plan().move == "python"
    with pytest.raises(planning.EngineError, match="names random-access keys its own way"):
        with engine.forced("kernels:built-in"):
            model.plan()


@pytest.mark.parametrize(
    "group_name, options", [("translation", {"n": 1}), ("translation", {}), ("translation", {"n": 3}), ("so3", {})]
)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_built_in_moves_equal_the_groups_python_moves(group_name, options, dtype):
    """The kernels' moves against `LieHeads.move` on the same inputs: typical, tiny, huge and zero raw outputs,
    gates fully open and shut, and heads at random keys."""
    kernels = require_compiled_kernels()
    heads = liemem.heads.LieHeads(groups.get(group_name, **options))
    kind = kernel_backend.MOVES[heads.group.kernel_move()]
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
    kernels.native_move(kind, raw, moved_position, moved_action, kernel_backend.move_constants(kernels, dtype))
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
    assert model._compiled_steps.move is not None and model._compiled_steps.jacobian is None
    fast = loss_and_grads(model, inputs, targets)
    torch.testing.assert_close(fast[0], eager[0], rtol=1e-5, atol=1e-6)
    assert eager[1]["heads.group.angle.bound_logit"].abs() > 0
    for key, grad in eager[1].items():
        torch.testing.assert_close(fast[1][key], grad, rtol=1e-3, atol=1e-5, msg=key)


# --- the plan and its switch ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["fast", "autograd:python", "kernels:fast", "loop:"])
def test_an_unreadable_switch_is_refused_by_name(monkeypatch, value):
    monkeypatch.setenv(engine.SWITCH, value)
    with pytest.raises(engine.EngineError, match=f"{engine.SWITCH}='{value}' is not a plan; use auto, no-compile"):
        liemem.build_model("lantm", VOCAB)(*batch()[:1], 5)


def test_a_forced_plan_that_cannot_run_says_why(monkeypatch):
    monkeypatch.delenv(engine.SWITCH, raising=False)
    model = liemem.build_model("lantm", VOCAB, controller_layers=2)
    assert model.plan() == ("autograd", "python", "autograd", "its controller is a 2-layer lstm; the fast backends "
                            "know a 1-layer LSTM")  # fmt: skip
    with engine.forced("loop"), pytest.raises(engine.EngineError, match="the loop backend cannot run this model"):
        model(*batch()[:1], 5)
    with engine.forced("loop:built-in"), pytest.raises(engine.EngineError, match="no built-in move for this model"):
        liemem.build_model("lantm", VOCAB).plan()


def test_the_plan_shows_in_the_models_repr(monkeypatch):
    monkeypatch.delenv(engine.SWITCH, raising=False)
    with engine.forced("loop"):
        assert "engine='loop, python move'" in repr(liemem.build_model("slantm", VOCAB))
    with engine.forced("kernels"):
        text = repr(liemem.build_model("lantm", VOCAB, weighting="cauchy"))
    assert 'engine="none (LIEMEM_ENGINE=kernels: the kernels backend cannot run this model' in text


def test_forced_restores_the_callers_setting(monkeypatch):
    monkeypatch.setenv(engine.SWITCH, "loop")
    with engine.forced("autograd"):
        assert planning.requested().backend == "autograd"
    assert planning.requested().backend == "loop"
    monkeypatch.delenv(engine.SWITCH)
    with pytest.raises(engine.EngineError), engine.forced("nonsense"):
        pass
    assert engine.SWITCH not in os.environ


# --- weightings as objects --------------------------------------------------------------------------------------


def test_cauchy_weights_match_a_hand_computed_example():
    """Squared distances 0, 1 and 4 at width 1, strengths 1, 1 and 1/2: factors 1, 1/2 and 1/5, so the weights
    are (1, 1/2, 1/10) / 1.6 (plus the 1e-9 floor, below this tolerance)."""
    dist2 = torch.tensor([[[0.0, 1.0, 4.0]]], dtype=torch.float64)
    strengths = torch.tensor([[[1.0, 1.0, 0.5]]], dtype=torch.float64)
    weights = liemem.weighting.get("cauchy").weights(dist2, strengths, torch.ones(1, 1, 1, dtype=torch.float64))
    expected = torch.tensor([[[1.0, 0.5, 0.1]]], dtype=torch.float64) / 1.6
    torch.testing.assert_close(weights, expected, rtol=1e-8, atol=0)


def test_a_weighting_the_fast_backends_lack_runs_on_autograd_and_trains(monkeypatch):
    monkeypatch.delenv(engine.SWITCH, raising=False)
    torch.manual_seed(0)
    model = liemem.build_model("lantm", VOCAB, weighting="cauchy")
    assert model.step_projection.out_features == liemem.build_model("lantm", VOCAB).step_projection.out_features + 1
    assert model.plan() == ("autograd", "python", "autograd", "the fast backends have no gradient for weighting "
                            "'cauchy' (they have inverse_square, softmax)")  # fmt: skip
    inputs, targets = batch(size=8, length=5)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(inputs, 4).flatten(0, 1), targets.flatten())
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert model.step_projection.weight.grad[-model.config.memory_width - 2].abs().sum() > 0  # the width's row


def test_a_users_weighting_registers_by_subclassing():
    class Uniform(liemem.weighting.Weighting, name="test-uniform"):
        def weights(self, dist2, strengths, parameters):
            return torch.full_like(dist2, 1.0 / dist2.shape[-1])

    try:
        model = liemem.build_model("lantm", VOCAB, weighting="test-uniform")
        trace = model.trace(batch()[0], 5)
        for weights in trace.read_weights:
            torch.testing.assert_close(weights, torch.full_like(weights, 1.0 / weights.shape[-1]))
        with pytest.raises(ValueError, match="a weighting named 'test-uniform' is already registered"):
            type("Again", (liemem.weighting.Weighting,), {}, name="test-uniform")
    finally:
        liemem.weighting._REGISTRY.pop("test-uniform")
    with pytest.raises(liemem.ConfigError, match="weighting"):
        liemem.build_model("lantm", VOCAB, weighting="test-uniform")


# --- what groups declare ---------------------------------------------------------------------------------------


def test_a_subclass_does_not_inherit_its_parents_kernel_move():
    class Shifted(groups.Translation):
        def act(self, g, x):
            return x + 2 * g

    assert groups.Translation().kernel_move() == "translation" and groups.SO3().kernel_move() == "rotation"
    assert Shifted().kernel_move() is None
    assert groups.SO3(angle_bound=True).kernel_move() is None
    assert groups.get("se2").kernel_move() is None


def test_so3_and_the_kernels_share_one_series():
    """The half-angle series in `groups.numerics` against cos(theta / 2) and sin(theta / 2) / theta in float64, up to
    the series' truncation (below 1e-13 where it is used)."""
    for theta in (0.0, 1e-4, 1e-3, 3e-2):
        x = theta * theta
        assert groups.numerics.series(groups.numerics.HALF_ANGLE_COS, x) == pytest.approx(
            math.cos(theta / 2), abs=1e-12
        )
        sinc = 0.5 if theta == 0 else math.sin(theta / 2) / theta
        assert groups.numerics.series(groups.numerics.HALF_ANGLE_SINC, x) == pytest.approx(sinc, abs=1e-12)


# --- the content read of RAM and RAM/tape -----------------------------------------------------------------------

CONTENT_CASES = {
    "ram": ("ram", {}),
    "ram-tape": ("ram-tape", {}),
    "ram-sharpened-2": ("ram", {"sharpening": True, "key_dim": 2}),
    "ram-tape-sharpened-2": ("ram-tape", {"sharpening": True, "key_dim": 2}),
}


@pytest.mark.parametrize("backend", ["loop", "kernels"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", CONTENT_CASES)
def test_the_content_loop_equals_the_autograd_ram(case, dtype, backend):
    """`engine.content`, in tensor operations and on the kernels, against the model's own step-by-step autograd
    loop: logits and the gradient of every parameter, to 1e-9 in float64 and to float32 rounding in float32."""
    if backend == "kernels":
        require_compiled_kernels()
    name, options = CONTENT_CASES[case]
    model = perturbed(name, **options).to(dtype)
    inputs, targets = batch(size=5, length=9)
    results = {}
    for switch in ("autograd", backend):
        with engine.forced(switch):
            model.zero_grad()
            logits = model(inputs, targets.shape[1])
            (logits.sin().sum() + F.cross_entropy(logits.flatten(0, 1), targets.flatten())).backward()
            results[switch] = logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}
    (plain, plain_grads), (fast, fast_grads) = results["autograd"], results[backend]
    if dtype == torch.float64:
        torch.testing.assert_close(fast, plain, rtol=1e-12, atol=1e-12)
    else:
        torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
    for key, grad in plain_grads.items():
        scale = grad.abs().max().item()
        assert scale > 0, key  # every parameter takes part, so each comparison can fail
        if dtype == torch.float64:
            torch.testing.assert_close(fast_grads[key], grad, rtol=1e-9, atol=1e-12 * max(scale, 1.0), msg=key)
        else:
            torch.testing.assert_close(fast_grads[key], grad, rtol=1e-3, atol=1e-4 * scale, msg=key)


def test_content_models_plan_the_kernels_or_say_why_not(monkeypatch):
    require_compiled_kernels()
    monkeypatch.delenv(engine.SWITCH, raising=False)
    assert liemem.build_model("ram-tape", VOCAB).plan() == ("kernels", "none", "none", "")
    assert str(liemem.build_model("ram", VOCAB).plan()) == "kernels"
    with engine.forced("no-compile"):
        assert str(liemem.build_model("ram", VOCAB).plan()) == "loop (compiling is off (LIEMEM_ENGINE=no-compile))"
    deep = liemem.build_model("ram", VOCAB, controller_layers=2)
    assert deep.plan()[0] == "autograd" and "2-layer lstm" in deep.plan().note
    with engine.forced("kernels"), pytest.raises(engine.EngineError, match="the kernels run on the CPU"):
        engine.plan_for(liemem.build_model("ram", VOCAB), "meta", torch.float32, True)
    with engine.forced("loop:python"), pytest.raises(engine.EngineError, match="no heads to move"):
        liemem.build_model("ram", VOCAB).plan()


def test_the_content_loop_keeps_gradients_finite_over_500_steps(monkeypatch):
    monkeypatch.delenv(engine.SWITCH, raising=False)
    torch.manual_seed(0)
    model = liemem.build_model("ram-tape", VOCAB, sharpening=True)
    logits = model(torch.randint(0, VOCAB, (2, 250)), 250)
    F.cross_entropy(logits.flatten(0, 1), torch.randint(0, VOCAB, (500,))).backward()
    assert torch.isfinite(logits).all()
    for name, parameter in model.named_parameters():
        assert torch.isfinite(parameter.grad).all(), name
