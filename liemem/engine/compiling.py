"""`torch.compile` where it pays, with a fallback to eager: for the per-step Python a user writes (group moves).

Compiling a function costs seconds once and then some 25 microseconds per call on the CPU (guards, wrappers),
whatever the function does; run eagerly, each tensor function costs one to three. So a function pays for
compiling when it makes many tensor calls (a rotation group's move makes 96 and runs four times faster
compiled, SE(2)'s makes 43 and runs 1.7 times faster), and not when it makes a couple of dozen (a
translation's 24: 25 against 23 microseconds). `worth_compiling` counts the calls; `CompiledOrEager` compiles
on its first call and falls back to the eager function, with one warning, if compiling fails.

Everything here is off when the engine's switch turns compiling off (`LIEMEM_ENGINE=no-compile`, `liemem train
--no-compile`; see `liemem.engine.plan`).
"""

from __future__ import annotations

import types
import warnings

import torch
from torch.overrides import TorchFunctionMode

# Below this many tensor function calls, a compiled call costs about what an eager one does.
MIN_OPERATIONS = 32


class _OperationCounter(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def operation_count(function, *args) -> int:
    """How many torch functions and tensor methods one call `function(*args)` makes (run under inference mode)."""
    counter = _OperationCounter()
    with torch.inference_mode(), counter:
        function(*args)
    return counter.count


def worth_compiling(function, *args) -> bool:
    """Whether `function`, called like `function(*args)`, makes enough tensor calls to pay for compiling."""
    return operation_count(function, *args) >= MIN_OPERATIONS


# Row counts padded up to a power of two, from this many: a few compiled graphs serve every sequence length.
MIN_BUCKET = 256


def bucket_rows(rows: int) -> int:
    """The row count a batch of `rows` rows is padded to: the next power of two, at least `MIN_BUCKET`."""
    return max(MIN_BUCKET, 1 << max(rows - 1, 0).bit_length())


def own_code(function):
    """`function` (a plain function or a bound method) running on a copy of its code object.

    torch.compile keeps its graphs, and counts recompilations against a limit past which it silently runs eagerly,
    per code object. Every model's `heads.move` shares one code object, so a process that trains many models (a
    suite, a seed study) would use up the limit within a few runs. A copy gives each compiled function a cache of
    its own, without resetting what the rest of the process has compiled (`torch.compiler.reset()` would).
    """
    bound_to = getattr(function, "__self__", None)
    plain = getattr(function, "__func__", function)
    copy = types.FunctionType(
        plain.__code__.replace(), plain.__globals__, plain.__name__, plain.__defaults__, plain.__closure__
    )
    copy.__kwdefaults__, copy.__qualname__ = plain.__kwdefaults__, plain.__qualname__
    return types.MethodType(copy, bound_to) if bound_to is not None else copy


class CompiledOrEager:
    """`function` compiled by `torch.compile` (static shapes: one graph per shape it meets), or, once compiling
    has failed, `function` itself.

    With `pad_rows`, `function` must treat the first axis of its arguments as independent rows; each call then
    pads its arguments' rows (repeating the first) to `bucket_rows` and cuts the result back. Some operations
    (`torch.linalg.cross` under `vmap`) fix the row count in a graph even when compiled with dynamic shapes, and
    without padding every sequence length would compile a graph of its own, for seconds each, until torch's
    recompilation limit left the function eager.
    """

    def __init__(self, function, what: str, dynamic: bool = False, pad_rows: bool = False):
        self.function, self.what, self.pad_rows = function, what, pad_rows
        self.compiled = torch.compile(own_code(function), dynamic=dynamic)

    def __call__(self, *args):
        if self.compiled is not None and self.pad_rows:
            rows = args[0].shape[0]
            padding = bucket_rows(rows) - rows
            padded = [torch.cat((x, x[:1].expand(padding, *x.shape[1:]))) if padding else x for x in args]
            return self._call(*padded)[:rows]
        return self._call(*args)

    def _call(self, *args):
        if self.compiled is not None:
            try:
                with warnings.catch_warnings():  # the compiler's own deprecation notices, while it compiles
                    warnings.simplefilter("ignore", FutureWarning)
                    return self.compiled(*args)
            except Exception as error:  # a missing compiler, an unsupported Python: eager computes the same
                reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                message = f"liemem: could not compile {self.what} ({reason}); running it eagerly"
                warnings.warn(message, RuntimeWarning, stacklevel=3)
                self.compiled = None
        return self.function(*args)
