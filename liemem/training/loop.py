"""The training loop: RMSProp on the mean per-symbol cross-entropy, with the paper's schedule, clipping,
periodic 2x-length evaluation, checkpoints a killed run resumes from exactly, and a stop on the first NaN."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import NamedTuple

import torch
from tqdm import tqdm

from .. import footprint, tasks
from ..config import ConfigError
from ..factory import build_model
from . import checkpoint
from .checkpoint import BEST_FILE, CHECKPOINT_FILE, CheckpointError
from .config import TrainConfig, config_from_dict
from .data import CURRICULUM_STREAM, batch_loss, curriculum_sizes, test_examples, to_buckets, train_examples
from .evaluate import Scores, score
from .metrics import MetricsLog, read_metrics

SUMMARY_FILE = "summary.json"
# Compiling a group's move costs 5 to 10 seconds and saves about 0.1 ms per time step (see liemem.engine.compiling):
# at the paper's sequence lengths it pays back within a few hundred training steps, so shorter runs skip it.
COMPILE_MIN_STEPS = 1000


class TrainingDiverged(RuntimeError):
    """The loss or the gradient became NaN or infinite; training stopped before applying that step."""


class RunSummary(NamedTuple):
    """How a run ended: its last step, the final and best scores (with the best one's step), and the time spent."""

    step: int
    final: Scores
    best: Scores
    best_step: int
    wall_seconds: float

    def as_dict(self) -> dict:
        """The summary as plain data: what `liemem train` prints and `summary.json` holds."""
        return {
            "step": self.step,
            **self.final.as_dict(),
            "best": {"step": self.best_step, **self.best.as_dict()},
            "wall_seconds": round(self.wall_seconds, 3),
        }


def learning_rate(config: TrainConfig, step: int) -> float:
    """The rate for optimizer step `step` (1-based): constant, then times `decay_rate` after every `decay_every`
    steps past `decay_after`. As in the authors' code, the first decayed step is `decay_after + decay_every + 1`
    (there the rate decays at the end of an iteration). With `warmup_steps`, the rate first grows linearly from
    lr / warmup_steps at step 1 to lr at step `warmup_steps`."""
    warmup = min(1.0, step / config.warmup_steps) if config.warmup_steps else 1.0
    if step <= config.decay_after:
        return config.lr * warmup
    return config.lr * warmup * config.decay_rate ** ((step - 1 - config.decay_after) // config.decay_every)


def clip_gradients(parameters, max_norm: float) -> torch.Tensor:
    """Scale the gradients to a global norm of at most `max_norm`; return their norm before scaling.

    As `torch.nn.utils.clip_grad_norm_`, but the norm is taken relative to the largest entry, so finite gradients
    always have a finite norm. In float32, a sum of squares overflows once the norm passes 1.8e19, which the
    inverse-square read's gradients can reach when a head sits within 1e-5 of a key; the authors' float64
    clipping scales such a gradient down and trains on. A NaN or infinite gradient gives a non-finite norm.
    """
    parameters = list(parameters)
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros((), device=parameters[0].device if parameters else None)
    largest = torch.stack([g.detach().abs().amax() for g in grads]).amax()
    unit = torch.where(largest > 0, largest, torch.ones_like(largest))
    norms = torch.stack([torch.linalg.vector_norm(g.detach() / unit) for g in grads])
    norm = unit * torch.linalg.vector_norm(norms)
    factor = (max_norm / (norm + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(factor.to(g.dtype))
    return norm


def resolve_device(name: str) -> torch.device:
    """'auto' is CUDA when present, else the CPU; other names must be devices torch has here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'") from None
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available.get(device.type, False):
        raise ConfigError(f"device {name!r} is not available on this machine")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r} does not exist: this machine has {torch.cuda.device_count()} CUDA devices")
    return device


def stored_config(state: dict, source: str) -> TrainConfig:
    """The resolved configuration a checkpoint was written with."""
    try:
        # A checkpoint from before the warm-up existed trained without one.
        return config_from_dict({"warmup_steps": 0, **state["config"]}, source).resolved()
    except (KeyError, TypeError, ConfigError) as error:
        raise CheckpointError(f"{source} holds no usable configuration: {error}") from None


def restore_model(out: Path, device: str = "auto", best: bool = False):
    """The model of the run in `out` (its last checkpoint, or its best evaluation with `best`), its task and
    configuration, and the step it was saved at."""
    out = Path(out)
    state = checkpoint.load(out / CHECKPOINT_FILE)
    source = f"checkpoint {str(out / CHECKPOINT_FILE)!r}"
    config = stored_config(state, source)
    task = tasks.get(config.task, **config.task_options)
    model = build_model(config.model, task.vocab_size, **config.model_options).to(config.torch_dtype)
    step = state["step"]
    if best:
        state = checkpoint.load(out / BEST_FILE)
        source, step = f"checkpoint {str(out / BEST_FILE)!r}", state["step"]
    checkpoint.load_model_state(model, state["model"], source)
    return model.to(resolve_device(device)), task, config, step


class _Run:
    """The mutable state of one run, saved whole in every checkpoint."""

    def __init__(self):
        self.step = 0
        self.evaluations: list[dict] = []
        self.best: dict | None = None
        self.window = _empty_window()
        self.elapsed = 0.0
        self.float64_steps = 0  # logged so far; the window holds those since the last log record

    def state(self) -> dict:
        return {
            "step": self.step,
            "evaluations": self.evaluations,
            "best": self.best,
            "window": self.window,
            "elapsed": self.elapsed,
            "float64_steps": self.float64_steps,
        }

    def load(self, state: dict) -> None:
        self.step, self.evaluations, self.best = state["step"], state["evaluations"], state["best"]
        # Checkpoints from before training scores were logged hold only the loss sum and count.
        window = list(state["window"])
        self.window, self.elapsed = window + _empty_window()[len(window) :], state["elapsed"]
        self.float64_steps = state.get("float64_steps", 0)


def _empty_window() -> list:
    """Sums since the last log record: loss, steps, right symbols, symbols, right examples, examples, and steps
    computed again in float64."""
    return [0.0, 0, 0, 0, 0, 0, 0]


FLOAT64_STEPS = 6  # the window's entry counting the steps computed again in float64


def _gradient_step(model, optimizer, buckets, clip_norm: float):
    """The batch's loss and clipped gradients, left in the parameters' `.grad`; the loss and the gradient norm
    before clipping as Python floats."""
    batch = batch_loss(model, buckets)
    optimizer.zero_grad(set_to_none=True)
    batch.loss.backward()
    grad_norm = clip_gradients(model.parameters(), clip_norm)
    # float32, not float64, which some devices (Apple's MPS) lack; one copy to the host.
    loss_value, norm_value = torch.stack((batch.loss.detach().float(), grad_norm.float())).cpu().tolist()
    return batch, loss_value, norm_value


def _gradient_step_in_float64(model, optimizer, buckets, config: TrainConfig):
    """`_gradient_step` with the model converted to float64 in place (the optimizer keeps the same parameters),
    then back to the run's dtype with its clipped gradients: exact, as the weights were values of that dtype."""
    model.double()
    try:
        return _gradient_step(model, optimizer, buckets, config.clip_norm)
    finally:
        model.to(config.torch_dtype)


def _can_recompute_in_float64(model, device: torch.device) -> bool:
    """Whether a step that overflowed can be computed again in float64: the model is in a narrower dtype, and the
    device has float64 (Apple's MPS has not)."""
    narrower = any(parameter.dtype != torch.float64 for parameter in model.parameters())
    return narrower and device.type != "mps"


def _print(line: str) -> None:
    print(line, flush=True)  # evaluation lines show at once, also when stdout is a file


def train(config: TrainConfig, out: str | Path, progress: bool | None = None, echo=_print) -> RunSummary:
    """Train `config` into the directory `out`, resuming from its checkpoint if it holds one.

    `progress` shows a progress bar (None: only on a terminal); `echo` receives a line naming the model's engine
    plan (for Lie-access models), then one line per evaluation and one for the first step computed in float64.
    Raises `ConfigError` for an invalid configuration, `CheckpointError` if `out` holds a run of another
    configuration, and `TrainingDiverged` (naming the step) if the loss or gradient stops being finite.
    The caller's random generators are as they were afterwards: the run seeds its own.
    """
    config = config.resolved()
    device = resolve_device(config.device)
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        trainer = _Trainer(config, Path(out), device, echo)
        return trainer.run(progress)


class _Trainer:
    """One training run, in named steps: `__init__` builds or resumes it, `run` takes its steps, each of which
    fetches a batch (`batches`), computes and checks its gradients (`gradient_step`), logs (`log`), and
    evaluates and saves on schedule (`evaluate`, `save`)."""

    def __init__(self, config: TrainConfig, out: Path, device: torch.device, echo):
        self.config, self.out, self.device, self.echo = config, out, device, echo
        out.mkdir(parents=True, exist_ok=True)
        self.task = tasks.get(config.task, **config.task_options)
        torch.manual_seed(config.seed)
        model = build_model(config.model, self.task.vocab_size, **config.model_options)
        self.model = model.to(device, config.torch_dtype)
        if config.steps >= COMPILE_MIN_STEPS:  # where compiling pays, unless turned off (liemem.engine.compiling)
            self.model.compile_steps()
        self.check_memory()
        self.optimizer = torch.optim.RMSprop(
            self.model.parameters(), lr=config.lr, alpha=config.rmsprop_alpha, eps=config.rmsprop_eps
        )
        self.run_state = _Run()
        self.path = out / CHECKPOINT_FILE
        self.best_model = None
        if self.path.exists():
            self.best_model = _resume(self.path, config, self.model, self.optimizer, self.run_state, device)
            if self.run_state.best is not None:  # best.pt may be from an evaluation after the checkpoint
                _save_best(out, self.run_state.best, self.best_model)
        self.last_saved = self.run_state.step if self.path.exists() else None
        (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
        self.metrics = MetricsLog(out, self.run_state.step)
        if hasattr(self.model, "plan"):  # how its recurrence runs (liemem.engine), on screen and in the log
            plan = str(self.model.plan())
            echo(f"engine: {plan}")
            logged = [record["engine"] for record in read_metrics(out) if "engine" in record]
            if not logged or logged[-1] != plan:  # a resumed run logs it again only where it changed
                self.metrics.write({"step": self.run_state.step, "engine": plan})
        self.cache: dict[int, list] = {}
        self.test_set = None
        self.bar = None

    def check_memory(self) -> None:
        """Refuse, before allocating, a run whose longest training or evaluation batch would not fit in the
        device's free memory (`footprint.check`)."""
        config = self.config
        train = footprint.longest_sequence(self.task, config.train_lengths)
        advice = "use shorter --train-lengths or a smaller --batch-size"
        footprint.check(self.model, config.batch_size, train, True, self.device, "a training step", advice)
        test = footprint.longest_sequence(self.task, config.test_lengths)
        advice = "use shorter --test-lengths or a smaller --batch-size"
        footprint.check(self.model, config.batch_size, test, False, self.device, "an evaluation batch", advice)

    def run(self, progress: bool | None) -> RunSummary:
        """Train to `config.steps`; return the summary, also written to `summary.json`."""
        config, run = self.config, self.run_state
        self.bar = tqdm(
            total=config.steps,
            initial=run.step,
            unit="step",
            disable=None if progress is None else not progress,
            dynamic_ncols=True,
            file=sys.stderr,
        )
        self.started = self.step_time = time.perf_counter()
        self.window_samples = 0
        try:
            while run.step < config.steps:
                self.take_step(run.step + 1)
            if not run.evaluations or run.evaluations[-1]["step"] != run.step:
                # Resumed at its last step before that step's evaluation: evaluate and save it now.
                self.evaluate()
                self.save()
        finally:
            self.bar.close()
            self.metrics.close()
        run.elapsed += time.perf_counter() - self.started
        summary = _summary(run)
        (self.out / SUMMARY_FILE).write_text(json.dumps(summary.as_dict(), indent=2) + "\n")
        return summary

    def take_step(self, step: int) -> None:
        """Optimizer step `step`, then its log record, evaluation and checkpoint where they are due."""
        config = self.config
        buckets = self.batches(step)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        batch, loss_value, norm_value = self.gradient_step(step, buckets)
        counts = torch.stack((batch.right_symbols, batch.right_examples)).cpu()
        right_symbols, right_examples = counts.tolist()
        self.optimizer.step()
        self.run_state.step = step
        values = (loss_value, 1, right_symbols, batch.symbols, right_examples, batch.examples)
        for index, value in enumerate(values):
            self.run_state.window[index] += value
        self.window_samples += sum(len(bucket.targets) for bucket in buckets)
        if step % config.log_every == 0 or step == config.steps:
            self.log(step, norm_value)
        if step % config.eval_every == 0 or step == config.steps:
            self.evaluate()
        self.bar.update(1)
        if step % config.checkpoint_every == 0 or step % config.eval_every == 0 or step == config.steps:
            self.save()

    def batches(self, step: int) -> list:
        """Step `step`'s training batch, as buckets on the device (the small regime's are cached)."""
        config, task, device = self.config, self.task, self.device
        small = config.regime == "small"
        index = (step - 1) % config.small_regime_batches if small else step - 1
        data_seed = config.seed if config.data_seed is None else config.data_seed
        if step <= config.curriculum_steps:  # short examples first, from a stream of their own
            sizes = curriculum_sizes(config.train_lengths, step, config.curriculum_steps)
            examples = train_examples(
                task, sizes, step - 1, config.batch_size, data_seed, config.one_length_per_batch, CURRICULUM_STREAM
            )
            return to_buckets(task, examples, device)
        buckets = self.cache.get(index)
        if buckets is None:
            examples = train_examples(
                task, config.train_lengths, index, config.batch_size, data_seed, config.one_length_per_batch
            )
            buckets = to_buckets(task, examples, device)
            if small:
                self.cache[index] = buckets
        return buckets

    def gradient_step(self, step: int, buckets):
        """The batch's loss and clipped gradients (`_gradient_step`), computed again in float64 where only the
        backward pass overflowed and the configuration allows; `TrainingDiverged` where they are not finite."""
        config, run = self.config, self.run_state
        batch, loss_value, norm_value = _gradient_step(self.model, self.optimizer, buckets, config.clip_norm)
        finite = math.isfinite(loss_value) and math.isfinite(norm_value)
        # Only the backward pass: a loss that is not finite means the weights themselves have left the range.
        overflowed = math.isfinite(loss_value) and not finite
        if overflowed and config.float64_on_overflow and _can_recompute_in_float64(self.model, self.device):
            first = run.window[FLOAT64_STEPS] == 0 and not run.float64_steps
            overflow = f"gradient norm {norm_value}"
            batch, loss_value, norm_value = _gradient_step_in_float64(self.model, self.optimizer, buckets, config)
            if not (math.isfinite(loss_value) and math.isfinite(norm_value)):
                raise TrainingDiverged(
                    f"training stopped at step {step}: {overflow}, and loss {loss_value}, gradient norm "
                    f"{norm_value} when computed again in float64; {self.kept()}"
                )
            run.window[FLOAT64_STEPS] += 1
            if first:
                self.say(
                    f"step {step}: {overflow} in {config.dtype}; computed again in float64 (gradient norm "
                    f"{norm_value:.3g}). Such steps are counted in metrics.jsonl as float64_steps."
                )
        elif not finite:
            raise TrainingDiverged(
                f"training stopped at step {step}: loss {loss_value}, gradient norm {norm_value}; {self.kept()}"
            )
        return batch, loss_value, norm_value

    def log(self, step: int, norm_value: float) -> None:
        """A `metrics.jsonl` record of the window since the last one."""
        run, now = self.run_state, time.perf_counter()
        loss_sum, steps, right_symbols, symbols, right_examples, examples, float64_steps = run.window
        record = {
            "step": step,
            "loss": loss_sum / steps,
            "lr": learning_rate(self.config, step),
            "grad_norm": norm_value,
            "samples_per_second": self.window_samples / max(now - self.step_time, 1e-9),
        }
        if float64_steps:
            record["float64_steps"] = float64_steps
            run.float64_steps += float64_steps
        if examples:  # greedy scores on the training batches, before each batch's update
            fine, coarse = right_symbols / symbols, right_examples / examples
            record["train"] = {"fine": fine, "coarse": coarse, "samples": int(examples)}
        self.metrics.write(record)
        self.bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}", refresh=False)
        run.window, self.step_time, self.window_samples = _empty_window(), now, 0

    def evaluate(self) -> None:
        """Score the model on the test set; keep the best weights (`best.pt`) and say the scores."""
        config, run = self.config, self.run_state
        if self.test_set is None:
            examples = test_examples(
                self.task,
                config.test_lengths,
                config.eval_samples,
                config.eval_seed,
                config.batch_size,
                config.one_length_per_batch,
            )
            self.test_set = to_buckets(self.task, examples, self.device, config.batch_size)
        scores = score(self.model, self.test_set)
        record = {"step": run.step, **scores.as_dict()}
        run.evaluations.append(record)
        counts = run.step > config.best_after or run.step == config.steps
        if counts and (run.best is None or scores.better_than(Scores(run.best["fine"], run.best["coarse"], 0))):
            run.best = record
            self.best_model = {name: tensor.detach().clone() for name, tensor in self.model.state_dict().items()}
            _save_best(self.out, run.best, self.best_model)
        self.metrics.write({"step": run.step, "eval": scores.as_dict()})
        line = f"step {run.step}: fine {100 * scores.fine:.2f}%  coarse {100 * scores.coarse:.2f}%"
        if run.best is not None:
            line += f"  (best coarse {100 * run.best['coarse']:.2f}% at step {run.best['step']})"
        self.say(line)

    def save(self) -> None:
        """Write the checkpoint, unless the weights are no longer finite (`TrainingDiverged`)."""
        run = self.run_state
        # A step can keep a finite loss and gradient yet overflow the weights: such a state is not "good".
        if not torch.stack([parameter.isfinite().all() for parameter in self.model.parameters()]).all():
            raise TrainingDiverged(
                f"training stopped at step {run.step}: the weights are no longer finite; {self.kept()}"
            )
        run.elapsed += time.perf_counter() - self.started
        self.started = time.perf_counter()
        self.metrics.flush()
        checkpoint.save(self.path, _checkpoint_state(self.config, self.model, self.optimizer, run, self.best_model))
        self.last_saved = run.step

    def kept(self) -> str:
        """What a stop leaves behind, for its message."""
        if self.last_saved is None:
            return "no checkpoint had been written yet"
        return f"the last good checkpoint (step {self.last_saved}) is kept in {str(self.path)!r}"

    def say(self, line: str) -> None:
        """`echo` a line without tearing the progress bar."""
        self.bar.clear()
        self.echo(line)
        self.bar.refresh()


def _save_best(out: Path, record: dict, state_dict: dict) -> None:
    checkpoint.save(out / BEST_FILE, {"step": record["step"], "model": state_dict, "scores": record})


def _resume(path: Path, config: TrainConfig, model, optimizer, run: _Run, device: torch.device) -> dict | None:
    """Load the checkpoint at `path` into the model, optimizer and run; return the best evaluation's weights."""
    state = checkpoint.load(path)
    source = f"checkpoint {str(path)!r}"
    saved = stored_config(state, source)
    differing = saved.differences(config)
    if differing:
        mine, theirs = saved.to_dict(), config.to_dict()
        detail = ", ".join(f"{name} is {mine[name]!r} there, {theirs[name]!r} here" for name in differing)
        raise CheckpointError(f"{source} is from another configuration ({detail}); use another output directory")
    checkpoint.load_model_state(model, state["model"], source)
    try:
        optimizer.load_state_dict(state["optimizer"])
    except (ValueError, KeyError) as error:
        raise CheckpointError(f"{source}: optimizer state does not fit the model: {error}") from None
    checkpoint.set_rng_state(state["rng"], cuda=device.type == "cuda")
    run.load(state["run"])
    if run.step > config.steps:
        raise CheckpointError(f"{source} is at step {run.step}, past the {config.steps} steps asked for")
    return state.get("best_model")


def _checkpoint_state(config, model, optimizer, run: _Run, best_model: dict | None) -> dict:
    return {
        "step": run.step,
        "config": config.to_dict(),
        "model": model.state_dict(),
        "best_model": best_model,
        "optimizer": optimizer.state_dict(),
        "rng": checkpoint.rng_state(),
        "run": run.state(),
    }


def _summary(run: _Run) -> RunSummary:
    if not run.evaluations:
        raise RuntimeError("the run has no evaluation")
    final, best = run.evaluations[-1], run.best
    return RunSummary(
        run.step,
        Scores(final["fine"], final["coarse"], final["samples"]),
        Scores(best["fine"], best["coarse"], best["samples"]),
        best["step"],
        run.elapsed,
    )
