"""How far off its manifold a point (or a group element off its constraint) may be and still be accepted."""

from __future__ import annotations

import torch

# float32 keys drift after many actions; half precision drifts faster.
_TOLERANCE = {torch.float64: 1e-7, torch.float32: 1e-4, torch.bfloat16: 2e-2, torch.float16: 5e-3}


def check_tolerance(dtype: torch.dtype) -> float:
    """Absolute and relative tolerance of membership checks for `dtype`."""
    return _TOLERANCE.get(dtype, 1e-4)
