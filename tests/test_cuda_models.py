"""Every model on a CUDA device gives what it gives on the CPU, loss and gradients (skipped without CUDA)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from liemem import build_model, model_names

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize("name", model_names())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_model_on_cuda_matches_cpu(name, dtype):
    torch.manual_seed(0)
    model = build_model(name, 8).to(dtype)
    model_gpu = copy.deepcopy(model).to("cuda")
    inputs = torch.randint(0, 8, (4, 7))
    targets = torch.randint(0, 8, (4, 6))
    results = []
    for net, device in ((model, "cpu"), (model_gpu, "cuda")):
        logits = net(inputs.to(device), 6)
        assert logits.device.type == device
        F.cross_entropy(logits.flatten(0, 1), targets.to(device).flatten()).backward()
        results.append((logits.detach().cpu(), [p.grad.cpu() for p in net.parameters()]))
    (cpu_logits, cpu_grads), (gpu_logits, gpu_grads) = results
    tolerance = {"rtol": 1e-4, "atol": 1e-5} if dtype == torch.float32 else {}
    torch.testing.assert_close(gpu_logits, cpu_logits, **tolerance)
    for gpu, cpu in zip(gpu_grads, cpu_grads, strict=True):
        torch.testing.assert_close(gpu, cpu, **tolerance)


@pytest.mark.parametrize("name", ["lantm", "slantm", "ram-tape", "ntm"])
def test_access_traces_on_cuda_match_cpu(name):
    torch.manual_seed(0)
    model = build_model(name, 8).double()
    model_gpu = copy.deepcopy(model).to("cuda")
    inputs = torch.randint(0, 8, (3, 5))
    with torch.no_grad():
        cpu, gpu = model.access_trace(inputs, 4), model_gpu.access_trace(inputs.cuda(), 4)
    for expected, actual in zip(cpu[:3], gpu[:3], strict=True):
        assert actual.device.type == "cuda"
        torch.testing.assert_close(actual.cpu(), expected)
