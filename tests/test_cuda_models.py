"""Every model on a CUDA device gives what it gives on the CPU, loss and gradients (skipped without CUDA)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from liemem import build_model, model_names

pytestmark = pytest.mark.cuda


@pytest.fixture(autouse=True)
def full_float32(monkeypatch):
    """Compare in full float32: GPUs since Ampere run cuDNN's LSTM (and, where enabled, matrix products) in TF32
    by default, whose 10-bit mantissa puts float32 results 1e-4 apart from the CPU's; a user keeps that speed."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)


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


@pytest.mark.parametrize("name", ["lantm", "slantm-s", "ram-tape"])
def test_recomputed_reads_on_cuda_give_the_kept_reads_gradients(name, monkeypatch):
    """On CUDA (the tensor-operation backend), the backward pass that recomputes each read gives the gradients of
    the one that kept them, float64 to 1e-9."""
    from liemem.engine import plan as engine_plan

    monkeypatch.delenv(engine_plan.KEPT_READS_SWITCH, raising=False)
    torch.manual_seed(0)
    model = build_model(name, 8).double().to("cuda")
    inputs = torch.randint(0, 8, (3, 9), device="cuda")
    results = []
    for budget in (2**62, 0):
        monkeypatch.setattr(engine_plan, "KEPT_READS_BUDGET", budget)
        model.zero_grad()
        logits = model(inputs, 7)
        logits.sin().sum().backward()
        results.append((logits.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (kept, kept_grads), (recomputed, recomputed_grads) = results
    torch.testing.assert_close(recomputed, kept, rtol=1e-12, atol=1e-12)
    for actual, expected in zip(recomputed_grads, kept_grads, strict=True):
        torch.testing.assert_close(actual, expected, rtol=1e-9, atol=1e-12)


def test_training_memory_on_cuda_grows_linearly_with_the_length():
    """Peak allocated memory of a training step at copy length 1,024 is about twice that at 512 (a quadratic
    growth would make it four times), and the step fits the estimate liemem checks before a run."""
    from liemem import footprint

    peaks = {}
    for length in (512, 1024):
        torch.manual_seed(0)
        model = build_model("lantm", 130).to("cuda")
        inputs = torch.randint(0, 128, (32, length + 1), device="cuda")
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        model(inputs, length).square().mean().backward()
        torch.cuda.synchronize()
        peaks[length] = torch.cuda.max_memory_allocated() - before
        estimate = footprint.estimate(model, 32, footprint.Sequence(length, length), training=True)
        assert peaks[length] < estimate
        del model, inputs
    assert peaks[1024] < 2.4 * peaks[512]
