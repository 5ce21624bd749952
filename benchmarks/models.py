"""Training-step speed of every liemem model beside a straightforward reference LANTM.

Times forward pass, cross-entropy loss and backward pass (no optimizer step) on copy-shaped batches: a vocabulary
of 130 (128 symbols and two markers), inputs `start a_1..a_k separator` (length k + 2) and k + 1 answer steps
(the k symbols, then the separator again as end symbol), for each answer length k. Each (model, length) cell
runs a few warm-up batches, then reports the median time of the timed batches, the samples per second, and the
ratio of samples per second to `reference` (benchmarks/reference_lantm.py) at the same length.

    python benchmarks/models.py [--models a,b] [--lengths 16,64,128] [--batch-size 32] [--repeats N]
                                [--device cpu|cuda]

Without --repeats, each cell times as many batches as fit in --seconds (at least 5, at most 50), which keeps the
default run to a few minutes on two CPU cores.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import liemem

REFERENCE = "reference"
SYMBOLS = 128
START, SEPARATOR = SYMBOLS, SYMBOLS + 1
VOCAB_SIZE = SYMBOLS + 2
MIN_REPEATS, MAX_REPEATS = 5, 50


def load_reference_class():
    # benchmarks/ is not a package, so load the sibling file by path whatever the working directory.
    path = Path(__file__).resolve().with_name("reference_lantm.py")
    spec = importlib.util.spec_from_file_location("reference_lantm", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ReferenceLANTM


def copy_batch(length: int, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs [batch, length + 2] and targets [batch, length + 1] of the copy task."""
    symbols = torch.randint(0, SYMBOLS, (batch_size, length), generator=generator)
    start = torch.full((batch_size, 1), START)
    separator = torch.full((batch_size, 1), SEPARATOR)
    return torch.cat([start, symbols, separator], dim=1), torch.cat([symbols, separator], dim=1)


def training_step(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    logits = model(inputs, targets.shape[1])
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    loss.backward()


def timed_step(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor, device: torch.device) -> float:
    """Seconds for one training step, with the device queue drained before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    training_step(model, inputs, targets)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def measure(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    device: torch.device,
    warmup: int,
    repeats: int | None,
    seconds: float,
) -> tuple[float, int]:
    """Median seconds per training step and the number of timed steps."""
    warmup_times = [timed_step(model, inputs, targets, device) for _ in range(warmup)]
    if repeats is None:
        estimate = warmup_times[-1] if warmup_times else timed_step(model, inputs, targets, device)
        repeats = min(MAX_REPEATS, max(MIN_REPEATS, round(seconds / max(estimate, 1e-6))))
    times = [timed_step(model, inputs, targets, device) for _ in range(repeats)]
    return statistics.median(times), repeats


def comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def positive_ints(text: str) -> list[int]:
    try:
        values = [int(item) for item in comma_list(text)]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from error
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def parse_arguments(available: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=comma_list, default=available, help="comma-separated model names")
    parser.add_argument("--lengths", type=positive_ints, default=[16, 64, 128], help="answer lengths k")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=None, help="timed batches per cell (default: by --seconds)")
    parser.add_argument("--seconds", type=float, default=2.0, help="time budget per cell when --repeats is unset")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches per cell")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    unknown = [name for name in args.models if name not in available]
    if unknown:
        parser.error(f"unknown models {unknown}; available: {', '.join(available)}")
    if args.batch_size < 1 or (args.repeats is not None and args.repeats < 1) or args.warmup < 0:
        parser.error("--batch-size and --repeats must be positive, --warmup non-negative")
    # The reference always runs, and first, so that every row shows its ratio to it.
    args.models = [REFERENCE, *dict.fromkeys(name for name in args.models if name != REFERENCE)]
    return args


def main() -> None:
    args = parse_arguments([REFERENCE, *liemem.model_names()])
    device = torch.device(args.device)
    reference_class = load_reference_class()

    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"torch {torch.__version__}, device {device} ({device_name}), {torch.get_num_threads()} CPU threads")
    print(f"batch {args.batch_size}, vocab {VOCAB_SIZE}, forward + loss + backward, median after {args.warmup} warm-up")
    print()
    header = f"{'model':<16} {'length':>6} {'repeats':>7} {'ms/batch':>10} {'samples/s':>10} {'vs reference':>12}"
    print(header)
    print("-" * len(header))

    reference_rate: dict[int, float] = {}
    for name in args.models:
        torch.manual_seed(0)
        model = reference_class(VOCAB_SIZE) if name == REFERENCE else liemem.build_model(name, VOCAB_SIZE)
        model = model.to(device).train()
        for length in args.lengths:
            generator = torch.Generator().manual_seed(length)
            inputs, targets = (tensor.to(device) for tensor in copy_batch(length, args.batch_size, generator))
            seconds, repeats = measure(model, inputs, targets, device, args.warmup, args.repeats, args.seconds)
            rate = args.batch_size / seconds
            if name == REFERENCE:
                reference_rate[length] = rate
            ratio = rate / reference_rate[length]
            print(
                f"{name:<16} {length:>6} {repeats:>7} {seconds * 1e3:>10.1f} {rate:>10.0f} {ratio:>12.2f}", flush=True
            )
        del model


if __name__ == "__main__":
    main()
