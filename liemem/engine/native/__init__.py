"""Kernels compiled for the machine they run on: the Lie-access time loop on the CPU (see `lantm_loop.cpp`).

`lantm_loop()` builds them once per machine and torch version with torch's own extension builder (it needs a C++
compiler and ninja, a dependency of liemem; the build takes about half a minute and is cached under torch's
extensions directory, or `TORCH_EXTENSIONS_DIR`), and returns the loaded module, or None when they cannot be
built. A failed build is reported once per machine and compiler (`CXX`): it leaves a note in the cache, and later
processes with that compiler read the note instead of trying again (delete it to retry). The engine then runs the
same computation as tensor operations: the kernels make it faster, never different. Whether they are used at all
is the engine's plan (`liemem.engine.plan`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import pathlib
import platform
import sys
import warnings

# Left in the build directory by a build that failed.
FAILED_NOTE = "build-failed.txt"
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
    """Whether the engine's switch lets anything be compiled in this process (see `liemem.engine.plan`)."""
    from ..plan import compiling_enabled

    return compiling_enabled()


def lantm_loop():
    """The compiled loop kernels, or None where they cannot be built (reported once per machine)."""
    return _build()


def _processor() -> str:
    """The processor's model and instruction-set flags (Linux), or what the platform module knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            first = info.read().split("\n\n", 1)[0]
        return "\n".join(line for line in first.splitlines() if line.startswith(("model name", "flags")))
    except OSError:
        return f"{platform.machine()} {platform.processor()}"


@contextlib.contextmanager
def _scripts_on_path():
    """The interpreter's scripts directory first on PATH while building: pip installs ninja, a dependency, there,
    and torch's builder looks for it on PATH, which holds that directory only in an activated environment."""
    before = os.environ.get("PATH", "")
    os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), before])
    try:
        yield
    finally:
        os.environ["PATH"] = before


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
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or cpp_extension.get_default_build_root()
    directory = pathlib.Path(root) / name
    failed = directory / FAILED_NOTE
    compiler = f"compiler: {os.environ.get('CXX', 'c++')}"
    if failed.exists() and failed.read_text().splitlines()[:1] == [compiler]:
        return None  # reported when it failed, for this compiler; the plan's note says the kernels did not build
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if not any(directory.glob(f"{name}*.so")):
            print(f"liemem: compiling the loop kernels for this machine (once; cached in {directory})", file=sys.stderr)
        with _scripts_on_path():
            return cpp_extension.load(
                name=name,
                sources=[str(_SOURCE)],
                build_directory=str(directory),
                extra_cflags=list(_FLAGS),
                verbose=False,
            )
    except Exception as error:  # no compiler, no ninja, a read-only cache: the tensor-operation loop still works
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        with contextlib.suppress(OSError):  # a read-only cache: then each process reports it
            failed.write_text(f"{compiler}\n{reason}\n")
        warnings.warn(
            f"liemem: could not compile the loop kernels ({reason}); running them as tensor operations, which "
            f"gives the same results more slowly. Not tried again on this machine until {failed} is deleted.",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
