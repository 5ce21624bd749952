"""A head walking a Lie-group trail: for each registered group, write keys along x, a.x, a^2.x, ... and follow
the same trail with a read head started nearby. Because every action is an isometry (paper, footnote 3), the
read head stays exactly as far from the write trail as it started.

    python -m liemem.demo [--steps N]
"""

from __future__ import annotations

import argparse

import torch

import groups


def walk(group: groups.LieGroup, steps: int, generator: torch.Generator) -> tuple[list[float], list[float]]:
    """Distances read head to write head, and write-step lengths, along one trail of `steps` moves."""
    dtype = torch.float64
    action = group.from_controller(torch.randn(group.controller_dim, dtype=dtype, generator=generator))
    write = group.key_space.origin(dtype=dtype)
    nudge = group.exp(1e-2 * torch.randn(group.algebra_dim, dtype=dtype, generator=generator))
    read = group.act(nudge, write)
    gaps, strides = [], []
    for _ in range(steps):
        gaps.append(float(group.key_space.dist(read, write)))
        moved = group.act(action, write)
        strides.append(float(group.key_space.dist(write, moved)))
        write, read = moved, group.act(action, read)
    return gaps, strides


def main(argv: list[str] | None = None) -> None:
    """Print, for every registered group, how far the read head stays from the write trail."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="moves per trail (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    generator = torch.Generator().manual_seed(args.seed)
    print(f"{'group':<12} {'key space':<36} {'read-write gap (min..max)':<28} step length")
    for name in groups.names():
        group = groups.get(name)
        gaps, strides = walk(group, args.steps, generator)
        print(f"{name:<12} {group.key_space!r:<36} {min(gaps):.9f}..{max(gaps):.9f}  {sum(strides) / len(strides):.6f}")


if __name__ == "__main__":
    main()
