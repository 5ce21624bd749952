"""Throughput of full training steps (forward, loss, backward, gradient clipping, RMSProp) against the LSTM floor.

The floor is the LANTM's controller alone: an `nn.LSTM` of 50 cells with embeddings of 14 and a linear output
layer, run as one call over the whole sequence, with no memory. No memory model can beat it, so each model's
samples/s is reported as a multiple of the floor's time per sample ("x floor": 1.0 is the floor itself).

Batches are copy data (vocabulary 130) with `answer length` L: L - 1 symbols and the end marker, after L + 1
input tokens. Each (model, length) cell runs in a fresh process, so that its peak memory is its own: peak
resident memory on the CPU, peak allocated memory on CUDA. Runs on CUDA when present.

A shared machine's speed drifts over minutes, so the cells run in `--rounds` interleaved rounds (each round
times every cell once, the floor first at each length) and the table gives each cell's median over the rounds;
"first ms" is the first training step of the first round, which includes compiling.

    python benchmarks/throughput.py [--models floor,lantm,slantm,ntm] [--lengths 16,64,128] [--batch-size 32]
                                    [--seconds 3] [--rounds 3] [--device cpu|cuda] [--profile]

`--profile` prints, for each cell instead of its timing, torch.profiler's table of the operations that took the
most time over three training steps, with the forward and backward times of a step.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

import liemem
from liemem.models import EncoderDecoderLSTM, LSTMConfig

FLOOR = "floor"
SYMBOLS = 128
START, SEPARATOR = SYMBOLS, SYMBOLS + 1
VOCAB_SIZE = SYMBOLS + 2
CLIP_NORM = 32.0


def build(name: str) -> torch.nn.Module:
    if name == FLOOR:
        return EncoderDecoderLSTM(VOCAB_SIZE, LSTMConfig(hidden_size=50, embedding_size=14))
    return liemem.build_model(name, VOCAB_SIZE)


def copy_batch(answer_length: int, batch_size: int, device: torch.device):
    generator = torch.Generator().manual_seed(answer_length)
    symbols = torch.randint(0, SYMBOLS, (batch_size, answer_length - 1), generator=generator)
    start, separator = torch.full((batch_size, 1), START), torch.full((batch_size, 1), SEPARATOR)
    inputs, targets = torch.cat((start, symbols, separator), 1), torch.cat((symbols, separator), 1)
    return inputs.to(device), targets.to(device)


def training_step(name: str, answer_length: int, batch_size: int, device: torch.device):
    """A function running one full training step of a fresh model; it returns (forward, backward, total) seconds."""
    torch.manual_seed(0)
    model = build(name).to(device).train()
    model.compile_steps()
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-4, alpha=0.99, eps=1e-8)
    inputs, targets = copy_batch(answer_length, batch_size, device)

    def sync() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

    def step() -> tuple[float, float, float]:
        started = sync()
        optimizer.zero_grad(set_to_none=True)
        logits = model(inputs, targets.shape[1])
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        forward = sync()
        loss.backward()
        backward = sync()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
        optimizer.step()
        return forward - started, backward - forward, sync() - started

    return step


def profile_cell(name: str, answer_length: int, batch_size: int, device: torch.device) -> None:
    """Print the forward and backward times of a step and the operations that took the most time."""
    from torch.profiler import ProfilerActivity, profile

    step = training_step(name, answer_length, batch_size, device)
    for _ in range(3):
        step()
    forward, backward, _ = (statistics.median(times) for times in zip(*(step() for _ in range(10)), strict=True))
    print(
        f"\n{name} at answer length {answer_length}: forward {forward * 1e3:.1f} ms, backward {backward * 1e3:.1f} ms"
    )
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as profiler:
        for _ in range(3):
            step()
    print(f"three training steps of {name}, by time spent in each operation itself:")
    print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def measure_cell(name: str, answer_length: int, batch_size: int, seconds: float, device: torch.device) -> dict:
    """Median seconds per training step of one model at one length, and the peak memory of this process."""
    run = training_step(name, answer_length, batch_size, device)

    def step() -> float:
        return run()[2]

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    first = step()  # includes one-time work: allocator warm-up, lazy initialisation
    step()
    times = []
    budget = time.perf_counter() + seconds
    while len(times) < 5 or (time.perf_counter() < budget and len(times) < 200):
        times.append(step())
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux
    return {"model": name, "length": answer_length, "first": first, "seconds": statistics.median(times),
            "repeats": len(times), "peak_bytes": peak}  # fmt: skip


def run_cell_in_subprocess(name: str, length: int, args) -> dict:
    command = [sys.executable, __file__, "--cell", f"{name}:{length}", "--batch-size", str(args.batch_size),
               "--seconds", str(args.seconds), "--device", args.device]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{name} at length {length} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=comma_list, default=[FLOOR, "lantm", "slantm", "ntm"])
    parser.add_argument("--lengths", type=lambda text: [int(x) for x in comma_list(text)], default=[16, 64, 128])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=3.0, help="timing budget per cell and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the table gives medians")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--profile", action="store_true", help="profile each cell instead of timing it")
    parser.add_argument("--cell", help=argparse.SUPPRESS)  # internal: measure one model:length and print JSON
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.cell:
        name, length = args.cell.rsplit(":", 1)
        print(json.dumps(measure_cell(name, int(length), args.batch_size, args.seconds, device)))
        return
    unknown = [name for name in args.models if name != FLOOR and name not in liemem.model_names()]
    if unknown or min(args.lengths, default=0) < 2 or args.batch_size < 1 or args.rounds < 1:
        parser.error(f"unknown models {unknown}, or lengths below 2, or a batch size or rounds below 1")
    models = [FLOOR, *dict.fromkeys(name for name in args.models if name != FLOOR)]
    if args.profile:
        for name in args.models:
            for length in args.lengths:
                profile_cell(name, length, args.batch_size, device)
        return

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    memory = "peak allocated" if device.type == "cuda" else "peak RSS"
    runs = {}
    for round_number in range(args.rounds):
        print(f"round {round_number + 1} of {args.rounds}", file=sys.stderr, flush=True)
        for length in args.lengths:
            for name in models:
                runs.setdefault((name, length), []).append(run_cell_in_subprocess(name, length, args))
    print(
        f"torch {torch.__version__} on {where}; batch {args.batch_size}; full training step (RMSProp); "
        f"median of {args.rounds} round(s)"
    )
    header = (
        f"{'model':<10} {'answer':>6} {'ms/step':>9} {'samples/s':>10} {'x floor':>8} {'first ms':>9} "
        f"{memory + ' MB':>17} {'steps':>6}"
    )
    print(header)
    print("-" * len(header))
    for name in models:
        for length in args.lengths:
            cells = runs[name, length]
            seconds = statistics.median(cell["seconds"] for cell in cells)
            floor = statistics.median(cell["seconds"] for cell in runs[FLOOR, length])
            peak = max(cell["peak_bytes"] for cell in cells)
            steps = sum(cell["repeats"] for cell in cells)
            print(
                f"{name:<10} {length:>6} {seconds * 1e3:>9.1f} {args.batch_size / seconds:>10.0f} "
                f"{seconds / floor:>8.2f} {cells[0]['first'] * 1e3:>9.0f} {peak / 2**20:>17.0f} {steps:>6}",
                flush=True,
            )


if __name__ == "__main__":
    main()
