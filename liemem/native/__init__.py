"""Kernels compiled for the machine they run on: the LANTM time loop on the CPU (see `lantm_loop.cpp`).

`lantm_loop()` builds them once per machine and torch version with torch's own extension builder (it needs a C++
compiler and ninja; the build takes about half a minute and is cached under torch's extensions directory), and
returns the loaded module, or None when they are turned off or cannot be built. Callers then run the same
computation as tensor operations: the kernels make it faster, never different.

Turn them off for a process with the environment variable `LIEMEM_COMPILE=0` (or `liemem train --no-compile`),
or for one model with `model.compiled_loop = False`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pathlib
import platform
import sys
import warnings

SWITCH = "LIEMEM_COMPILE"
_SOURCE = pathlib.Path(__file__).with_name("lantm_loop.cpp")
# Fast floating point without changing results beyond reassociation: no errno, no traps, no signed zeros.
# -fopenmp-simd honours the kernels' `omp simd` vectorisation hints without linking OpenMP.
_FLAGS = (
    "-O3",
    "-march=native",
    "-fopenmp-simd",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-fno-signed-zeros",
    "-fassociative-math",
)


def enabled() -> bool:
    """Whether compiled kernels may be used in this process (`LIEMEM_COMPILE` is not 0, false, no or off)."""
    return os.environ.get(SWITCH, "1").strip().lower() not in {"0", "false", "no", "off"}


def lantm_loop():
    """The compiled LANTM loop kernels, or None (turned off, or the build failed: a warning says why, once)."""
    return _build() if enabled() else None


def _processor() -> str:
    """The processor's model and instruction-set flags (Linux), or what the platform module knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            first = info.read().split("\n\n", 1)[0]
        return "\n".join(line for line in first.splitlines() if line.startswith(("model name", "flags")))
    except OSError:
        return f"{platform.machine()} {platform.processor()}"


@functools.cache
def _build():
    import torch
    from torch.utils import cpp_extension

    # A build is specific to the source, flags, torch, Python and processor it was made for (-march=native):
    # each gets its own directory, so a cache shared between machines never loads another's build. The source's
    # path counts too: ninja rebuilds when the path in its build file changes, so two checkouts sharing one
    # directory would rebuild it in turn, and one waits on the other's lock while it does.
    identity = [_SOURCE.read_bytes(), str(_SOURCE.resolve()).encode(), repr(_FLAGS).encode()]
    identity += [torch.__version__.encode(), sys.version.encode()]
    key = hashlib.sha256(b"\0".join([*identity, _processor().encode()])).hexdigest()[:16]
    name = f"liemem_lantm_loop_{key}"
    directory = pathlib.Path(cpp_extension.get_default_build_root()) / name
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if not any(directory.glob(f"{name}*.so")):
            print(f"liemem: compiling the LANTM loop for this machine (once; cached in {directory})", file=sys.stderr)
        return cpp_extension.load(
            name=name,
            sources=[str(_SOURCE)],
            build_directory=str(directory),
            extra_cflags=list(_FLAGS),
            verbose=False,
        )
    except Exception as error:  # no compiler, no ninja, a read-only cache: the tensor-operation loop still works
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        warnings.warn(
            f"liemem: could not compile the LANTM loop ({reason}); running it as tensor operations, which is "
            f"slower. Set {SWITCH}=0 to skip the attempt.",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
