"""The memory Sigma: reads against the paper's formulas in float64, the limit on a key, gradients, storage."""

from __future__ import annotations

import functools

import pytest
import torch

from liemem import memory, weighting
from manifolds import Euclidean, Sphere


def paper_inverse_square(query, keys, values, strengths):
    """rho = sum_i w_i v_i with w_i = s_i d_i^-2 / sum_j s_j d_j^-2, evaluated directly in float64 (one head)."""
    d = torch.linalg.vector_norm(query[:, None, :].double() - keys.double(), dim=-1)
    w = strengths.double() / d**2
    w = w / w.sum(dim=-1, keepdim=True)
    return (w[..., None] * values.double()).sum(dim=1), w


def paper_softmax(query, keys, values, strengths, temperature):
    """rho with w_i = s_i exp(-d_i^2 / T) / sum_j s_j exp(-d_j^2 / T), directly in float64 (one head)."""
    d2 = ((query[:, None, :].double() - keys.double()) ** 2).sum(dim=-1)
    w = strengths.double() * torch.exp(-d2 / temperature.double()[:, None])
    w = w / w.sum(dim=-1, keepdim=True)
    return (w[..., None] * values.double()).sum(dim=1), w


def filled(keys, values, strengths):
    """A memory holding the given slots (`[B, N, ...]`), written one by one."""
    batch, slots = keys.shape[:2]
    state = memory.empty(batch, slots, keys.shape[-1], values.shape[-1], keys)
    for i in range(slots):
        state = memory.append(state, keys[:, i], values[:, i], strengths[:, i])
    return state


def generic_read(state, query, space, temperature=None):
    """The autograd path of `memory.read`, with the distance weights written out."""
    weigh = weighting.get("inverse_square" if temperature is None else "softmax")
    weigh = functools.partial(memory.distance_weights, space, weigh)
    return memory.read(state, query, weigh, () if temperature is None else (temperature,))


def fused_read(state, query, space, temperature=None):
    assert space.chordal
    return memory.read_by_distance(state, query, space, temperature)


READS = {"generic": generic_read, "fused": fused_read}


def random_memory(space, batch=3, slots=6, width=4, dtype=torch.float64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    keys = space.random(batch, slots, dtype=dtype, generator=generator)
    values = torch.randn(batch, slots, width, dtype=dtype, generator=generator)
    strengths = torch.rand(batch, slots, dtype=dtype, generator=generator) + 0.1
    query = space.random(batch, dtype=dtype, generator=generator)
    return keys, values, strengths, query


@pytest.mark.parametrize("path", READS)
@pytest.mark.parametrize("space", [Euclidean(2), Sphere(3)], ids=["R2", "S2"])
def test_inverse_square_read_is_the_papers_formula(path, space):
    keys, values, strengths, query = random_memory(space)
    result = READS[path](filled(keys, values, strengths), query[:, None], space)
    expected_value, expected_weights = paper_inverse_square(query, keys, values, strengths)
    # The code adds 1e-9 to each unnormalised weight (relative to the nearest key's), nothing else.
    torch.testing.assert_close(result.value[:, 0], expected_value, rtol=1e-7, atol=1e-8)
    torch.testing.assert_close(result.weights[:, 0], expected_weights, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("path", READS)
def test_softmax_read_is_the_papers_formula(path):
    space = Euclidean(2)
    keys, values, strengths, query = random_memory(space)
    temperature = torch.tensor([0.3, 1.0, 4.0], dtype=torch.float64)
    result = READS[path](filled(keys, values, strengths), query[:, None], space, temperature[:, None, None])
    expected_value, _ = paper_softmax(query, keys, values, strengths, temperature)
    torch.testing.assert_close(result.value[:, 0], expected_value, rtol=1e-6, atol=1e-8)


def test_hand_computed_inverse_square_read():
    # Keys at distance 1 and 2 from the head, equal strengths: weights 1 : 1/4, i.e. 0.8 and 0.2.
    keys = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    values = torch.tensor([[[10.0], [20.0]]])
    state = filled(keys, values, torch.ones(1, 2))
    result = memory.read_by_distance(state, torch.zeros(1, 1, 2), Euclidean(2))
    torch.testing.assert_close(result.weights, torch.tensor([[[0.8, 0.2]]]))
    torch.testing.assert_close(result.value, torch.tensor([[[12.0]]]))


@pytest.mark.parametrize("path", READS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_head_exactly_on_a_key_takes_the_limit_with_finite_gradients(path, dtype):
    space = Euclidean(2)
    keys, values, strengths, _ = random_memory(space, dtype=dtype)
    keys, values, strengths = (x.requires_grad_() for x in (keys, values, strengths))
    query = keys[:, 2].detach().clone().requires_grad_()
    result = READS[path](filled(keys, values, strengths), query[:, None], space)
    # The limit q -> k_2 puts all the weight on slot 2 (up to the 1e-9 floor and eps = 1e-10).
    torch.testing.assert_close(result.value[:, 0], values[:, 2].detach(), rtol=1e-5, atol=1e-5)
    result.value.sum().backward()
    for tensor in (keys, values, strengths, query):
        assert torch.isfinite(tensor.grad).all()
    # Where the naive weight s / d^2 divides by zero, which is what the stable form avoids.
    naive = strengths / ((query[:, None] - keys) ** 2).sum(-1)
    assert not torch.isfinite(naive).all()


@pytest.mark.parametrize("path", READS)
@pytest.mark.parametrize("softmax", [False, True], ids=["inverse-square", "softmax"])
@pytest.mark.parametrize("strength_scale", [1.0, 1e-8], ids=["strong", "faint"])
def test_gradcheck_one_memory_step(path, softmax, strength_scale):
    """One step: append a slot to a memory, then read it, differentiated in float64 against finite differences.

    Faint strengths make the 1e-9 floor matter, and with it the nearest distance the weights are scaled by.
    """
    space = Euclidean(2)
    keys, values, strengths, query = random_memory(space, batch=2, slots=3, width=3)
    temperature = torch.tensor([[[0.7]], [[2.0]]], dtype=torch.float64)
    # Strengths enter as logarithms, so that finite differences stay small beside faint strengths.
    inputs = [x.clone().requires_grad_() for x in (keys, values, strengths.log(), query, temperature)]

    def step(keys, values, log_strengths, query, temperature):
        strengths = strength_scale * log_strengths.exp()
        state = memory.empty(2, 3, 2, 3, keys)
        for i in range(2):
            state = memory.append(state, keys[:, i], values[:, i], strengths[:, i])
        state = memory.append(state, keys[:, 2], values[:, 2], strengths[:, 2])  # the step: a write, then a read
        return READS[path](state, query[:, None], space, temperature if softmax else None).value

    assert torch.autograd.gradcheck(step, inputs)


@pytest.mark.parametrize("path", READS)
def test_interleaved_reads_and_writes_match_a_memory_grown_by_concatenation(path):
    """Gradients through many appends and reads equal those of the plain torch.cat formulation."""
    space = Euclidean(2)
    generator = torch.Generator().manual_seed(3)
    steps, batch = 5, 2
    keys = torch.randn(steps, batch, 2, dtype=torch.float64, generator=generator, requires_grad=True)
    values = torch.randn(steps, batch, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    strengths = torch.rand(steps, batch, dtype=torch.float64, generator=generator).requires_grad_()
    queries = torch.randn(steps, batch, 1, 2, dtype=torch.float64, generator=generator, requires_grad=True)

    def tape():
        state, reads = memory.empty(batch, steps, 2, 3, keys), []
        for t in range(steps):
            state = memory.append(state, keys[t], values[t], strengths[t])
            reads.append(READS[path](state, queries[t], space).value)
        return torch.stack(reads)

    def concatenated():
        reads = []
        for t in range(steps):
            k, v, s = keys[: t + 1].transpose(0, 1), values[: t + 1].transpose(0, 1), strengths[: t + 1].t()
            dist2 = ((queries[t][:, :, None] - k[:, None]) ** 2).sum(-1)
            reads.append(weighting.inverse_square(dist2, s[:, None]) @ v)
        return torch.stack(reads)

    inputs = (keys, values, strengths, queries)
    ours = torch.autograd.grad(tape().sin().sum(), inputs)
    plain = torch.autograd.grad(concatenated().sin().sum(), inputs)
    for a, b in zip(ours, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_memory_is_written_in_place_and_read_without_copies():
    space = Euclidean(2)
    state = memory.empty(2, 4, 2, 3, torch.zeros(()))
    storage = [buffer.untyped_storage().data_ptr() for buffer in state.tape.buffers]
    for _ in range(4):
        state = memory.append(state, torch.randn(2, 2), torch.randn(2, 3), torch.rand(2))
    assert [buffer.untyped_storage().data_ptr() for buffer in state.tape.buffers] == storage
    contents = state.contents()
    assert [c.untyped_storage().data_ptr() for c in contents] == storage
    memory.read_by_distance(state, torch.zeros(2, 1, 2), space)


def test_reading_follows_dtype_and_device_and_runs_on_meta():
    space = Euclidean(2)
    for dtype in (torch.float32, torch.float64):
        keys, values, strengths, query = random_memory(space, dtype=dtype)
        assert memory.read_by_distance(filled(keys, values, strengths), query[:, None], space).value.dtype == dtype
    keys, values, strengths, query = (x.to("meta") for x in random_memory(space))
    result = memory.read_by_distance(filled(keys, values, strengths), query[:, None], space)
    assert result.value.device.type == "meta" and result.value.shape == (3, 1, 4)


def test_misuse_is_refused_with_a_message():
    state = memory.empty(1, 1, 2, 3, torch.zeros(()))
    with pytest.raises(RuntimeError, match="empty"):
        memory.read_by_distance(state, torch.zeros(1, 1, 2), Euclidean(2))
    full = memory.append(state, torch.zeros(1, 2), torch.zeros(1, 3), torch.ones(1))
    with pytest.raises(RuntimeError, match="full"):
        memory.append(full, torch.zeros(1, 2), torch.zeros(1, 3), torch.ones(1))
    with pytest.raises(RuntimeError, match="append-only"):
        memory.append(state, torch.zeros(1, 2), torch.zeros(1, 3), torch.ones(1))
    with pytest.raises(ValueError, match="capacity"):
        memory.empty(1, 0, 2, 3, torch.zeros(()))


def test_weights_are_a_distribution_even_when_every_strength_underflows():
    dist2 = torch.tensor([[[0.5, 1.0, 2.0]]])
    weights = weighting.inverse_square(dist2, torch.zeros(1, 1, 3))
    torch.testing.assert_close(weights.sum(-1), torch.ones(1, 1))
    assert torch.isfinite(weighting.softmax(dist2, torch.zeros(1, 1, 3), torch.zeros(1, 1, 1))).all()


@pytest.mark.parametrize("path", READS)
def test_partial_then_full_backward_passes_are_exact(path):
    """A backward pass restricted to some inputs leaves nothing behind that a later pass would count twice."""
    space = Euclidean(2)
    keys, values, strengths, query = (x.requires_grad_() for x in random_memory(space))
    read = READS[path](filled(keys, values, strengths), query[:, None], space).value.sin().sum()
    expected = torch.autograd.grad(read, values, retain_graph=True)[0]
    torch.autograd.grad(read, query, retain_graph=True)
    read.backward()
    torch.testing.assert_close(values.grad, expected)
