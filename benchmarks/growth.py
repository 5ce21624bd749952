"""How training time and memory grow with the sequence's length: from 16 to 8,192 symbols of copy.

Each (model, length) cell runs two full training steps (forward, loss, backward, clipping, RMSProp) of a fresh
model in its own process, on copy batches of `--batch-size` sequences (the batches of `throughput.py`), and
reports the second step's time per sequence and the process's peak memory: resident on the CPU, allocated on
CUDA. "Added" is the peak less what the process held before the first step, printed beside liemem's estimate of
it (`liemem.footprint.estimate`, which a run checks against the free memory before it starts).

Every read of a step reads every slot written so far, so time grows with the square of the length; memory should
grow linearly. A least-squares line through the points at and above `--fit-from`, on log-log axes, gives each
curve's exponent. `--plot FILE` draws both curves.

    python benchmarks/growth.py [--models floor,lantm,slantm] [--lengths 16,32,...,8192] [--batch-size 32]
                                [--device cpu|cuda] [--fit-from 256] [--json FILE] [--plot FILE]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import resource
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from throughput import FLOOR, build, comma_list, training_step

from liemem import footprint

DEFAULT_LENGTHS = [16 * 2**k for k in range(10)]  # 16 ... 8,192


def resident_bytes() -> int:
    """This process's resident memory now (Linux), or 0 where unknown."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize()
    except OSError:
        return 0


def measure(name: str, length: int, batch_size: int, device: torch.device) -> dict:
    """Two training steps at one length: the second's seconds, this process's peak memory, and what it held
    before the first step, beside liemem's estimate of what a step adds (`liemem.footprint`)."""
    model = build(name).to(device)
    sequence = footprint.Sequence(length, length)  # the batches of `throughput.copy_batch`
    estimate = footprint.estimate(model, batch_size, sequence, training=True)
    before = resident_bytes() if device.type == "cpu" else torch.cuda.memory_allocated(device)
    step = training_step(name, length, batch_size, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step()
    seconds = step()[2]
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux
    return {"model": name, "length": length, "batch": batch_size, "seconds": seconds, "peak_bytes": peak,
            "before_bytes": before, "estimate_bytes": estimate}  # fmt: skip


def measure_in_subprocess(name: str, length: int, args) -> dict:
    command = [sys.executable, __file__, "--cell", f"{name}:{length}", "--batch-size", str(args.batch_size),
               "--device", args.device]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{name} at length {length} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def exponent(lengths, values) -> float:
    """The slope of log(values) against log(lengths), by least squares."""
    return float(np.polyfit(np.log(lengths), np.log(values), 1)[0])


def added(cell: dict) -> int:
    """What a training step added to the process: its peak less what the process held before."""
    return cell["peak_bytes"] - cell["before_bytes"]


def plot(cells: list[dict], models: list[str], fits: dict, path: str, where: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (time_axes, memory_axes) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for name in models:
        rows = [cell for cell in cells if cell["model"] == name]
        lengths = [row["length"] for row in rows]
        time_exponent, memory_exponent = fits[name]
        per_sequence = [row["seconds"] / row["batch"] * 1e3 for row in rows]
        time_axes.loglog(lengths, per_sequence, "o-", label=f"{name} (slope {time_exponent:.2f})")
        line = memory_axes.loglog(lengths, [added(row) / 2**30 for row in rows], "o-",
                                  label=f"{name} (slope {memory_exponent:.2f})")  # fmt: skip
        memory_axes.loglog(lengths, [row["estimate_bytes"] / 2**30 for row in rows], "--", color=line[0].get_color(),
                           alpha=0.6, label=f"{name}, estimated")  # fmt: skip
    time_axes.set(xlabel="copy length", ylabel="ms per sequence (training step)", title="time")
    memory_axes.set(xlabel="copy length", ylabel="GiB added by a training step", title="memory")
    for axes in (time_axes, memory_axes):
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=8)
    figure.suptitle(
        f"training step growth, batch {cells[0]['batch']}, {where}; slopes fitted from length {fits['from']}"
    )
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=comma_list, default=[FLOOR, "lantm", "slantm"])
    parser.add_argument("--lengths", type=lambda text: [int(x) for x in comma_list(text)], default=DEFAULT_LENGTHS)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--fit-from", type=int, default=2048, help="the shortest length the exponents are fitted on")
    parser.add_argument("--json", help="also write the cells as JSON to this file")
    parser.add_argument("--plot", help="draw the log-log figure into this file")
    parser.add_argument("--from-json", help="print and draw the cells of an earlier --json instead of measuring")
    parser.add_argument("--cell", help=argparse.SUPPRESS)  # internal: measure one model:length and print JSON
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.cell:
        name, length = args.cell.rsplit(":", 1)
        print(json.dumps(measure(name, int(length), args.batch_size, device)))
        return
    if args.from_json:
        saved = json.loads(pathlib.Path(args.from_json).read_text())
        where, cells = saved["where"], saved["cells"]
        models = list(dict.fromkeys(cell["model"] for cell in cells))
    else:
        machine = (
            torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
        )
        where, cells, models = f"torch {torch.__version__} on {machine}", [], args.models
    memory = "peak RSS" if " on cpu" in where else "peak allocated"
    print(f"{where}; batch {cells[0]['batch'] if cells else args.batch_size}; the second of two training steps")
    header = f"{'model':<8} {'length':>6} {'ms/sequence':>12} {memory + ' MB':>17} {'added MB':>9} {'estimate MB':>12}"
    print(header)
    print("-" * len(header))
    rows = cells if args.from_json else ((name, length) for name in models for length in args.lengths)
    for item in rows:
        cell = item if args.from_json else measure_in_subprocess(*item, args)
        if not args.from_json:
            cells.append(cell)
        milliseconds, megabytes = cell["seconds"] / cell["batch"] * 1e3, cell["peak_bytes"] / 2**20
        print(f"{cell['model']:<8} {cell['length']:>6} {milliseconds:>12.3f} {megabytes:>17.0f} "
              f"{added(cell) / 2**20:>9.0f} {cell['estimate_bytes'] / 2**20:>12.0f}", flush=True)  # fmt: skip
    fits = {"from": args.fit_from}
    print(f"\nexponents fitted on lengths >= {args.fit_from} (time ~ length^a, added memory ~ length^b):")
    for name in models:
        fitted = [cell for cell in cells if cell["model"] == name and cell["length"] >= args.fit_from]
        if len(fitted) < 2:
            continue
        lengths = [cell["length"] for cell in fitted]
        fits[name] = (exponent(lengths, [cell["seconds"] for cell in fitted]),
                      exponent(lengths, [added(cell) for cell in fitted]))  # fmt: skip
        print(f"{name:<8} time {fits[name][0]:.2f}   memory {fits[name][1]:.2f}")
    if args.json and not args.from_json:
        pathlib.Path(args.json).write_text(json.dumps({"where": where, "cells": cells}, indent=1) + "\n")
    if args.plot:
        plot(cells, [name for name in models if name in fits], fits, args.plot, where)


if __name__ == "__main__":
    main()
