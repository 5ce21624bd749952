"""How often one training configuration learns: train it over many seeds and print the success rate.

    python benchmarks/seeds.py --set task=copy --set model=lantm --set train_lengths=2-8 --set steps=2000 \
        --seeds 1-10 --threshold 0.9 --workers 2 --results results/seeds/copy-lantm

A run succeeds when its coarse score (whole examples right) at the test lengths reaches `--threshold` at some
evaluation; the step of the first such evaluation is reported beside each seed's best score. The configuration is
the defaults of `liemem train`, then `--config` (a TOML file), then each `--set field=value` (`model_options.init=
uniform` reaches into an option table). `--sweep field=v1,v2,...` trains every value over every seed and prints
one success rate per value: the study behind a setting. Unless set, the test lengths are twice the training lengths
(9-16 for 2-8), as `liemem train` resolves them.

Each run is `liemem train` in its own process with one torch thread, so that two at a time on two cores do not
fight; a finished run is not redone (its record is refused if it was made with another configuration) and a
stopped one resumes from its checkpoint. Each run's record is
`<results>/<sweep value>/seed<S>.json` (or `<results>/seed<S>.json` without a sweep); `--report` prints the table
from the records alone, and `--plot FILE` draws the success rate against the swept value.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the checkout's liemem, for reading and checking configurations
sys.path.insert(0, str(ROOT / "benchmarks"))  # its sibling module, however this file is loaded

from child_runs import best_evaluation, last_error, machine, parse_value, read_evaluations, toml_value, train_in_child  # noqa: E402

from liemem.training.config import TrainConfig, config_from_dict, load_config  # noqa: E402

OPTION_TABLES = ("model_options", "task_options")


def parse_seeds(texts: list[str]) -> list[int]:
    """'1-10' and '3' as a sorted list of seeds."""
    seeds: set[int] = set()
    for text in texts:
        low, separator, high = text.partition("-")
        try:
            seeds.update(range(int(low), int(high if separator else low) + 1))
        except ValueError:
            raise SystemExit(f"bad seeds {text!r}: expected a number or a range A-B") from None
    return sorted(seeds)


def apply_setting(data: dict, text: str) -> dict:
    """`data` with one 'field=value' (or 'model_options.name=value') applied."""
    name, separator, value = text.partition("=")
    if not separator or not name:
        raise SystemExit(f"bad setting {text!r}: expected field=value")
    data = dict(data)
    table, dot, option = name.partition(".")
    if dot:
        if table not in OPTION_TABLES:
            raise SystemExit(f"bad setting {text!r}: only {' and '.join(OPTION_TABLES)} take a dotted name")
        data[table] = {**data.get(table, {}), option: parse_value(value)}
    else:
        data[name] = parse_value(value)
    return data


def base_settings(config: Path | None, settings: list[str]) -> dict:
    """The configuration before the seed and any swept value, as plain data."""
    data = load_config(config).to_dict() if config else TrainConfig().to_dict()
    for text in settings:
        data = apply_setting(data, text)
    return data


def resolved(data: dict, source: str) -> dict:
    """The configuration checked as `liemem train` would check it, as plain data; SystemExit naming the error."""
    try:
        return config_from_dict(data, source).resolved().to_dict()
    except Exception as error:  # a ConfigError or an unknown task or model: the user's input, named
        raise SystemExit(f"{source}: {error}") from None


def to_toml(data: dict) -> str:
    lines = [f"{key} = {toml_value(value)}" for key, value in data.items() if value is not None]
    return "\n".join(lines) + "\n"


def first_success(evaluations: list, threshold: float) -> int | None:
    """The step of the first evaluation whose coarse score reaches `threshold`, or None."""
    return next((step for step, _, coarse in evaluations if coarse >= threshold), None)


def default_runs(results: Path) -> Path:
    """Run directories for a results folder: one of their own for each, so that two studies never resume each
    other's runs."""
    where = results.resolve()
    try:
        where = where.relative_to(ROOT)
    except ValueError:
        where = Path(*where.parts[1:])
    return ROOT / "runs" / "seeds" / where


def differences(recorded: dict, config: dict) -> list[str]:
    """The fields whose recorded value differs from the configuration asked for. Fields a record predates
    (written before the field existed) are not compared."""
    return sorted(name for name in config if name in recorded and recorded[name] != config[name])


def read_record(record_path: Path, config: dict) -> dict:
    """A seed's record, refused (SystemExit naming the fields) if it was made with another configuration."""
    record = json.loads(record_path.read_text())
    differing = differences(record["config"], config)
    if differing:
        found = ", ".join(f"{name} is {record['config'][name]!r} there, {config[name]!r} here" for name in differing)
        raise SystemExit(f"{record_path} was made with another configuration: {found}")
    return record


def run_seed(config: dict, out: Path, record_path: Path, python: str) -> dict:
    """Train one configuration (seed included) in a child process; its record, also written as JSON."""
    if record_path.exists():
        return read_record(record_path, config)
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "seed.toml").write_text(to_toml(config))
    done, seconds = train_in_child(out / "seed.toml", out, python)
    record = {
        "config": config,
        "exit_status": done.returncode,
        "wall_seconds": seconds,
        "machine": machine(),
        "evals": read_evaluations(out / "metrics.jsonl"),
    }
    if done.returncode != 0:
        record["error"] = last_error(done)
    record_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record, indent=1) + "\n")
    return record


@dataclasses.dataclass
class Outcome:
    """What the seeds of one configuration did."""

    label: str
    records: dict[int, dict]

    def reached(self, threshold: float) -> dict[int, int | None]:
        return {seed: first_success(record["evals"], threshold) for seed, record in self.records.items()}

    def successes(self, threshold: float) -> int:
        return sum(step is not None for step in self.reached(threshold).values())


def seed_line(seed: int, record: dict, threshold: float) -> str:
    best = best_evaluation(record["evals"])
    step = first_success(record["evals"], threshold)
    text = f"  seed {seed:>3}: "
    if best is None:
        text += "no evaluation"
    else:
        text += f"best {100 * best['fine']:5.1f}/{100 * best['coarse']:5.1f} (fine/coarse %) at step {best['step']}"
    text += f"; reached {100 * threshold:g}% at step {step}" if step is not None else "; never reached"
    if record.get("error"):
        text += f"; STOPPED: {record['error']}"
    return text


def report(outcomes: list[Outcome], threshold: float, lengths: str) -> str:
    lines = []
    for outcome in outcomes:
        total = len(outcome.records)
        lines.append(f"{outcome.label}: {outcome.successes(threshold)}/{total} seeds reach "
                     f"{100 * threshold:g}% coarse at {lengths}")  # fmt: skip
        lines += [seed_line(seed, outcome.records[seed], threshold) for seed in sorted(outcome.records)]
    return "\n".join(lines)


def plot(outcomes: list[Outcome], threshold: float, field: str, out: Path, title: str = "") -> None:
    """The success rate against the swept value, each point labelled with its count of seeds."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.5, 3.0), dpi=100, layout="constrained")
    ax = figure.subplots()
    labels = [outcome.label.split("=", 1)[-1] for outcome in outcomes]
    rates = [100 * outcome.successes(threshold) / max(len(outcome.records), 1) for outcome in outcomes]
    ax.plot(range(len(labels)), rates, marker="o")
    for index, outcome in enumerate(outcomes):
        ax.annotate(f"{outcome.successes(threshold)}/{len(outcome.records)}", (index, rates[index]),
                    textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)  # fmt: skip
    ax.set_title(title, fontsize=9)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel(field)
    ax.set_ylabel(f"% of seeds reaching {100 * threshold:g}% coarse")
    ax.set_ylim(-3, 103)
    figure.savefig(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, help="TOML file of training options (default: liemem's defaults)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override one option")
    parser.add_argument("--sweep", metavar="FIELD=V1,V2,...", help="train each value over every seed")
    parser.add_argument("--seeds", nargs="+", default=["1-10"], help="seeds or ranges (default 1-10)")
    parser.add_argument("--threshold", type=float, default=0.9, help="coarse score that counts as learned")
    parser.add_argument("--workers", type=int, default=1, help="runs at a time, one torch thread each")
    parser.add_argument("--results", type=Path, required=True, help="folder of the JSON records")
    parser.add_argument("--out", type=Path, help="run directories (default: runs/seeds/<results folder>)")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs liemem")
    parser.add_argument("--report", action="store_true", help="only print the table of the records there are")
    parser.add_argument("--plot", type=Path, help="with --sweep: draw the success rate against the value")
    args = parser.parse_args(argv)
    if not 0 < args.threshold <= 1:
        raise SystemExit(f"--threshold must be in (0, 1], got {args.threshold}")
    seeds = parse_seeds(args.seeds)
    base = base_settings(args.config, args.set)
    field, values = None, [None]
    if args.sweep:
        field, separator, listed = args.sweep.partition("=")
        if not separator or not listed:
            raise SystemExit(f"bad sweep {args.sweep!r}: expected field=v1,v2,...")
        values = listed.split(",")
    runs = args.out or default_runs(args.results)
    jobs, outcomes = [], []
    for value in values:
        label = "defaults" if not (args.set or args.config) else " ".join(args.set) or str(args.config)
        folder = ""
        settings = base
        if value is not None:
            settings = apply_setting(base, f"{field}={value}")
            label, folder = f"{field}={value}", f"{field}={value}"
        settings = resolved(settings, label)
        outcome = Outcome(label, {})
        outcomes.append(outcome)
        for seed in seeds:
            config = dict(settings, seed=seed)
            record_path = args.results / folder / f"seed{seed}.json"
            if args.report:
                if record_path.exists():
                    outcome.records[seed] = read_record(record_path, config)
                continue
            jobs.append((outcome, seed, config, runs / folder / f"seed{seed}", record_path))
    lengths = "-".join(map(str, settings["test_lengths"]))
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.workers) as pool:
        futures = {pool.submit(run_seed, config, out, path, args.python): (outcome, seed)
                   for outcome, seed, config, out, path in jobs}  # fmt: skip
        for future in concurrent.futures.as_completed(futures):
            outcome, seed = futures[future]
            outcome.records[seed] = future.result()
            print(f"[{outcome.label}]" + seed_line(seed, outcome.records[seed], args.threshold), flush=True)
    print()
    print(report(outcomes, args.threshold, lengths))
    if args.plot and field:
        cell = f"{settings['model']} on {settings['task']}, {'-'.join(map(str, settings['train_lengths']))} -> "
        title = cell + f"{lengths}, {settings['steps']} steps"
        plot(outcomes, args.threshold, field, args.plot, title)
        print(f"success rate against {field}: {args.plot}")


if __name__ == "__main__":
    main()
