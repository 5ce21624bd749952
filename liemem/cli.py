"""The `liemem` command: draw task samples, train a model, evaluate and plot a trained run.

    liemem sample --task copy --split test -n 3 --seed 0
    liemem train --task copy --model lantm --out runs/copy [--config FILE] [--steps N] ...
    liemem train --preset paper --task copy --model slantm --regime small --out runs/cell [--seed 2] ...
    liemem eval runs/copy [--lengths 65-128] [-n 3200] [--device cuda]
    liemem plot runs/copy --out copy.png [--kind trail] [--task T] [--length K] [--seed S]
    liemem suite --models lantm slantm --seeds 1 2 3 --out runs/suite --results results/t1b [--workers 2]
    liemem suite --report results/t1b

Groups and tasks of your own are available once the module defining them is imported: `--import MODULE` (or
a path to a .py file) on any command.

Errors a user can fix (an unknown name or option, a bad range, a missing or mismatched checkpoint) print one
line and exit with status 2; a run that diverges exits with status 3.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import importlib.util
import itertools
import json
import os
import sys
from pathlib import Path

from . import engine, presets, tasks
from .config import ConfigError, require_int
from .training import CheckpointError, TrainConfig, TrainingDiverged, evaluate, load_config, parse_lengths
from .training.config import MAX_EVAL_SAMPLES, MAX_SEED, scaled_lengths
from .training.data import test_examples, train_examples
from .training.loop import restore_model, train

USER_ERRORS = (ConfigError, CheckpointError, engine.EngineError)


class UsageError(Exception):
    """A command line argparse refused."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, raised rather than printed with the usage."""

    def error(self, message):
        raise UsageError(f"{self.prog}: error: {message}")


def import_extensions(names: list[str]) -> None:
    """Import modules that register groups or tasks of the user's own: dotted module names or .py files."""
    for name in names:
        path = Path(name)
        if name.endswith(".py"):
            if not path.is_file():
                raise ConfigError(f"--import {name}: no such file")
            if path.stem in sys.modules:  # registering the file under that name would replace the module
                raise ConfigError(f"--import {name}: a module named {path.stem!r} is already imported; rename the file")
        elif not name.strip():
            raise ConfigError("--import needs a module name or a .py file")
        try:
            if name.endswith(".py"):
                spec = importlib.util.spec_from_file_location(path.stem, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[path.stem] = module
                spec.loader.exec_module(module)
            else:
                importlib.import_module(name)
        except Exception as error:  # the user's code may fail in any way; say where, in one line
            if name.endswith(".py"):
                sys.modules.pop(path.stem, None)
            raise ConfigError(f"--import {name}: {type(error).__name__}: {error}") from None


def _add_import_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--import", dest="imports", action="append", default=[], metavar="MODULE",
        help="a module or .py file to import first, registering your own groups or tasks (repeatable)",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The parser of the three commands, whose errors raise `UsageError`."""
    parser = _Parser(prog="liemem", description="Lie-access neural memory: tasks, training, evaluation and plots.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sample = commands.add_parser("sample", help="print task examples as JSON lines")
    sample.add_argument("--task", required=True, help=f"one of: {', '.join(tasks.names())}")
    sample.add_argument("--split", choices=("train", "test"), default="train")
    sample.add_argument("-n", type=int, default=10, help="number of examples (default 10)")
    sample.add_argument("--seed", type=int, help="a run's seed (train; default 1) or evaluation seed (test; default 0)")
    sample.add_argument("--lengths", help="size range A-B (default: the task's range for the split)")
    _add_import_option(sample)

    train_ = commands.add_parser("train", help="train a model on a task")
    train_.add_argument("--task", help="task name (default copy)")
    train_.add_argument("--model", help="model name (default lantm)")
    train_.add_argument("--config", help="TOML file of training options; flags override it")
    train_.add_argument(
        "--preset", choices=presets.NAMES,
        help="start from ready settings for --task, --model and --regime: 'paper' (the authors' kept run of that "
        "cell of the paper's table 1b) or 'defaults'; flags override them",
    )  # fmt: skip
    train_.add_argument("--steps", type=int)
    train_.add_argument("--batch-size", type=int)
    train_.add_argument("--train-lengths", help="size range A-B (default: the task's)")
    train_.add_argument(
        "--test-lengths", help="size range A-B for evaluation (default: twice the training lengths: 2-8 gives 9-16)"
    )
    train_.add_argument("--regime", choices=("small", "large"))
    train_.add_argument("--lr", type=float)
    train_.add_argument("--warmup-steps", type=int, help="steps over which the rate grows to lr (default 300)")
    train_.add_argument(
        "--curriculum-steps",
        type=int,
        help="steps over which the longest training size grows from the shortest to the longest (default 0: none)",
    )
    train_.add_argument(
        "--clip-norm",
        type=float,
        help="global gradient norm to clip at (default 0.25 for the inverse-square read, else 32)",
    )
    train_.add_argument("--seed", type=int)
    train_.add_argument("--device", help="cpu, cuda, cuda:N or auto (default)")
    train_.add_argument(
        "--dtype",
        choices=("float32", "float64", "bfloat16", "float16"),
        help="the parameters' dtype (default float32; the authors' CPU runs were float64)",
    )
    train_.add_argument(
        "--float64-on-overflow",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="compute a step whose loss or gradient is not finite again in float64 before stopping (default on)",
    )
    train_.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: on a terminal only)",
    )
    train_.add_argument("--out", required=True, help="run directory: checkpoints, metrics, scores")
    _add_compile_option(train_)
    _add_import_option(train_)

    eval_ = commands.add_parser("eval", help="score a trained run")
    eval_.add_argument("run", help="run directory written by `liemem train`")
    eval_.add_argument("--lengths", help="size range A-B (default: the run's test lengths)")
    eval_.add_argument(
        "--scale",
        type=int,
        help="sizes up to K times the longest training size u: K/2 u + 1 to K u (2: the paper's test range; "
        "4, 8, 16: further out); instead of --lengths",
    )
    eval_.add_argument("-n", type=int, help="number of examples (default: the run's eval_samples)")
    eval_.add_argument("--seed", type=int, help="evaluation seed (default: the run's)")
    eval_.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    eval_.add_argument("--best", action="store_true", help="score the best evaluation's weights, not the last")
    _add_compile_option(eval_)
    _add_import_option(eval_)

    suite = commands.add_parser(
        "suite", help="train a grid of tasks x models x regimes x seeds from a preset, or report on its records"
    )
    suite.add_argument("--tasks", nargs="+", help="default: the paper's eight")
    suite.add_argument("--models", nargs="+", help="default: the paper's seven")
    suite.add_argument("--regimes", nargs="+", help="default: small large")
    suite.add_argument("--seeds", nargs="+", type=int, default=[1], help="default: 1")
    suite.add_argument("--preset", choices=presets.NAMES, default="paper", help="settings of every run (default paper)")
    suite.add_argument("--out", help="folder of the run directories (each resumes if stopped)")
    suite.add_argument("--results", help="folder of the records, one JSON file per run (default: OUT/records)")
    suite.add_argument("--workers", type=int, default=2, help="runs at a time here, one torch thread each (default 2)")
    suite.add_argument("--steps", type=int, help="train every run this long instead (a trial of the suite)")
    suite.add_argument("--x4-samples", type=int, help="examples scored at 4x (default: the run's eval_samples)")
    suite.add_argument(
        "--only-below-paper", type=float, metavar="POINTS",
        help="keep only the cells whose best run in --results is more than POINTS coarse points below the paper "
        "(to give them more seeds, as the paper took the best of seeds 1-3)",
    )  # fmt: skip
    suite.add_argument("--retry-failed", action="store_true", help="run again the cells whose record is a failure")
    suite.add_argument(
        "--ray", metavar="ADDRESS",
        help="run the cells as tasks on this Ray cluster ('local' starts one here); OUT must be on storage every "
        "node sees. Needs pip install 'liemem[ray]'",
    )  # fmt: skip
    suite.add_argument("--report", metavar="FOLDER", help="only write FOLDER/table.md and a figure from its records")
    _add_import_option(suite)

    plot = commands.add_parser("plot", help="draw what a trained run's memory did, and its learning curves")
    plot.add_argument("run", help="run directory written by `liemem train`")
    plot.add_argument("--out", required=True, help="image file to write: .png, .svg or .pdf")
    plot.add_argument(
        "--kind",
        default="all",
        choices=("all", "trail", "timeline", "heatmap", "curves"),
        help="one picture, or all the model supports (default)",
    )
    plot.add_argument("--task", help="task of the example drawn (default: the run's)")
    plot.add_argument("--length", type=int, help="size of the example (default: the run's smallest test size)")
    plot.add_argument(
        "--seed",
        type=int,
        default=0,
        help="which example: the first of `liemem sample --task T --split test --lengths K-K --seed S` (default 0)",
    )
    plot.add_argument("--best", action="store_true", help="draw the best evaluation's weights, not the last")
    plot.add_argument("--device", default="cpu", help="where to run the example (default cpu)")
    _add_import_option(plot)
    return parser


def _count(command: str, value: int) -> int:
    require_int(command, "-n", value, maximum=MAX_EVAL_SAMPLES)
    return value


def _seed(command: str, value: int) -> int:
    require_int(command, "--seed", value, minimum=0, maximum=MAX_SEED)
    return value


def run_sample(args) -> None:
    """`liemem sample`: print examples of the train split (as a run sees them) or of the test split."""
    task = tasks.get(args.task)
    count = _count("sample", args.n)
    train_split = args.split == "train"
    default_seed = TrainConfig.seed if train_split else TrainConfig.eval_seed
    seed = _seed("sample", default_seed if args.seed is None else args.seed)
    default = task.train_sizes if train_split else task.test_sizes
    sizes = task.check_sizes(parse_lengths(args.lengths, "--lengths") if args.lengths else default, "--lengths")
    if train_split:  # the first examples a run with this seed trains on, with the default batch size
        batches = (train_examples(task, sizes, index, TrainConfig.batch_size, seed) for index in itertools.count())
        examples = (pair for batch in batches for examples in batch for pair in zip(*examples, strict=True))
    else:
        groups = test_examples(task, sizes, count, seed)
        examples = (pair for group in groups for pair in zip(*group, strict=True))
    for inputs, targets in itertools.islice(examples, count):
        print(json.dumps({"input": task.decode(inputs), "target": task.decode(targets)}))


def _add_compile_option(parser) -> None:
    parser.add_argument(
        "--no-compile",
        action="store_true",
        help="run without compiled kernels or torch.compile (the same function, slower; as "
        f"{engine.SWITCH}=no-compile)",
    )
    parser.add_argument(
        "--engine",
        metavar="PLAN",
        help=f"force how the recurrence runs, as {engine.SWITCH}=PLAN: auto, no-compile, autograd, loop, kernels, "
        "or loop:MOVE, kernels:MOVE with MOVE python, compiled or built-in (see liemem.engine.plan)",
    )


def _compile_option(args):
    """The engine's switch as `--engine` or `--no-compile` set it, while the command runs (and in any child it
    starts), and back as it was afterwards: a caller of `main` keeps its own setting."""
    value = getattr(args, "engine", None) or ("no-compile" if getattr(args, "no_compile", False) else None)
    return contextlib.nullcontext() if value is None else engine.forced(value)


def run_train(args) -> None:
    """`liemem train`: the config file's settings, overridden by the flags given; prints the summary last."""
    if args.preset and args.config:
        raise ConfigError("liemem train: give --preset or --config, not both")
    if args.preset:
        config = presets.preset(args.preset, args.task or "copy", args.model or "lantm", args.regime or "small")
    else:
        config = load_config(args.config) if args.config else TrainConfig()
    flags = {
        "task": args.task,
        "model": args.model,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "regime": args.regime,
        "lr": args.lr,
        "warmup_steps": args.warmup_steps,
        "curriculum_steps": args.curriculum_steps,
        "clip_norm": args.clip_norm,
        "seed": args.seed,
        "device": args.device,
        "dtype": args.dtype,
        "float64_on_overflow": args.float64_on_overflow,
        "train_lengths": parse_lengths(args.train_lengths, "--train-lengths") if args.train_lengths else None,
        "test_lengths": parse_lengths(args.test_lengths, "--test-lengths") if args.test_lengths else None,
    }
    config = dataclasses.replace(config, **{name: value for name, value in flags.items() if value is not None})
    summary = train(config, args.out, progress=args.progress, echo=_echo)
    _echo(json.dumps(summary.as_dict()))


def _echo(line: str) -> None:
    """Print a line at once; if the reader has gone (`liemem train ... | head`), training goes on silently."""
    try:
        print(line, flush=True)
    except BrokenPipeError:
        sys.stdout = open(os.devnull, "w")  # left open: it stands in for stdout until the process ends


def run_eval(args) -> None:
    """`liemem eval`: score a run's weights; the last line is a JSON object with "fine" and "coarse"."""
    if args.scale is not None and args.lengths:
        raise ConfigError("liemem eval: give --lengths or --scale, not both")
    model, task, config, step = restore_model(args.run, args.device, best=args.best)
    sizes = parse_lengths(args.lengths, "--lengths") if args.lengths else config.test_lengths
    if args.scale is not None:
        sizes = scaled_lengths(config, args.scale)
    count = config.eval_samples if args.n is None else _count("eval", args.n)
    seed = config.eval_seed if args.seed is None else _seed("eval", args.seed)
    sizes = task.check_sizes(sizes, "--lengths" if args.scale is None else f"--scale {args.scale}")
    scores = evaluate(model, task, sizes, count, seed, config.batch_size, one_length=config.one_length_per_batch)
    result = {"task": config.task, "model": config.model, "step": step, "lengths": list(sizes), "seed": seed}
    if args.scale is not None:
        result["scale"] = args.scale
    print(json.dumps({**result, **scores.as_dict()}))


def run_suite(args) -> None:
    """`liemem suite`: run the cells that have no record yet, one line per finished cell; or `--report`."""
    from . import suite  # the suite's modules load only for this command

    if args.report:
        from .suite.report import write_report  # matplotlib too

        for path in write_report(args.report):
            print(path)
        return
    if not args.out:
        raise ConfigError("liemem suite: --out is required (or --report FOLDER)")
    cells = suite.plan(
        args.tasks or suite.PAPER_TASKS, args.models or suite.PAPER_MODELS, args.regimes or ("small", "large"),
        args.seeds, args.preset,
    )  # fmt: skip
    results = args.results or str(Path(args.out) / "records")
    if args.only_below_paper is not None:
        from .suite.report import below_paper

        missed = below_paper(results, args.only_below_paper)
        cells = [cell for cell in cells if (cell.task, cell.model, cell.regime) in missed]
    overrides = {} if args.steps is None else {"steps": args.steps}
    x4 = args.x4_samples
    if x4 is not None:
        require_int("liemem suite", "--x4-samples", x4, maximum=MAX_EVAL_SAMPLES)
    left = suite.run_suite(
        cells, args.out, results, args.workers, overrides, x4, args.ray, args.retry_failed, args.imports, _echo
    )
    _echo(f"records in {results}" + (f"; {len(left)} cells not finished (run again to resume)" if left else ""))


def run_plot(args) -> None:
    """`liemem plot`: draw a run into an image file and print its path."""
    from .plots import plot_run  # matplotlib is loaded only by the command that draws

    out = plot_run(
        args.run, args.out, task=args.task, length=args.length, seed=args.seed, kind=args.kind,
        best=args.best, device=args.device,
    )  # fmt: skip
    print(out)


COMMANDS = {"sample": run_sample, "train": run_train, "eval": run_eval, "suite": run_suite, "plot": run_plot}


def main(argv: list[str] | None = None) -> int:
    """Run the command line `argv` (default: `sys.argv[1:]`) and return the exit status."""
    try:
        args = build_parser().parse_args(argv)
        import_extensions(args.imports)
        with _compile_option(args):
            COMMANDS[args.command](args)
    except UsageError as error:
        print(f"{error}", file=sys.stderr)
        return 2
    except USER_ERRORS as error:
        print(f"liemem: error: {error}", file=sys.stderr)
        return 2
    except TrainingDiverged as error:
        print(f"liemem: {error}", file=sys.stderr)
        return 3
    except BrokenPipeError:  # the reader went away (`liemem sample ... | head`): nothing left to say
        sys.stdout = None
        return 0
    except MemoryError:
        print("liemem: error: out of memory; use smaller lengths, batches or sample counts", file=sys.stderr)
        return 2
    except OSError as error:  # an output directory that cannot be made or written, say
        where = f": {error.filename!r}" if error.filename else ""
        print(f"liemem: error: {error.strerror or error}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("liemem: interrupted; a run resumes from its last checkpoint when run again", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
