"""The groups on a CUDA device give what they give on the CPU (skipped without CUDA)."""

from __future__ import annotations

import copy

import pytest
import torch

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_operations_on_cuda_match_cpu(group, dtype):
    cuda = torch.device("cuda")
    group_gpu = copy.deepcopy(group).to(cuda)  # the fixture's group is shared with CPU tests
    generator = torch.Generator().manual_seed(0)
    g = group.random(8, dtype=dtype, generator=generator)
    h = group.random(8, dtype=dtype, generator=generator)
    x = group.key_space.random(8, dtype=dtype, generator=generator)
    raw = torch.randn(8, group.controller_dim, dtype=dtype, generator=generator)
    cases = {
        "compose": lambda grp, a, b, p, r: grp.compose(a, b),
        "act": lambda grp, a, b, p, r: grp.act(a, p),
        "log": lambda grp, a, b, p, r: grp.log(a),
        "interpolate": lambda grp, a, b, p, r: grp.interpolate(a, b, 0.3),
        "from_controller": lambda grp, a, b, p, r: grp.from_controller(r),
        "dist": lambda grp, a, b, p, r: grp.key_space.dist(p, grp.key_space.project(p + 0.1)),
    }
    for name, fn in cases.items():
        expected = fn(group, g, h, x, raw)
        got = fn(group_gpu, g.to(cuda), h.to(cuda), x.to(cuda), raw.to(cuda))
        assert got.device.type == "cuda", name
        torch.testing.assert_close(got.cpu(), expected.detach(), msg=lambda m, name=name: f"{name}: {m}")
    assert group_gpu.random(3, device=cuda, dtype=dtype).device.type == "cuda"
    ratios = torch.rand(8, dtype=dtype)  # a CPU tensor of ratios follows the elements to the GPU
    assert group_gpu.interpolate(g.to(cuda), h.to(cuda), ratios).device.type == "cuda"
    assert group.key_space.random(3, device=cuda, generator=torch.Generator().manual_seed(1)).device.type == "cuda"
