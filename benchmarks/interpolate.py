"""Cost of `LieGroup.interpolate` for every registered group, beside SO(3) done with rotation matrices.

The paper (appendix B) calls the exp/log interpolation of rotations too costly and interpolates axis and angle
separately instead. With unit quaternions the exact geodesic costs a few dozen elementwise operations; this
prints microseconds per call so the claim can be checked on any machine:

    python benchmarks/interpolate.py [--batch 32] [--device cuda]
"""

from __future__ import annotations

import argparse
import time

import torch

import groups


def per_call_us(fn, repeats: int, device: torch.device) -> float:
    for _ in range(10):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats * 1e6


def hat(omega: torch.Tensor) -> torch.Tensor:
    zero = torch.zeros_like(omega[..., 0])
    x, y, z = omega.unbind(-1)
    return torch.stack((zero, -z, y, z, zero, -x, -y, x, zero), dim=-1).unflatten(-1, (3, 3))


def matrix_interpolate(r0: torch.Tensor, r1: torch.Tensor, r: float) -> torch.Tensor:
    """R0 expm(r logm(R0^T R1)) with a matrix exponential and the arccos-based logarithm."""
    delta = r0.transpose(-1, -2) @ r1
    cos = ((delta.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)
    angle = torch.arccos(cos)
    skew = (delta - delta.transpose(-1, -2)) / 2
    axis_sin = torch.stack((skew[..., 2, 1], skew[..., 0, 2], skew[..., 1, 0]), dim=-1)
    omega = axis_sin * (angle / torch.sin(angle).clamp_min(1e-12))[..., None]
    return r0 @ torch.linalg.matrix_exp(hat(r * omega))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    print(f"interpolate, batch {args.batch}, {device}, microseconds per call")
    for name in groups.names():
        group = groups.get(name).to(device)
        g0 = group.random(args.batch, generator=generator).to(device)
        g1 = group.random(args.batch, generator=generator).to(device)
        us = per_call_us(lambda group=group, g0=g0, g1=g1: group.interpolate(g0, g1, 0.3), args.repeats, device)
        print(f"  {name:<12} {us:8.1f}")
    so3 = groups.get("so3").to(device)
    basis = torch.eye(3, device=device)
    r0, r1 = (so3.act(so3.random(args.batch, 1, generator=generator).to(device), basis).transpose(-1, -2) for _ in "01")
    us = per_call_us(lambda: matrix_interpolate(r0, r1, 0.3), args.repeats, device)
    print(f"  {'so3-matrix':<12} {us:8.1f}   (rotation matrices, matrix_exp)")


if __name__ == "__main__":
    main()
