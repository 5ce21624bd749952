"""The configuration of a training run: one flat record, read from TOML, overridable field by field.

Defaults are the paper's (section 5, appendix A and the authors' code), with a warm-up added (see
`DEFAULT_WARMUP_STEPS`) and tighter clipping for the inverse-square read (see `INVERSE_SQUARE_CLIP_NORM`):
RMSProp (alpha 0.99, eps 1e-8), batches of 32 with one length each, 10,000 steps, the small regime (the first
500 batches repeated), learning-rate decay of 0.99 every 20 steps after 3,000 steps (the authors' delay of 300
iterations of 10 steps), gradients clipped to a global norm of 32 (0.25 with the inverse-square read), and
3,200 test samples at the task's 2x lengths.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path

import torch

from .. import tasks
from ..config import ConfigError, field_names, require_bool, require_choice, require_float, require_int
from ..factory import PRESETS, model_config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

REGIMES = ("small", "large")
# The parameters' dtype. The authors' code ran on the CPU in Torch7's default, float64, for every Lie-access and
# RAM run of the paper's table (`gpuid -1`); float32 is twice as fast here.
DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}
# A step whose loss is finite but whose gradient overflows the parameters' dtype is computed again in float64 (the
# authors' dtype), where the same gradient is finite and clipping scales it down, instead of stopping the run. At
# small temperatures the softmax read amplifies gradients backward in time: in SLANTM-s on copy (large regime, the
# paper's settings, step 101) they grow by 23 orders of magnitude over 103 time steps
# (benchmarks/read_gradients.py), and products of such factors pass float32's 3.4e38.
# Far beyond any sensible run, and small enough that a typo is refused by name instead of exhausting memory.
MAX_BATCH_SIZE = 1_000_000
MAX_EVAL_SAMPLES = 10_000_000
MAX_SEED = 2**63 - 1
# Fields that may change when a run resumes: how long it runs, where, and how often it reports and saves.
RESUMABLE_FIELDS = ("steps", "device", "log_every", "checkpoint_every")
# Models with memory train at 0.02, the middle of the paper's grid (0.01-0.04), the LSTM baseline at the
# paper's 0.002. The NTM, which the paper does not train, gets the memory models' rate.
DEFAULT_LEARNING_RATES = {"lstm": 0.002}
DEFAULT_LEARNING_RATE = 0.02
# RMSProp's mean square starts from 0, so its first steps are up to 10 times the learning rate. Measured over
# seeds (README, "Training reliably"), that first burst throws many runs off for good at 0.02, and a linear
# warm-up over the first 300 steps lets 26 of 40 short copy runs of the four Lie-access models learn, against 14
# of 40 without it and 15 of 40 at 0.01. The paper's configurations set `warmup_steps = 0`.
DEFAULT_WARMUP_STEPS = 300
# The inverse-square read's gradient grows as 1/d^3 as a head nears a key, so a run that has learned meets rare
# batches whose gradient is hundreds of times its usual norm (0.01-0.1 by then); RMSProp, whose mean square has
# shrunk with the norm, turns each into a step of up to 10 times the rate, which throws runs back to chance.
# Clipping at 0.25 caps those steps. Measured over seeds (README, "Training reliably"), it lets 9 of 10 short
# LANTM copy runs learn against 6 of 10 at the paper's 32 (both with the paper's read gate); the softmax read
# has no such singularity and learned worse with it, so every other model keeps 32.
INVERSE_SQUARE_CLIP_NORM = 0.25
DEFAULT_CLIP_NORM = 32.0


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. `None` training lengths, learning rate and clipping norm mean the
    task's and model's; `None` test lengths, twice the training lengths (`twice_the_length`).

    `seed` seeds the model's initialisation and `data_seed` the training batches (`None`: the same as `seed`;
    the authors' code trains every seed on one data file, which a fixed `data_seed` reproduces). Evaluations at
    steps up to `best_after` are logged but do not compete for the best one, except the last (the authors'
    code evaluates only after step 5,000: `best_after = 5000`). `curriculum_steps` trains the first steps on short
    examples: at step s the longest training size is shortest + (longest - shortest) * s // curriculum_steps, in
    batches of a random stream of their own, after which training goes on with the regime's batches.
    """

    task: str = "copy"
    model: str = "lantm"
    task_options: dict = dataclasses.field(default_factory=dict)
    model_options: dict = dataclasses.field(default_factory=dict)
    steps: int = 10_000
    batch_size: int = 32
    train_lengths: tuple[int, int] | None = None
    test_lengths: tuple[int, int] | None = None
    one_length_per_batch: bool = True
    regime: str = "small"
    small_regime_batches: int = 500
    lr: float | None = None
    rmsprop_alpha: float = 0.99
    rmsprop_eps: float = 1e-8
    warmup_steps: int = DEFAULT_WARMUP_STEPS
    curriculum_steps: int = 0
    decay_after: int = 3_000
    decay_rate: float = 0.99
    decay_every: int = 20
    clip_norm: float | None = None
    seed: int = 1
    data_seed: int | None = None
    eval_every: int = 500
    best_after: int = 0
    eval_samples: int = 3_200
    eval_seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    device: str = "auto"
    dtype: str = "float32"
    float64_on_overflow: bool = True

    @property
    def torch_dtype(self) -> torch.dtype:
        """`dtype` as a torch dtype."""
        return DTYPES[self.dtype]

    def resolved(self) -> TrainConfig:
        """This configuration checked, with the task's lengths and the model's learning rate filled in.

        Raises `ConfigError` naming the first field that is invalid.
        """
        owner = "training config"
        task = tasks.get(self.task, **_table(owner, "task_options", self.task_options))
        model_config(self.model, **_table(owner, "model_options", self.model_options))
        for field in ("steps", "small_regime_batches", "decay_every", "eval_every", "checkpoint_every", "log_every"):
            require_int(owner, field, getattr(self, field))
        require_int(owner, "batch_size", self.batch_size, maximum=MAX_BATCH_SIZE)
        require_int(owner, "eval_samples", self.eval_samples, maximum=MAX_EVAL_SAMPLES)
        require_int(owner, "decay_after", self.decay_after, minimum=0)
        require_int(owner, "warmup_steps", self.warmup_steps, minimum=0)
        require_int(owner, "curriculum_steps", self.curriculum_steps, minimum=0)
        require_int(owner, "best_after", self.best_after, minimum=0)
        for field in ("seed", "eval_seed"):
            require_int(owner, field, getattr(self, field), minimum=0, maximum=MAX_SEED)
        if self.data_seed is not None:
            require_int(owner, "data_seed", self.data_seed, minimum=0, maximum=MAX_SEED)
        require_choice(owner, "regime", self.regime, REGIMES)
        require_choice(owner, "dtype", self.dtype, tuple(DTYPES))
        require_bool(owner, "one_length_per_batch", self.one_length_per_batch)
        require_bool(owner, "float64_on_overflow", self.float64_on_overflow)
        if not isinstance(self.device, str) or not self.device:
            raise ConfigError(f"{owner}: device must be a device name such as 'cpu', 'cuda' or 'auto'")
        lr = self.lr if self.lr is not None else default_learning_rate(self.model)
        require_float(owner, "lr", lr, positive=True)
        clip_norm = self.clip_norm if self.clip_norm is not None else default_clip_norm(self.model, self.model_options)
        require_float(owner, "clip_norm", clip_norm, positive=True)
        require_float(owner, "rmsprop_eps", self.rmsprop_eps, positive=True)
        require_float(owner, "rmsprop_alpha", self.rmsprop_alpha, minimum=0.0)
        if self.rmsprop_alpha >= 1:  # the squared-gradient average would stay at 0 and every step explode
            raise ConfigError(f"{owner}: rmsprop_alpha must be in [0, 1), got {self.rmsprop_alpha}")
        require_float(owner, "decay_rate", self.decay_rate, minimum=0.0)
        if self.decay_rate > 1:
            raise ConfigError(f"{owner}: decay_rate must be in [0, 1], got {self.decay_rate}")
        train = task.check_sizes(self.train_lengths or task.train_sizes, "train_lengths")
        test = task.check_sizes(self.test_lengths or twice_the_length(train), "test_lengths")
        return dataclasses.replace(
            self, lr=float(lr), clip_norm=float(clip_norm), train_lengths=train, test_lengths=test
        )

    def to_dict(self) -> dict:
        """Plain data (lists for the ranges), as a checkpoint or a TOML file holds it."""
        data = dataclasses.asdict(self)
        for field in ("train_lengths", "test_lengths"):
            if data[field] is not None:
                data[field] = list(data[field])
        return data

    def to_toml(self) -> str:
        """The configuration as a TOML file `load_config` reads back to an equal one (fields left at `None`, which
        mean "the task's" or "the model's", are left out)."""
        data = {name: value for name, value in self.to_dict().items() if value is not None}
        tables = {name: data.pop(name) for name in ("task_options", "model_options")}
        lines = [f"{name} = {toml_value(value)}" for name, value in data.items()]
        for name, table in tables.items():
            lines += ["", f"[{name}]"] + [f"{key} = {toml_value(value)}" for key, value in table.items()]
        return "\n".join(lines) + "\n"

    def differences(self, other: TrainConfig) -> list[str]:
        """The fields that differ between two resolved configurations, ignoring those a resumed run may change."""
        mine, theirs = self.to_dict(), other.to_dict()
        differing = [name for name in mine if name not in RESUMABLE_FIELDS and mine[name] != theirs[name]]
        if "model_options" in differing and self.model == other.model:
            # Options spelled out at their default values build the same model.
            if model_config(self.model, **self.model_options) == model_config(other.model, **other.model_options):
                differing.remove("model_options")
        return differing


def default_learning_rate(model: str) -> float:
    """The learning rate a model trains with unless the configuration sets one."""
    preset = PRESETS.get(model)
    if preset is not None:
        for name, rate in DEFAULT_LEARNING_RATES.items():
            if preset.model is PRESETS[name].model:
                return rate
    return DEFAULT_LEARNING_RATE


def twice_the_length(train_sizes: tuple[int, int]) -> tuple[int, int]:
    """The test sizes of a training range: past its longest size, up to twice that (every task's own test range is
    this of its own training range: 2-64 gives 65-128)."""
    longest = train_sizes[1]
    return (longest + 1, 2 * longest)


def default_clip_norm(model: str, model_options: dict) -> float:
    """The global gradient norm a model's gradients are clipped to unless the configuration sets one."""
    weighting = getattr(model_config(model, **model_options), "weighting", None)
    return INVERSE_SQUARE_CLIP_NORM if weighting == "inverse_square" else DEFAULT_CLIP_NORM


def toml_value(value) -> str:
    """A value as TOML: booleans, inline tables, and JSON's spelling of numbers, strings and lists (TOML's too)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return json.dumps(value)


def _table(owner: str, field: str, value) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{owner}: {field} must be a table of options, got {value!r}")
    return value


def parse_lengths(text: str, what: str = "lengths") -> tuple[int, int]:
    """'A-B' (or a single 'A') as a (low, high) pair; `ConfigError` for anything else."""
    low, separator, high = str(text).strip().partition("-")
    try:
        bounds = (int(low), int(high if separator else low))
    except ValueError:
        raise ConfigError(f"bad {what} {text!r}: expected a range A-B of positive integers, such as 2-8") from None
    if bounds[0] > bounds[1]:
        raise ConfigError(f"bad {what} {text!r}: the first bound is larger than the second")
    return bounds


def scaled_lengths(config: TrainConfig, scale: int) -> tuple[int, int]:
    """Sizes beyond training, up to `scale` times its largest size u: K u / 2 + 1 to K u for K = `scale` (2 is
    the paper's test range, u + 1 to 2u; 4 is the range past it, 2u + 1 to 4u)."""
    require_int("evaluation", "scale", scale, minimum=2, maximum=1024)
    largest = config.resolved().train_lengths[1]
    return scale * largest // 2 + 1, scale * largest


def config_from_dict(data: dict, source: str = "configuration") -> TrainConfig:
    """A `TrainConfig` from plain data; unknown keys are refused with the list of valid ones."""
    valid = field_names(TrainConfig)
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise ConfigError(
            f"{source}: unknown option {', '.join(map(repr, unknown))}; valid options: {', '.join(valid)}"
        )
    data = dict(data)
    for field in ("train_lengths", "test_lengths"):
        value = data.get(field)
        if isinstance(value, str):
            data[field] = parse_lengths(value, field)
        elif isinstance(value, list | tuple):
            if len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                raise ConfigError(f"{source}: {field} must be two integers [A, B] or a string 'A-B', got {value!r}")
            data[field] = tuple(value)
        elif value is not None:
            raise ConfigError(f"{source}: {field} must be two integers [A, B] or a string 'A-B', got {value!r}")
    return TrainConfig(**data)


def load_config(path: str | Path) -> TrainConfig:
    """A `TrainConfig` from a TOML file whose top-level keys are its fields (tables for the option fields)."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {error}") from None
    except OSError as error:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {error.strerror or error}") from None
    return config_from_dict(data, f"config file {str(path)!r}")
