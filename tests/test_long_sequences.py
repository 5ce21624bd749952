"""Long sequences: reads recomputed by the backward pass instead of kept, memory estimated before a run, and the
one-line refusal of a run that cannot fit."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import groups
from helpers import PATHS, require_compiled_kernels
from liemem import build_model, cli, engine, footprint, memory, tasks, weighting
from liemem.engine import kernels, tensor_ops
from liemem.engine import plan as engine_plan

VOCAB = 8
FAST_WEIGHTINGS = ("inverse_square", "softmax")
CASES = [(group, weigh) for group in groups.names() for weigh in FAST_WEIGHTINGS] + [("ram", None), ("ram-tape", None)]


def build(group: str, weigh: str | None):
    torch.manual_seed(3)
    if weigh is None:
        model = build_model(group, VOCAB, sharpening=True)
    else:
        model = build_model("lantm", VOCAB, group=group, weighting=weigh)
    model = model.double()
    with torch.no_grad():  # away from the symmetric initial state, so that every term matters
        for parameter in model.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return model


def outputs_and_grads(model, path: str):
    generator = torch.Generator().manual_seed(5)
    inputs = torch.randint(3, VOCAB, (3, 9), generator=generator)
    switch = PATHS[path]
    if not hasattr(model, "heads") and path == "tensor-ops":  # a content read has no move to name
        switch = "loop"
    with engine.forced(switch):
        model.zero_grad()
        logits = model(inputs, 7)
        (logits.sin().sum() + logits.square().mean()).backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return logits.detach(), grads


def assert_same(first, second, rtol=1e-9):
    (logits, grads), (other_logits, other_grads) = first, second
    torch.testing.assert_close(other_logits, logits, rtol=1e-12, atol=1e-12)
    assert grads.keys() == other_grads.keys() and grads
    for name in grads:
        # The absolute floor follows the gradient's scale: softmax reads on the Poincaré ball give gradients of
        # scale 20, whose float64 rounding differs between formulas by more than 1e-12.
        atol = 1e-12 * max(1.0, grads[name].abs().max().item())
        torch.testing.assert_close(other_grads[name], grads[name], rtol=rtol, atol=atol, msg=name)


def _count_tensor_op_reads(monkeypatch, content_read: bool) -> list:
    """A list that grows by one at each read the tensor-operation backends compute (forward or recomputed)."""
    from liemem.engine import cells, content

    calls = []
    module, name = (content, "read_weights") if content_read else (cells, "distance_read_forward")
    original = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


@pytest.mark.parametrize("path", ["tensor-ops", "kernels"])
@pytest.mark.parametrize(("group_name", "weigh"), CASES)
def test_recomputed_reads_give_the_kept_reads_gradients(group_name, weigh, path, monkeypatch):
    """Every registered group with each weighting the fast backends know, and RAM and RAM/tape: the backward pass
    that recomputes each read gives the gradients of the one that kept them, in float64 to 1e-9."""
    if path == "kernels":
        require_compiled_kernels()
    monkeypatch.delenv(engine_plan.KEPT_READS_SWITCH, raising=False)
    model = build(group_name, weigh)
    reads = _count_tensor_op_reads(monkeypatch, content_read=weigh is None)
    monkeypatch.setattr(engine_plan, "KEPT_READS_BUDGET", 2**62)
    kept = outputs_and_grads(model, path)
    kept_reads = len(reads)
    monkeypatch.setattr(engine_plan, "KEPT_READS_BUDGET", 0)
    # The answer phase's memory gradients are then also sent one read at a time.
    monkeypatch.setattr(tensor_ops, "ANSWER_BATCH_BYTES", 1)
    recomputed = outputs_and_grads(model, path)
    if path == "tensor-ops":  # each of the 15 steps' reads computed once, then once more in the backward pass
        assert (kept_reads, len(reads) - kept_reads) == (15, 30)
    assert_same(kept, recomputed)
    # Both equal the plain autograd loop, itself recomputing its reads.
    assert_same(outputs_and_grads(model, "autograd"), recomputed)


@pytest.mark.parametrize("weigh", weighting.names())
def test_the_plain_loop_recomputes_any_weightings_reads_exactly(weigh, monkeypatch):
    """The autograd path's generic read, recomputed in the backward pass (`memory.read` under a checkpoint), gives
    the gradients of the same read kept in the graph, for every registered weighting (on the sphere with its
    geodesic distance, which has no chordal fast path)."""
    torch.manual_seed(3)
    options = {"distance": "geodesic"}
    model = build_model("lantm", VOCAB, group="so3", group_options=options, weighting=weigh).double()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    assert not model.key_space.chordal
    checkpointed = []
    original = memory.checkpoint
    monkeypatch.setattr(
        memory, "checkpoint", lambda *args, **kwargs: checkpointed.append(1) or original(*args, **kwargs)
    )
    recomputed = outputs_and_grads(model, "autograd")
    assert len(checkpointed) == 15  # every read of the 15 steps
    monkeypatch.setattr(memory, "checkpoint", lambda function, *args, **kwargs: function(*args))
    kept = outputs_and_grads(model, "autograd")
    assert_same(kept, recomputed)


def _spy_kernel_rows(monkeypatch) -> list:
    rows = []
    original = kernels.loop_buffers

    def spy(*args, **kwargs):
        buffers = original(*args, **kwargs)
        rows.append((buffers.dist2.shape[0], buffers.outputs.shape[0]))
        return buffers

    monkeypatch.setattr(kernels, "loop_buffers", spy)
    return rows


@pytest.mark.parametrize("name", ["lantm", "ram-tape"])
def test_kernels_keep_one_steps_read_state_where_they_recompute(name, monkeypatch):
    """Where reads are recomputed, and in every pass without gradients, the kernels hold one step's per-slot state
    instead of every step's."""
    require_compiled_kernels()
    rows = _spy_kernel_rows(monkeypatch)
    model = build_model(name, VOCAB)
    inputs = torch.randint(3, VOCAB, (2, 6))
    with engine.forced("kernels"):
        model(inputs, 5).sum().backward()  # short: kept
        with torch.no_grad():
            model(inputs, 5)
        monkeypatch.setattr(engine_plan, "KEPT_READS_BUDGET", 0)
        model(inputs, 5).sum().backward()
    steps = 5 + 5
    assert rows == [(steps, steps), (1, steps), (1, steps)]


def test_the_budget_decides_between_keeping_and_recomputing(monkeypatch):
    monkeypatch.setenv(engine_plan.KEPT_READS_SWITCH, "1")
    assert engine_plan.keeps_reads(2**20, True) and not engine_plan.keeps_reads(2**20 + 1, True)
    for bad in ("lots", "-1", "nan"):
        monkeypatch.setenv(engine_plan.KEPT_READS_SWITCH, bad)
        with pytest.raises(engine.EngineError, match="LIEMEM_KEPT_READS_MB"):
            engine_plan.keeps_reads(1, True)
    monkeypatch.delenv(engine_plan.KEPT_READS_SWITCH)
    budget = engine_plan.KEPT_READS_BUDGET
    assert engine_plan.keeps_reads(budget, differentiable=True)
    assert not engine_plan.keeps_reads(budget + 1, differentiable=True)
    assert not engine_plan.keeps_reads(1, differentiable=False)
    # The kernels keep 3 numbers per step, sample and slot: at copy length 2,048, batch 32, float32, that is 3.2 GB.
    assert kernels.kept_rows(4098, 32, 2049, torch.float32, True) == 1
    assert kernels.kept_rows(130, 32, 65, torch.float32, True) == 130


def test_the_longest_sequence_of_a_task_is_read_from_its_encoding():
    task = tasks.get("copy")
    sequence = footprint.longest_sequence(task, (2, 10))
    (examples,) = [task.generate(10, 1, __import__("numpy").random.default_rng(1))]
    inputs, targets = task.encode(examples)
    assert sequence == footprint.Sequence(inputs.shape[1] - 1, targets.shape[1])
    assert sequence.steps == inputs.shape[1] - 1 + targets.shape[1]


@pytest.mark.parametrize("name", ["lantm", "slantm", "ram", "lstm", "ntm"])
def test_estimates_grow_linearly_with_the_length(name):
    """Doubling a long sequence about doubles the estimate (not four times it), and training needs more than
    evaluation."""
    model = build_model(name, 130)
    short, long = footprint.Sequence(4097, 4096), footprint.Sequence(8193, 8192)
    ratio = (footprint.estimate(model, 32, long, True) - footprint.OVERHEAD_BYTES) / (
        footprint.estimate(model, 32, short, True) - footprint.OVERHEAD_BYTES
    )
    assert 1.9 < ratio < 2.1
    assert footprint.estimate(model, 32, long, True) > footprint.estimate(model, 32, long, False)


def test_check_refuses_in_one_sentence_what_does_not_fit(monkeypatch):
    model = build_model("lantm", VOCAB)
    monkeypatch.setattr(footprint, "available", lambda device: (10 * 2**20, "available on this machine"))
    sequence = footprint.Sequence(2001, 2000)
    with pytest.raises(footprint.MemoryLimitError, match=r"a training step needs about .* MB .*4,001 steps, batch 32"):
        footprint.check(model, 32, sequence, True, "cpu", "a training step", "use shorter lengths")
    monkeypatch.setenv(footprint.SWITCH, "off")
    assert footprint.check(model, 32, sequence, True, "cpu", "a training step", "x") == 0


def test_estimates_run_for_any_module_and_any_forced_plan(monkeypatch):
    """A user's plain module (no vocabulary, no parameters) and a model whose forced plan cannot run still get an
    estimate: `evaluate` and `plot` check every model they are given."""
    sequence = footprint.Sequence(100, 100)
    assert footprint.estimate(torch.nn.Identity(), 8, sequence, False) >= footprint.OVERHEAD_BYTES
    model = build_model("lantm", VOCAB, controller_layers=2)
    with engine.forced("kernels"):  # not for a two-layer controller: the estimate takes the plain loop's counts
        forced = footprint.estimate(model, 8, sequence, True)
    assert forced == footprint.estimate(model, 8, sequence, True)


def test_the_machine_reports_free_memory():
    free, where = footprint.available(torch.device("cpu"))
    assert free > 0 and where


def _liemem(*args, cwd):
    command = [sys.executable, "-m", "liemem", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=300, check=False)


def test_a_run_that_cannot_fit_stops_with_one_line_and_status_2(tmp_path, monkeypatch, capsys):
    # On a machine with 20 GB free, as the command line sees it.
    monkeypatch.setattr(footprint, "available", lambda device: (20 * 10**9, "available on this machine"))
    status = cli.main(["train", "--train-lengths", "2-100000", "--steps", "2", "--out", str(tmp_path / "run")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(lines) == 1
    assert "a training step needs about" in lines[0] and "20.0 GB is available" in lines[0]
    assert "--train-lengths" in lines[0]
    # And end to end, on this machine's real free memory, with a batch no machine holds.
    result = _liemem(
        "train", "--train-lengths", "2-100000", "--batch-size", "1000000", "--steps", "2",
        "--out", str(tmp_path / "run"), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "a training step needs about" in lines[0] and " TB " in lines[0]


def test_eval_refuses_lengths_that_cannot_fit(tmp_path, monkeypatch, capsys):
    trained = _liemem("train", "--steps", "2", "--train-lengths", "2-3", "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    monkeypatch.setattr(footprint, "available", lambda device: (10**9, "available on this machine"))
    status = cli.main(["eval", str(tmp_path / "run"), "--lengths", "100000-100000", "-n", "32"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and "evaluation needs about" in lines[0]
    monkeypatch.undo()
    # --scale K scores sizes K u / 2 + 1 to K u, u = 3 the largest training size.
    scaled = _liemem("eval", str(tmp_path / "run"), "--scale", "4", "-n", "32", cwd=tmp_path)
    assert scaled.returncode == 0, scaled.stderr
    scores = json.loads(scaled.stdout.strip().splitlines()[-1])
    assert scores["lengths"] == [7, 12] and scores["scale"] == 4
    both = _liemem("eval", str(tmp_path / "run"), "--scale", "4", "--lengths", "2-3", cwd=tmp_path)
    assert both.returncode == 2 and "not both" in both.stderr
