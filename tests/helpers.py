"""Helpers shared by the tests: sampling and comparing group elements, and the compiled kernels."""

from __future__ import annotations

import math
import os
import shutil
import sys

import pytest
import torch

TOLERANCE = {torch.float64: dict(rtol=1e-9, atol=1e-9), torch.float32: dict(rtol=2e-4, atol=2e-4)}
DTYPES = (torch.float32, torch.float64)
ELEMENT_KINDS = ("uniform", "exp-normal", "near-identity")


def close(actual: torch.Tensor, expected: torch.Tensor, scale: float = 1.0, **kwargs) -> None:
    """assert_close with the dtype's tolerance, loosened by `scale`."""
    tol = TOLERANCE[actual.dtype]
    torch.testing.assert_close(actual, expected, rtol=tol["rtol"] * scale, atol=tol["atol"] * scale, **kwargs)


def algebra_in_ball(group, batch, dtype, generator, fraction: float = 0.9) -> torch.Tensor:
    """Normal algebra vectors, shrunk where needed to lie within `fraction` of the injectivity radius."""
    xi = torch.randn(*batch, group.algebra_dim, dtype=dtype, generator=generator)
    radius = group.injectivity_radius
    if math.isfinite(radius):
        norm = torch.linalg.vector_norm(xi, dim=-1, keepdim=True)
        xi = xi * torch.clamp(fraction * radius / norm, max=1.0)
    return xi


def elements(group, kind: str, batch, dtype, generator) -> torch.Tensor:
    """Group elements drawn uniformly, as exp of a normal vector, or as exp of a vector of size ~1e-7."""
    if kind == "uniform":
        return group.random(*batch, dtype=dtype, generator=generator)
    xi = torch.randn(*batch, group.algebra_dim, dtype=dtype, generator=generator)
    return group.exp(xi if kind == "exp-normal" else 1e-7 * xi)


def assert_same_element(group, g, h, generator, scale: float = 1.0) -> None:
    """g and h act identically on a handful of random keys (which pins down an element of a faithful action)."""
    points = group.key_space.random(5, *([1] * (g.ndim - len(group.element_shape))), dtype=g.dtype, generator=generator)
    close(group.act(g, points), group.act(h, points), scale=scale)


def require_compiled_kernels():
    """The compiled loop kernels of `liemem.engine.native`. Skips where they cannot be built (no C++ compiler or
    no ninja) or are turned off; fails where they could be built and were not."""
    from liemem.engine import SWITCH, native

    if not native.enabled():
        pytest.skip(f"compiled kernels are turned off ({SWITCH})")
    scripts = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    if shutil.which(os.environ.get("CXX", "c++")) is None or shutil.which("ninja", path=scripts) is None:
        pytest.skip("no C++ compiler or no ninja: the compiled kernels cannot be built here")
    kernels = native.lantm_loop()
    assert kernels is not None, "a C++ compiler and ninja are installed, but the loop kernels did not build"
    return kernels


# The engine's switch for each path a test compares: the model's own autograd loop, the hand-differentiated loop
# in tensor operations, and the compiled kernels (with the built-in move where the group declares one).
PATHS = {"autograd": "autograd", "tensor-ops": "loop:python", "kernels": "kernels"}


def require_torch_compile() -> None:
    """Skip unless `torch.compile` can build here, as `require_compiled_kernels` skips for the kernels: liemem
    compiles only where its switch is on, and the CPU backend of `torch.compile` generates C++, which needs a
    compiler."""
    from liemem.engine import SWITCH, native

    if not native.enabled():
        pytest.skip(f"compiling is turned off ({SWITCH})")
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        pytest.skip("no C++ compiler: torch.compile cannot build for the CPU here")
