"""The training pipeline: schedule, scores, bucketed losses, checkpoints and resuming, NaN stops, and learning."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import liemem
from liemem import tasks
from liemem.config import ConfigError
from liemem.training import (
    CheckpointError,
    TrainConfig,
    TrainingDiverged,
    config_from_dict,
    evaluate,
    learning_rate,
    load_config,
    restore_model,
    train,
)
from liemem.training import loop as training_loop
from liemem.training.data import Bucket, symbol_loss, to_buckets, train_examples
from liemem.training.data import test_examples as draw_test_set  # under its own name pytest would collect it
from liemem.training.evaluate import Scores, score
from liemem.training.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[1]
# The package exports the function `evaluate`, which hides the module of the same name.
evaluate_module = importlib.import_module("liemem.training.evaluate")
TINY = dict(task="copy", train_lengths=(2, 4), test_lengths=(5, 6), eval_samples=16, device="cpu")


def tiny(**overrides) -> TrainConfig:
    return TrainConfig(**{**TINY, "steps": 12, "eval_every": 6, "checkpoint_every": 4, "log_every": 2, **overrides})


def authors_rates(lr: float, decay_after: int, steps: int) -> list[float]:
    """The rate of each step 1..steps as the authors' loop sets it: it trains in iterations of 10 steps, and past
    `decay_after` steps, at the end of every second iteration, multiplies the rate by 0.99 for the steps after."""
    rates, rate = [], lr
    for step in range(1, steps + 1):
        rates.append(rate)
        if step > decay_after and (step - decay_after) % 20 == 0:
            rate *= 0.99
    return rates


def test_learning_rate_is_constant_then_decays_after_every_20_steps():
    config = TrainConfig(lr=0.02, decay_after=3000, warmup_steps=0).resolved()  # the authors' schedule
    assert learning_rate(config, 1) == 0.02
    assert learning_rate(config, 3000) == 0.02
    assert learning_rate(config, 3020) == 0.02  # the 20 steps past 3000 run at the full rate
    assert learning_rate(config, 3021) == pytest.approx(0.02 * 0.99)  # the first decayed step
    assert learning_rate(config, 3040) == pytest.approx(0.02 * 0.99)
    assert learning_rate(config, 3041) == pytest.approx(0.02 * 0.99**2)
    assert learning_rate(config, 3400) == pytest.approx(0.02 * 0.99**19)
    assert learning_rate(config, 3401) == pytest.approx(0.02 * 0.99**20)
    assert learning_rate(config, 10_000) == pytest.approx(0.02 * 0.99**349)
    reference = authors_rates(0.02, 3000, 10_000)
    for step in range(1, 10_001):
        assert learning_rate(config, step) == pytest.approx(reference[step - 1], rel=1e-12), step


def test_warm_up_grows_the_rate_linearly_then_hands_over_to_the_decay():
    config = TrainConfig(lr=0.01, warmup_steps=200, decay_after=300, decay_every=20).resolved()
    assert learning_rate(config, 1) == pytest.approx(0.01 / 200)
    assert learning_rate(config, 50) == pytest.approx(0.0025)
    assert learning_rate(config, 200) == learning_rate(config, 300) == 0.01
    assert learning_rate(config, 321) == pytest.approx(0.01 * 0.99)  # the decay is unchanged by the warm-up
    # A warm-up longer than the decay delay multiplies the two.
    late = TrainConfig(lr=0.01, warmup_steps=400, decay_after=300).resolved()
    assert learning_rate(late, 340) == pytest.approx(0.01 * (340 / 400) * 0.99)
    assert learning_rate(TrainConfig(lr=0.01, warmup_steps=0).resolved(), 1) == 0.01


def test_defaults_are_the_papers_with_a_warm_up_and_tighter_clipping_for_the_inverse_square_read():
    config = TrainConfig().resolved()
    assert (config.task, config.model, config.steps, config.batch_size) == ("copy", "lantm", 10_000, 32)
    assert (config.train_lengths, config.test_lengths) == ((2, 64), (65, 128))
    assert (config.rmsprop_alpha, config.rmsprop_eps) == (0.99, 1e-8)
    # 0.25 where the read is inverse-square (see INVERSE_SQUARE_CLIP_NORM), the paper's 32 elsewhere.
    assert [TrainConfig(model=name).resolved().clip_norm for name in ("lantm", "slantm", "se2")] == [0.25] * 3
    for name in ("lantm-s", "slantm-s", "lstm", "ram", "ram-tape", "ntm"):
        assert TrainConfig(model=name).resolved().clip_norm == 32.0, name
    softmax_lantm = TrainConfig(model="lantm", model_options={"weighting": "softmax"})
    assert softmax_lantm.resolved().clip_norm == 32.0
    assert TrainConfig(clip_norm=5).resolved().clip_norm == 5.0
    assert (config.regime, config.small_regime_batches, config.eval_samples) == ("small", 500, 3200)
    assert config.lr == 0.02
    assert config.warmup_steps == 300  # see DEFAULT_WARMUP_STEPS
    # The training batches follow the run's seed, and every evaluation competes for the best one.
    assert (config.data_seed, config.best_after) == (None, 0)
    assert TrainConfig(model="lstm").resolved().lr == 0.002
    assert TrainConfig(model="ntm").resolved().lr == TrainConfig(model="ram").resolved().lr == 0.02


def test_test_lengths_default_to_twice_the_training_lengths():
    assert TrainConfig(train_lengths=(2, 8)).resolved().test_lengths == (9, 16)
    assert TrainConfig(task="repeat_copy", train_lengths=(1, 3)).resolved().test_lengths == (4, 6)
    assert TrainConfig(train_lengths=(2, 8), test_lengths=(20, 30)).resolved().test_lengths == (20, 30)
    # The rule reproduces every task's own test range from its training range (the paper's 2x lengths).
    for name in tasks.names():
        task = tasks.get(name)
        assert TrainConfig(task=name).resolved().test_lengths == tuple(task.test_sizes), name
        assert tuple(task.test_sizes) == (task.train_sizes[1] + 1, 2 * task.train_sizes[1]), name


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"task": "sort"}, "unknown task 'sort'"),
        ({"model": "lantn"}, "unknown model 'lantn'"),
        ({"model_options": {"group": "so4"}}, "group must be one of"),
        ({"model_options": {"widht": 3}}, "unknown option 'widht'"),
        ({"regime": "medium"}, "regime must be one of"),
        ({"lr": -0.1}, "lr must be > 0"),
        ({"steps": 0}, "steps must be >= 1"),
        ({"warmup_steps": -1}, "warmup_steps must be >= 0"),
        ({"train_lengths": (0, 4)}, "must start at 1 or more"),
        ({"train_lengths": (8, 2)}, "is empty"),
        ({"test_lengths": (2.5, 4)}, "range A-B of integers"),
        ({"task": "associative_recall", "train_lengths": (1, 4)}, "must start at 2 or more"),
        ({"decay_rate": 1.5}, "decay_rate must be in [0, 1]"),
        ({"device": "tpu"}, "unknown device"),
        ({"data_seed": -1}, "data_seed must be in [0, "),
        ({"data_seed": 1.5}, "data_seed must be"),
        ({"best_after": -1}, "best_after must be >= 0"),
        ({"curriculum_steps": -5}, "curriculum_steps must be >= 0"),
    ],
)
def test_invalid_configurations_are_refused_by_name(overrides, message, tmp_path):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        train(TrainConfig(**{**TINY, **overrides}), tmp_path, progress=False)
    assert not (tmp_path / "checkpoint.pt").exists()


def test_config_from_dict_refuses_unknown_keys_and_malformed_ranges():
    with pytest.raises(ConfigError, match="unknown option 'stpes'"):
        config_from_dict({"stpes": 10})
    with pytest.raises(ConfigError, match="two integers"):
        config_from_dict({"train_lengths": [2, 4, 6]})
    assert config_from_dict({"train_lengths": "3-9"}).train_lengths == (3, 9)
    assert config_from_dict({"test_lengths": [10, 20]}).test_lengths == (10, 20)


class FixedAnswer(torch.nn.Module):
    """Always answers `answer` with certainty, whatever the input."""

    def __init__(self, answer, vocab_size=8):
        super().__init__()
        self.answer = torch.tensor(answer)
        self.vocab_size = vocab_size
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def forward(self, inputs, answer_length):
        logits = torch.nn.functional.one_hot(self.answer[:answer_length], self.vocab_size).float()
        return logits.expand(inputs.shape[0], -1, -1)


def test_scores_count_symbols_and_whole_answers():
    inputs = torch.zeros(4, 3, dtype=torch.long)
    targets = torch.tensor([[1, 2, 3], [1, 2, 4], [0, 2, 3], [5, 5, 5]])
    scores = score(FixedAnswer([1, 2, 3]), [Bucket(inputs, targets)])
    assert scores.fine == pytest.approx(7 / 12)  # 3 + 2 + 2 + 0 symbols right
    assert scores.coarse == pytest.approx(1 / 4)
    # A second bucket of another length weighs in by its symbols and its examples.
    scores = score(FixedAnswer([1, 2, 3]), [Bucket(inputs, targets), Bucket(inputs[:1], targets[:1, :2])])
    assert (scores.fine, scores.coarse, scores.samples) == (pytest.approx(9 / 14), pytest.approx(2 / 5), 5)


def test_mixed_length_batches_leave_every_example_loss_unchanged():
    task = tasks.get("reverse", symbol_count=10)
    torch.manual_seed(0)
    model = liemem.build_model("lantm", task.vocab_size).double()
    groups = task.sample((2, 7), 12, np.random.default_rng(3))
    assert len(groups) > 2  # the batch really mixes lengths
    batched = symbol_loss(model, to_buckets(task, groups, "cpu"))
    # Reference: each example on its own, summed over symbols, divided by all symbols.
    total, symbols = 0.0, 0
    for examples in groups:
        inputs, targets = task.encode(examples)
        for x, y in zip(inputs, targets, strict=True):
            logits = model(torch.from_numpy(x)[None], len(y))[0]
            log_probs = torch.log_softmax(logits, dim=-1)
            total -= sum(log_probs[i, int(t)].item() for i, t in enumerate(y))
            symbols += len(y)
    assert batched.item() == pytest.approx(total / symbols, rel=1e-12)


def test_training_batches_come_from_their_index_alone():
    task = tasks.get("copy")
    first = train_examples(task, (2, 64), 7, 32, seed=1)
    again = train_examples(task, (2, 64), 7, 32, seed=1)
    other = train_examples(task, (2, 64), 8, 32, seed=1)
    assert len(first) == 1 and first[0].inputs.shape[0] == 32  # one length per batch
    assert np.array_equal(first[0].inputs, again[0].inputs)
    assert first[0].inputs.shape != other[0].inputs.shape or not np.array_equal(first[0].inputs, other[0].inputs)
    mixed = train_examples(task, (2, 64), 7, 32, seed=1, one_length=False)
    assert sum(len(group.inputs) for group in mixed) == 32 and len(mixed) > 1


def test_test_sets_draw_one_size_per_batch():
    """As the authors' test files are made: each batch of `batch_size` examples has one size of its own."""
    task = tasks.get("copy")
    groups = draw_test_set(task, (2, 64), 100, seed=5, batch_size=32)
    # Sorted by size, batches of one size each: 32, 32, 32 and 4 examples, in some order.
    assert sorted(len(group.inputs) for group in groups) == [4, 32, 32, 32]
    lengths = [group.inputs.shape[1] for group in groups]
    assert lengths == sorted(lengths) and all(2 <= length <= 64 for length in lengths)
    for group in groups:
        np.testing.assert_array_equal(group.targets, group.inputs)  # copy
    again = draw_test_set(task, (2, 64), 100, seed=5, batch_size=32)
    assert all(np.array_equal(a.inputs, b.inputs) for a, b in zip(groups, again, strict=True))
    # Over many test sets, the batches' sizes cover the range: they are drawn, not fixed.
    drawn = {group.inputs.shape[1] for seed in range(40) for group in draw_test_set(task, (2, 9), 64, seed, 32)}
    assert drawn == set(range(2, 10))
    # A set smaller than a batch is one batch of one size; one size per example spreads it over the range.
    assert len(draw_test_set(task, (2, 64), 20, seed=5)) == 1
    mixed = draw_test_set(task, (2, 64), 100, seed=5, batch_size=32, one_length=False)
    assert sum(len(group.inputs) for group in mixed) == 100 and len(mixed) > 20


def test_the_small_regime_repeats_its_first_batches(tmp_path, monkeypatch):
    seen = []
    original = training_loop.train_examples

    def recording(task, sizes, index, *args, **kwargs):
        seen.append(index)
        return original(task, sizes, index, *args, **kwargs)

    monkeypatch.setattr(training_loop, "train_examples", recording)
    train(tiny(steps=7, small_regime_batches=3), tmp_path / "small", progress=False)
    assert seen == [0, 1, 2]  # steps 4-7 reuse batches 0, 1, 2, 0
    seen.clear()
    train(tiny(steps=7, regime="large"), tmp_path / "large", progress=False)
    assert seen == list(range(7))


def recorded_seeds(monkeypatch) -> list[int]:
    """The `seed` argument of every call the training loop makes to `train_examples`, as they come."""
    seeds = []
    original = training_loop.train_examples
    signature = inspect.signature(original)

    def recording(*args, **kwargs):
        seeds.append(signature.bind(*args, **kwargs).arguments["seed"])
        return original(*args, **kwargs)

    monkeypatch.setattr(training_loop, "train_examples", recording)
    return seeds


def test_data_seed_seeds_the_training_batches_and_defaults_to_the_seed(tmp_path, monkeypatch):
    seeds = recorded_seeds(monkeypatch)
    train(tiny(steps=3, seed=2, data_seed=7), tmp_path / "fixed", progress=False)
    assert seeds == [7, 7, 7]
    seeds.clear()
    train(tiny(steps=3, seed=2), tmp_path / "default", progress=False)
    assert seeds == [2, 2, 2]


def test_runs_of_other_seeds_train_on_the_same_batches_with_one_data_seed(tmp_path, monkeypatch):
    """The authors train every seed on one data file: the same batches, other initial weights."""
    batches = []
    original = training_loop.batch_loss

    def recording(model, buckets):
        batches.append([bucket.inputs.clone() for bucket in buckets])
        return original(model, buckets)

    monkeypatch.setattr(training_loop, "batch_loss", recording)
    train(tiny(steps=3, seed=2, data_seed=7), tmp_path / "a", progress=False)
    train(tiny(steps=3, seed=3, data_seed=7), tmp_path / "b", progress=False)
    train(tiny(steps=3, seed=3), tmp_path / "c", progress=False)
    a, b, c = batches[:3], batches[3:6], batches[6:]

    def same(run, other):
        return all(
            len(p) == len(q) and all(torch.equal(x, y) for x, y in zip(p, q, strict=True))
            for p, q in zip(run, other, strict=True)
        )

    assert len(c) == 3 and same(a, b)
    # Seeded by the run's own seed (3) instead, the batches are another draw.
    assert not same(a, c)
    # The seed still seeds the initial weights: runs a and b start (and so end) apart.
    weights_a, weights_b = (state_of(tmp_path / name)["model"] for name in ("a", "b"))
    assert not all(torch.equal(tensor, weights_b[name]) for name, tensor in weights_a.items())


def fixed_scores(monkeypatch, coarse_by_call: list[float]) -> None:
    """Make the loop's evaluations score `coarse_by_call[i]` (fine too) at its i-th evaluation."""
    calls = iter(coarse_by_call)

    def scripted(model, buckets):
        value = next(calls)
        return Scores(value, value, sum(len(bucket.targets) for bucket in buckets))

    monkeypatch.setattr(training_loop, "score", scripted)


def test_evaluations_up_to_best_after_do_not_compete_for_the_best(tmp_path, monkeypatch):
    # Evaluations at steps 3, 6, 9 and 12: the early ones score best, but only steps 9 and 12 count.
    fixed_scores(monkeypatch, [1.0, 0.9, 0.25, 0.5])
    summary = train(tiny(steps=12, eval_every=3, best_after=6), tmp_path / "late", progress=False)
    assert summary.best_step == 12 and summary.best.coarse == 0.5
    assert torch.load(tmp_path / "late" / "best.pt", weights_only=True)["step"] == 12
    # The early evaluations are still logged.
    assert [r["step"] for r in read_metrics(tmp_path / "late") if "eval" in r] == [3, 6, 9, 12]
    # Without best_after the first evaluation is the best one.
    fixed_scores(monkeypatch, [1.0, 0.9, 0.25, 0.5])
    summary = train(tiny(steps=12, eval_every=3), tmp_path / "all", progress=False)
    assert summary.best_step == 3 and summary.best.coarse == 1.0


def test_the_final_evaluation_counts_even_before_best_after(tmp_path, monkeypatch):
    fixed_scores(monkeypatch, [1.0, 0.5, 0.25])
    summary = train(tiny(steps=9, eval_every=3, best_after=5000), tmp_path, progress=False)
    assert summary.best_step == 9 and summary.best.coarse == 0.25
    assert json.loads((tmp_path / "summary.json").read_text())["best"]["step"] == 9


def test_best_after_on_a_real_run(tmp_path):
    summary = train(tiny(steps=12, eval_every=3, best_after=6), tmp_path, progress=False)
    assert summary.best_step > 6 and summary.best_step in (9, 12)


def state_of(path):
    return torch.load(path / "checkpoint.pt", weights_only=True)


def assert_same_run(a, b):
    state_a, state_b = state_of(a), state_of(b)
    assert state_a["step"] == state_b["step"]
    for name, tensor in state_a["model"].items():
        assert torch.equal(tensor, state_b["model"][name]), name
    for key, slot in state_a["optimizer"]["state"].items():
        for name, value in slot.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(state_b["optimizer"]["state"][key][name]))
    strip = [{k: v for k, v in r.items() if k != "samples_per_second"} for r in read_metrics(a)]
    assert strip == [{k: v for k, v in r.items() if k != "samples_per_second"} for r in read_metrics(b)]
    summary_a, summary_b = (json.loads((p / "summary.json").read_text()) for p in (a, b))
    summary_a.pop("wall_seconds"), summary_b.pop("wall_seconds")
    assert summary_a == summary_b


@pytest.mark.parametrize("curriculum_steps", [0, 12])
def test_an_interrupted_run_resumes_to_the_same_result(tmp_path, monkeypatch, curriculum_steps):
    config = tiny(steps=14, log_every=3, checkpoint_every=4, eval_every=6, curriculum_steps=curriculum_steps)
    train(config, tmp_path / "straight", progress=False)

    calls = {"n": 0}
    original = training_loop.batch_loss

    def interrupting(model, buckets):
        calls["n"] += 1
        if calls["n"] == 11:  # during step 11: the last checkpoint is step 8's, so steps 9 and 10 are lost
            raise KeyboardInterrupt
        return original(model, buckets)

    monkeypatch.setattr(training_loop, "batch_loss", interrupting)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "resumed", progress=False)
    state = state_of(tmp_path / "resumed")
    # Saved mid-way through a logging window (steps 7 and 8 of the window ending at 9), with step 9 logged after.
    assert state["step"] == 8 and state["run"]["window"][1] == 2
    assert max(record["step"] for record in read_metrics(tmp_path / "resumed")) == 9
    monkeypatch.setattr(training_loop, "batch_loss", original)
    train(config, tmp_path / "resumed", progress=False)
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")
    best = [torch.load(tmp_path / name / "best.pt", weights_only=True) for name in ("straight", "resumed")]
    assert best[0]["step"] == best[1]["step"]
    for name, tensor in best[0]["model"].items():
        assert torch.equal(tensor, best[1]["model"][name]), name


def test_clipping_scales_the_gradient_to_the_limit_and_reports_the_norm_before():
    model = torch.nn.Linear(3, 1, bias=False)
    model.weight.grad = torch.tensor([[30.0, 40.0, 0.0]])  # norm 50
    norm = training_loop.clip_gradients(model.parameters(), 2.5)
    assert float(norm) == pytest.approx(50.0)
    torch.testing.assert_close(model.weight.grad, torch.tensor([[1.5, 2.0, 0.0]]), rtol=1e-6, atol=0)


def test_a_checkpoint_from_before_the_warm_up_resumes_without_one(tmp_path):
    train(tiny(steps=4, warmup_steps=0), tmp_path, progress=False)
    state = state_of(tmp_path)
    del state["config"]["warmup_steps"]  # as a checkpoint written before the field existed
    torch.save(state, tmp_path / "checkpoint.pt")
    assert train(tiny(steps=6, warmup_steps=0), tmp_path, progress=False).step == 6
    # The default warm-up would change that run's schedule: refused by name.
    with pytest.raises(CheckpointError, match="warmup_steps is 0 there, 300 here"):
        train(tiny(steps=8), tmp_path, progress=False)


def test_a_resumed_run_may_run_longer_but_not_differently(tmp_path):
    train(tiny(steps=4), tmp_path, progress=False)
    summary = train(tiny(steps=8), tmp_path, progress=False)
    assert summary.step == 8
    # Options written out at their defaults are the same configuration.
    assert train(tiny(steps=10, model_options={"controller_size": 50}), tmp_path, progress=False).step == 10
    with pytest.raises(CheckpointError, match="model_options is"):
        train(tiny(steps=12, model_options={"controller_size": 51}), tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="at step 10, past the 6 steps"):
        train(tiny(steps=6), tmp_path, progress=False)
    with pytest.raises(CheckpointError, match=r"lr is 0\.02 there, 0\.01 here"):
        train(tiny(steps=12, lr=0.01), tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="model is 'lantm' there, 'slantm' here"):
        train(tiny(steps=12, model="slantm"), tmp_path, progress=False)


def poison_passes(monkeypatch, poisoned: set[int], where: str = "gradient") -> dict:
    """Models whose logits (`where="loss"`) or whose logits' gradient (`where="gradient"`) are NaN in the training
    passes numbered in `poisoned` (1-based). Each of `tiny`'s steps is one pass, and a step computed again in
    float64 is one more. Returns the counter, with the dtype of every pass."""
    passes = {"n": 0, "dtypes": []}
    original_build = training_loop.build_model
    original_step = training_loop._gradient_step

    def counted_step(model, *args, **kwargs):
        passes["n"] += 1
        passes["dtypes"].append(next(model.parameters()).dtype)
        return original_step(model, *args, **kwargs)

    def poison(module, args, output):
        if not (module.training and passes["n"] in poisoned):
            return output
        if where == "loss":
            return output * math.nan
        output.register_hook(lambda grad: grad * math.nan)
        return output

    def build(*args, **kwargs):
        model = original_build(*args, **kwargs)
        model.register_forward_hook(poison)
        return model

    monkeypatch.setattr(training_loop, "build_model", build)
    monkeypatch.setattr(training_loop, "_gradient_step", counted_step)
    return passes


def test_a_nan_stops_training_naming_the_step_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    passes = poison_passes(monkeypatch, {8}, where="loss")
    with pytest.raises(TrainingDiverged, match=r"step 8: loss nan.*last good checkpoint \(step 6\)"):
        train(tiny(steps=20, checkpoint_every=3, eval_every=100), tmp_path, progress=False)
    assert passes["n"] == 8  # a loss that is not finite is not computed again
    state = state_of(tmp_path)
    assert state["step"] == 6
    assert all(torch.isfinite(tensor).all() for tensor in state["model"].values())
    assert max(record["step"] for record in read_metrics(tmp_path)) <= 7


def test_a_step_whose_gradient_overflows_float32_is_computed_again_in_float64(tmp_path, monkeypatch):
    config = tiny(steps=12, checkpoint_every=3, eval_every=100, log_every=4)
    train(config, tmp_path / "clean", progress=False)
    passes = poison_passes(monkeypatch, {8})
    lines = []
    train(config, tmp_path / "rescued", progress=False, echo=lines.append)
    # Pass 8 (step 8, float32) was poisoned, pass 9 computed step 8 again in float64, then float32 went on.
    assert passes["dtypes"] == [torch.float32] * 8 + [torch.float64] + [torch.float32] * 4
    assert lines[0] == "engine: kernels, built-in move" or lines[0].startswith("engine: loop")
    assert lines[1].startswith("step 8: gradient norm nan in float32; computed again in float64")
    logged = [record for record in read_metrics(tmp_path / "rescued") if "loss" in record]
    assert [record.get("float64_steps", 0) for record in logged] == [0, 1, 0]
    rescued, clean = state_of(tmp_path / "rescued"), state_of(tmp_path / "clean")
    assert rescued["run"]["float64_steps"] == 1 and rescued["step"] == 12
    for name, weights in rescued["model"].items():
        assert weights.dtype == torch.float32
        # Step 8 was applied with the float64 gradient: the run follows the clean one up to that rounding.
        torch.testing.assert_close(weights, clean["model"][name], rtol=1e-4, atol=1e-5)


def test_a_gradient_that_is_not_finite_in_float64_either_stops_the_run(tmp_path, monkeypatch):
    poison_passes(monkeypatch, {8, 9})
    with pytest.raises(
        TrainingDiverged, match=r"step 8: gradient norm nan, .*float64.*last good checkpoint \(step 6\)"
    ):
        train(tiny(steps=20, checkpoint_every=3, eval_every=100), tmp_path, progress=False)
    assert state_of(tmp_path)["step"] == 6


@pytest.mark.parametrize("settings", [{"dtype": "float64"}, {"float64_on_overflow": False}])
def test_without_a_float64_recomputation_an_overflowing_gradient_stops_the_run(tmp_path, monkeypatch, settings):
    passes = poison_passes(monkeypatch, {3})
    with pytest.raises(TrainingDiverged, match=r"step 3: loss [0-9.]+, gradient norm nan; no checkpoint"):
        train(tiny(steps=20, checkpoint_every=5, **settings), tmp_path, progress=False)
    assert passes["n"] == 3


def test_evaluation_is_reproducible_and_uses_the_requested_lengths(tmp_path, monkeypatch):
    train(tiny(steps=2), tmp_path, progress=False)
    model, task, config, step = restore_model(tmp_path, "cpu")
    assert (config.test_lengths, step) == ((5, 6), 2)
    shapes = []
    original = evaluate_module.score

    def recording(model, buckets):
        shapes.extend((tuple(b.inputs.shape), tuple(b.targets.shape)) for b in buckets)
        return original(model, buckets)

    monkeypatch.setattr(evaluate_module, "score", recording)
    first = evaluate(model, task, (9, 12), count=40, seed=4)
    # One size per batch of 32: a batch of 32 examples and one of 8, each of one size in 9-12. Copy of k symbols:
    # k + 2 inputs with the markers, k + 1 answer steps with the end marker.
    assert sorted(x[0] for x, _ in shapes) == [8, 32]
    assert all(x[1] - 2 == y[1] - 1 and 9 <= x[1] - 2 <= 12 for x, y in shapes)
    assert first == evaluate(model, task, (9, 12), count=40, seed=4)
    assert first.samples == 40
    # Batches of 10: four of them, each of one size.
    shapes.clear()
    assert evaluate(model, task, (9, 12), count=40, seed=4, batch_size=10).samples == 40
    assert [x[0] for x, _ in shapes] == [10] * 4 and all(9 <= x[1] - 2 <= 12 for x, _ in shapes)
    # One size per example: 40 draws from 4 sizes miss one with a chance of about 4 * (3/4)^40 = 4e-5.
    shapes.clear()
    assert evaluate(model, task, (9, 12), count=40, seed=4, one_length=False).samples == 40
    assert {(x[1] - 2, y[1] - 1) for x, y in shapes} == {(k, k) for k in range(9, 13)}
    assert sum(x[0] for x, _ in shapes) == 40


def test_restore_refuses_a_checkpoint_that_does_not_fit_its_model(tmp_path):
    train(tiny(steps=2), tmp_path, progress=False)
    state = state_of(tmp_path)
    state["model"].pop(next(iter(state["model"])))
    torch.save(state, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="does not fit its model"):
        restore_model(tmp_path, "cpu")
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        restore_model(tmp_path, "cpu")


# The main job's seed first, then two others that learned in its seed study (README, "Training reliably").
MAIN_JOB_SEEDS = (2, 3, 5)


def test_lantm_learns_copy_and_generalises_to_twice_the_length(tmp_path):
    """The main job, as `bash scripts/main.sh` runs it: LANTM trained on copy with 2-8 symbols copies 9-16.

    A seed repeats its run on one machine, but another processor compiles the kernels for its own instruction set
    (`-march=native`) and rounds differently, and training amplifies the last digits: what a seed does on the
    machine that runs this test is a draw, and the main job's configuration learns for most seeds, not all. So the
    test asks that it learns by the third seed tried: a configuration that learned for none of three would fail.
    """
    config = dataclasses.replace(load_config(ROOT / "examples" / "configs" / "quickstart.toml"), device="cpu")
    assert (config.task, config.model, config.train_lengths, config.test_lengths) == ("copy", "lantm", (2, 8), (9, 16))
    assert config.seed == MAIN_JOB_SEEDS[0]
    summaries = []
    for seed in MAIN_JOB_SEEDS:
        out = tmp_path / f"seed{seed}"
        summaries.append(train(dataclasses.replace(config, seed=seed), out, progress=False))
        if summaries[-1].best.coarse >= 0.9:
            break
    assert summaries[-1].best.coarse >= 0.9, summaries
    # Scored afresh on 3,200 other examples, the best weights still copy at least 90% of them whole.
    model, task, _, _ = restore_model(out, "cpu", best=True)
    scores = evaluate(model, task, (9, 16), count=3200, seed=77)
    assert scores.coarse >= 0.9, scores


def test_three_seeds_of_the_defaults_learn_short_copy(tmp_path):
    """`liemem train`'s defaults on copy at 2-8 symbols for 2,000 steps, the seed study's setting (README,
    "Training reliably"), learn with each of seeds 1, 2 and 3: most of the sequences of 9-16 symbols come back
    whole at some evaluation, where a model that has not learned gets none.

    The study's bar is 90%; on the machine and at the commit that measured it these seeds reached 61%, 98% and
    100%. As the main job's test explains, another processor, or a change to how the kernels sum, rounds
    differently and a seed's run is a draw there, so this test asks for the margin every seed of the study cleared
    (61% or more over seeds 1-10): 50%.
    """
    for seed in (1, 2, 3):
        config = TrainConfig(
            train_lengths=(2, 8), steps=2000, eval_every=250, eval_samples=1600, seed=seed, device="cpu"
        ).resolved()
        assert (config.task, config.model, config.test_lengths, config.clip_norm) == ("copy", "lantm", (9, 16), 0.25)
        summary = train(config, tmp_path / f"seed{seed}", progress=False)
        assert summary.best.coarse >= 0.5, (seed, summary)


def test_metrics_go_to_tensorboard_when_it_is_installed(tmp_path, monkeypatch):
    written = []

    class Writer:
        def __init__(self, log_dir, purge_step=None):
            written.append(("open", log_dir, purge_step))

        def add_scalar(self, key, value, step):
            written.append((key, step))

        def flush(self):
            written.append(("flush",))

        def close(self):
            written.append(("close",))

    board = type(sys)("torch.utils.tensorboard")
    board.SummaryWriter = Writer
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", board)
    train(tiny(steps=4, eval_every=4), tmp_path, progress=False)
    assert written[0] == ("open", str(tmp_path / "tensorboard"), 1)  # a fresh run drops any older events
    assert ("loss", 2) in written and ("eval/coarse", 4) in written and written[-1] == ("close",)
    assert written.index(("eval/coarse", 4)) < written.index(("flush",))  # flushed before the checkpoint


@pytest.mark.cuda
def test_training_on_cuda_resumes_and_evaluates_on_the_cpu(tmp_path):
    config = tiny(device="cuda")
    summary = train(config, tmp_path / "gpu", progress=False)
    model, task, saved, _ = restore_model(tmp_path / "gpu", "cpu")
    assert saved.device == "cuda" and next(model.parameters()).device.type == "cpu"
    again = evaluate(model, task, saved.test_lengths, saved.eval_samples, saved.eval_seed)
    assert again.coarse == pytest.approx(summary.final.coarse, abs=1 / 16)
    assert train(dataclasses.replace(config, steps=14), tmp_path / "gpu", progress=False).step == 14


def test_a_run_resumed_at_its_last_step_still_evaluates_it(tmp_path, monkeypatch):
    calls = {"n": 0}
    original = training_loop.batch_loss

    def interrupting(model, buckets):
        calls["n"] += 1
        if calls["n"] == 5:  # steps 1-4 are checkpointed, none evaluated (eval_every is 100)
            raise KeyboardInterrupt
        return original(model, buckets)

    monkeypatch.setattr(training_loop, "batch_loss", interrupting)
    with pytest.raises(KeyboardInterrupt):
        train(tiny(steps=6, eval_every=100, checkpoint_every=2), tmp_path / "cut", progress=False)
    monkeypatch.setattr(training_loop, "batch_loss", original)
    resumed = train(tiny(steps=4, eval_every=100, checkpoint_every=2), tmp_path / "cut", progress=False)
    straight = train(tiny(steps=4, eval_every=100, checkpoint_every=2), tmp_path / "straight", progress=False)
    assert resumed.step == 4 and resumed[:-1] == straight[:-1]  # all but the wall time
    assert [r["step"] for r in read_metrics(tmp_path / "cut") if "eval" in r] == [4]


def test_weights_that_overflow_are_never_checkpointed(tmp_path):
    # At this rate step 1's loss and gradient are finite but its update is not.
    with pytest.raises(TrainingDiverged, match="step 1: the weights are no longer finite; no checkpoint"):
        train(tiny(steps=20, lr=1e38, warmup_steps=0, checkpoint_every=1), tmp_path, progress=False)
    assert not (tmp_path / "checkpoint.pt").exists()


def test_training_scores_are_the_greedy_scores_of_each_batch_before_its_update(tmp_path):
    config = tiny(steps=2, log_every=1, eval_every=2)
    train(config, tmp_path, progress=False)
    records = [record for record in read_metrics(tmp_path) if "loss" in record]
    # The model as it was before step 1 (same seed, same construction), on batch 0.
    task = tasks.get("copy")
    torch.manual_seed(config.seed)
    model = liemem.build_model("lantm", task.vocab_size)
    ((inputs, targets),) = (task.encode(examples) for examples in train_examples(task, (2, 4), 0, 32, config.seed))
    with torch.no_grad():
        predicted = model(torch.from_numpy(inputs), targets.shape[1]).argmax(-1).numpy()
    right = predicted == targets
    assert records[0]["train"] == {"fine": right.mean(), "coarse": right.all(axis=1).mean(), "samples": 32}
    assert records[1]["train"]["samples"] == 32 and 0 <= records[1]["train"]["fine"] <= 1


def test_a_checkpoint_from_before_training_scores_resumes(tmp_path, monkeypatch):
    calls = {"n": 0}
    original = training_loop.batch_loss

    def interrupting(model, buckets):
        calls["n"] += 1
        if calls["n"] == 3:  # after step 2's checkpoint, in the middle of the first logging window
            raise KeyboardInterrupt
        return original(model, buckets)

    monkeypatch.setattr(training_loop, "batch_loss", interrupting)
    with pytest.raises(KeyboardInterrupt):
        train(tiny(steps=8, log_every=4, checkpoint_every=2), tmp_path, progress=False)
    monkeypatch.setattr(training_loop, "batch_loss", original)
    state = state_of(tmp_path)
    assert state["run"]["window"][1] == 2
    state["run"]["window"] = state["run"]["window"][:2]  # as checkpoints held it: loss sum and step count
    torch.save(state, tmp_path / "checkpoint.pt")
    assert train(tiny(steps=8, log_every=4, checkpoint_every=2), tmp_path, progress=False).step == 8
    logged = [record for record in read_metrics(tmp_path) if "loss" in record]
    # Step 4's window spans steps 1-4 for the loss, but only steps 3 and 4 were scored after the resume.
    assert [record["step"] for record in logged] == [4, 8]
    assert logged[0]["train"]["samples"] == 2 * 32 and logged[1]["train"]["samples"] == 4 * 32


def _losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]


@pytest.mark.parametrize("model", ["lantm", "lantm-s"])
def test_two_runs_of_one_seed_agree_bit_for_bit(tmp_path, model):
    """The same configuration trained twice in one process gives the same loss at every step, to the last bit.

    Before the compiled loop's backward kept its scratch rows on 64-byte-aligned memory, its vectorised sums
    depended on where the heap put them, and two such runs parted between steps 52 and 155."""
    from liemem.engine import native

    if not native.enabled() or native.lantm_loop() is None:
        pytest.skip("the compiled loop kernels are not available here")
    config = TrainConfig(
        model=model, train_lengths=(2, 8), test_lengths=(9, 10), steps=200, seed=8, eval_every=1000,
        eval_samples=32, log_every=1, device="cpu",
    )  # fmt: skip
    # Something in between, so that the second run's buffers land elsewhere on the heap.
    padding = [np.empty(4097 * k, dtype=np.float32) for k in range(1, 8)]
    train(config, tmp_path / "a", progress=False, echo=lambda line: None)
    padding.append(np.empty(12_345, dtype=np.float32))
    train(config, tmp_path / "b", progress=False, echo=lambda line: None)
    first, second = _losses(tmp_path / "a"), _losses(tmp_path / "b")
    assert len(first) == 200 and first == second
