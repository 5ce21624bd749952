"""Random draws that honour an optional generator and still land on the requested device and dtype."""

from __future__ import annotations

import torch


def random_tensor(shape, *, uniform: bool = False, dtype=None, device=None, generator=None) -> torch.Tensor:
    """Standard normal (or uniform on [0, 1) with `uniform=True`) samples of `shape`.

    The draw happens on the generator's device, so a CPU generator gives the same numbers whatever the target
    device; the result is then moved to `device`.
    """
    draw = torch.rand if uniform else torch.randn
    dtype = dtype or torch.get_default_dtype()
    source = generator.device if generator is not None else device
    sample = draw(tuple(shape), dtype=dtype, device=source, generator=generator)
    return sample.to(device) if device is not None else sample
