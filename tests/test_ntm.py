"""The Neural Turing Machine baseline: addressing checked against hand-computed values, and the model's protocol."""

from __future__ import annotations

import math

import pytest
import torch

from liemem.config import ConfigError
from liemem.models.ntm import NeuralTuringMachine, NTMConfig
from liemem.models.ntm_addressing import (
    address,
    content_weights,
    cosine_similarity,
    interpolate,
    read,
    sharpen,
    shift,
    write,
)

F64 = torch.float64
TOL = {"rtol": 0.0, "atol": 1e-12}


def t64(values) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


# --- addressing: the four stages on a hand-computed example --------------------------------------------------------
#
# Memory rows are the standard basis of R^4 and the key is row 0, so the cosines are [1, 0, 0, 0]; with
# beta = ln 3 the content weights are [3, 1, 1, 1] / 6.


def hand_example():
    memory = torch.eye(4, dtype=F64).unsqueeze(0)  # [1, 4, 4]
    keys = t64([[[1.0, 0.0, 0.0, 0.0]]])  # [1, 1, 4]
    strength = t64([[math.log(3.0)]])
    previous = t64([[[0.0, 0.0, 0.0, 1.0]]])
    gate = t64([[0.5]])
    kernel = t64([[[0.0, 0.0, 1.0]]])  # all mass on offset +1
    gamma = t64([[2.0]])
    return memory, keys, strength, previous, gate, kernel, gamma


def test_content_weights_hand_example():
    memory, keys, strength, *_ = hand_example()
    torch.testing.assert_close(cosine_similarity(memory, keys), t64([[[1.0, 0.0, 0.0, 0.0]]]), **TOL)
    torch.testing.assert_close(content_weights(memory, keys, strength), t64([[[3, 1, 1, 1]]]) / 6, **TOL)


def test_cosine_is_scale_invariant_and_signed():
    memory = t64([[[2.0, 0.0], [0.0, 3.0], [-5.0, 0.0], [1.0, 1.0]]])
    keys = t64([[[4.0, 0.0]]])
    expected = t64([[[1.0, 0.0, -1.0, 1 / math.sqrt(2)]]])
    torch.testing.assert_close(cosine_similarity(memory, keys), expected, **TOL)


def test_interpolate_hand_example():
    content = t64([[[3, 1, 1, 1]]]) / 6
    previous = t64([[[0.0, 0.0, 0.0, 1.0]]])
    torch.testing.assert_close(interpolate(content, previous, t64([[0.5]])), t64([[[3, 1, 1, 7]]]) / 12, **TOL)
    torch.testing.assert_close(interpolate(content, previous, t64([[1.0]])), content, **TOL)
    torch.testing.assert_close(interpolate(content, previous, t64([[0.0]])), previous, **TOL)


def test_shift_hand_example():
    interpolated = t64([[[3, 1, 1, 7]]]) / 12
    # Offset +1 moves slot i's mass to slot i + 1; slot 3's wraps to slot 0.
    torch.testing.assert_close(shift(interpolated, t64([[[0.0, 0.0, 1.0]]])), t64([[[7, 3, 1, 1]]]) / 12, **TOL)


def test_sharpen_hand_example():
    shifted = t64([[[7, 3, 1, 1]]]) / 12
    torch.testing.assert_close(sharpen(shifted, t64([[2.0]])), t64([[[49, 9, 1, 1]]]) / 60, **TOL)
    torch.testing.assert_close(sharpen(shifted, t64([[1.0]])), shifted, **TOL)


def test_address_chains_the_four_stages():
    memory, keys, strength, previous, gate, kernel, gamma = hand_example()
    weights = address(memory, previous, keys, strength, gate, kernel, gamma)
    torch.testing.assert_close(weights, t64([[[49, 9, 1, 1]]]) / 60, **TOL)


def test_heads_are_independent():
    # Two heads in one call give what each gives alone: head 0 the hand example, head 1 a plain copy of previous.
    memory, keys, _, previous, _, kernel, _ = hand_example()
    two = address(
        memory,
        torch.cat((previous, t64([[[0.25, 0.25, 0.5, 0.0]]])), dim=1),
        torch.cat((keys, t64([[[0.0, 1.0, 0.0, 0.0]]])), dim=1),
        t64([[math.log(3.0), 5.0]]),
        t64([[0.5, 0.0]]),
        torch.cat((kernel, t64([[[0.0, 1.0, 0.0]]])), dim=1),
        t64([[2.0, 1.0]]),
    )
    torch.testing.assert_close(two, t64([[[49, 9, 1, 1], [15, 15, 30, 0]]]) / t64([[[60], [60]]]), **TOL)


# --- shift against a direct loop -----------------------------------------------------------------------------------


def loop_shift(weights: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """w~(i) = sum_j w(j) s(i - j), i - j taken mod N, kernel index k holding offset k - S//2."""
    batch, heads, slots = weights.shape
    half = kernel.shape[-1] // 2
    out = torch.zeros_like(weights)
    for b in range(batch):
        for h in range(heads):
            for i in range(slots):
                for j in range(slots):
                    for k in range(kernel.shape[-1]):
                        if (i - j - (k - half)) % slots == 0:
                            out[b, h, i] += weights[b, h, j] * kernel[b, h, k]
    return out


@pytest.mark.parametrize("size", [3, 5])
def test_shift_matches_loop(size):
    generator = torch.Generator().manual_seed(0)
    weights = torch.rand(2, 3, 7, generator=generator, dtype=F64).softmax(-1)
    kernel = torch.rand(2, 3, size, generator=generator, dtype=F64).softmax(-1)
    torch.testing.assert_close(shift(weights, kernel), loop_shift(weights, kernel), **TOL)


def test_shift_one_hot_moves_one_slot_with_wraparound():
    up, down, stay = t64([[[0.0, 0.0, 1.0]]]), t64([[[1.0, 0.0, 0.0]]]), t64([[[0.0, 1.0, 0.0]]])
    last, first = t64([[[0.0, 0.0, 0.0, 1.0]]]), t64([[[1.0, 0.0, 0.0, 0.0]]])
    assert torch.equal(shift(last, up), first)
    assert torch.equal(shift(first, down), last)
    assert torch.equal(shift(t64([[[0.0, 1.0, 0.0, 0.0]]]), up), t64([[[0.0, 0.0, 1.0, 0.0]]]))
    assert torch.equal(shift(last, stay), last)


def test_shift_refuses_an_even_kernel():
    with pytest.raises(ValueError, match="odd"):
        shift(torch.ones(1, 1, 4), torch.ones(1, 1, 2))


# --- read and write --------------------------------------------------------------------------------------------------


def test_read_hand_example():
    memory = t64([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]])
    weights = t64([[[0.5, 0.5, 0.0], [0.0, 0.25, 0.75]]])
    torch.testing.assert_close(read(memory, weights), t64([[[2.0, 3.0], [4.5, 5.5]]]), **TOL)


def test_write_two_heads_hand_example():
    memory = t64([[[1.0, 2.0], [3.0, 4.0]]])
    weights = t64([[[1.0, 0.0], [0.5, 0.5]]])
    erase = t64([[[1.0, 0.0], [0.5, 0.5]]])
    add = t64([[[0.0, 1.0], [2.0, 2.0]]])
    # Retained: (1 - w1 e1^T) * (1 - w2 e2^T) = [[0, 1], [1, 1]] * 0.75 -> erased memory [[0, 1.5], [2.25, 3]].
    # Added: w1 a1^T + w2 a2^T = [[0, 1], [0, 0]] + [[1, 1], [1, 1]].
    torch.testing.assert_close(write(memory, weights, erase, add), t64([[[1.0, 3.5], [3.25, 4.0]]]), **TOL)


def test_write_heads_commute_and_full_erase_clears():
    memory = t64([[[1.0, 2.0], [3.0, 4.0]]])
    weights = t64([[[1.0, 0.0], [0.5, 0.5]]])
    erase = t64([[[1.0, 0.0], [0.5, 0.5]]])
    add = t64([[[0.0, 1.0], [2.0, 2.0]]])
    flipped = write(memory, weights.flip(1), erase.flip(1), add.flip(1))
    torch.testing.assert_close(flipped, t64([[[1.0, 3.5], [3.25, 4.0]]]), **TOL)
    cleared = write(memory, t64([[[1.0, 0.0]]]), t64([[[1.0, 1.0]]]), t64([[[0.0, 0.0]]]))
    torch.testing.assert_close(cleared, t64([[[0.0, 0.0], [3.0, 4.0]]]), **TOL)


# --- numerical safety ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_sharpen_gradients_finite_at_zero_weights(dtype):
    weights = torch.tensor([[[0.0, 0.25, 0.75, 0.0]]], dtype=dtype, requires_grad=True)
    gamma = torch.tensor([[1.5]], dtype=dtype, requires_grad=True)
    out = sharpen(weights, gamma)
    (out * torch.tensor([1.0, -2.0, 3.0, 4.0], dtype=dtype)).sum().backward()
    assert torch.isfinite(weights.grad).all() and torch.isfinite(gamma.grad).all()
    assert gamma.grad.abs().item() > 0
    expected = torch.tensor([0.0, 0.25**1.5, 0.75**1.5, 0.0], dtype=F64)
    torch.testing.assert_close(out.double().flatten(), expected / expected.sum())


def test_sharpen_does_not_underflow():
    # (1/128)^60 is 0 in float32: a plain power would give 0/0 here.
    weights = torch.full((1, 1, 128), 1 / 128)
    out = sharpen(weights, torch.tensor([[60.0]]))
    torch.testing.assert_close(out, weights)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_cosine_finite_at_zero_rows_and_keys(dtype):
    memory = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 2.0, 2.0], [1e-6, 1e-6, 1e-6]]], dtype=dtype, requires_grad=True)
    keys = torch.tensor([[[0.0, 0.0, 0.0], [2.0, 1.0, -2.0]]], dtype=dtype, requires_grad=True)
    strength = torch.tensor([[3.0, 3.0]], dtype=dtype, requires_grad=True)
    similarity = cosine_similarity(memory, keys)
    # Zero vectors have similarity 0; the 1e-6 row still gets its exact cosine.
    expected = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 0.0, 1 / (3 * math.sqrt(3))]]], dtype=F64)
    torch.testing.assert_close(similarity.double(), expected, rtol=1e-5, atol=1e-6)
    weights = content_weights(memory, keys, strength)
    torch.testing.assert_close(weights[0, 0].double(), torch.full((3,), 1 / 3, dtype=F64))
    (weights * torch.arange(6, dtype=dtype).view(2, 3)).sum().backward()
    for tensor in (memory, keys, strength):
        assert torch.isfinite(tensor.grad).all()


# --- the model -----------------------------------------------------------------------------------------------------

SMALL = NTMConfig(controller_size=16, embedding_size=6, memory_slots=12, memory_width=5)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_model_output_shape_and_dtype(dtype):
    torch.manual_seed(0)
    model = NeuralTuringMachine(7, SMALL).to(dtype)
    logits = model(torch.randint(0, 7, (3, 6)), 4)
    assert logits.shape == (3, 4, 7) and logits.dtype == dtype
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("controller", ["lstm", "feedforward"])
def test_multi_head_model(controller):
    torch.manual_seed(0)
    config = NTMConfig(
        controller_size=16, embedding_size=6, memory_slots=9, memory_width=4, read_heads=2, write_heads=2,
        controller=controller,
    )  # fmt: skip
    model = NeuralTuringMachine(5, config)
    assert model.output.in_features == 16 + 2 * 4
    # Per head: key 4 + strength + gate + 3 shifts + gamma = 10; per write head also erase and add, 8.
    assert model.heads.out_features == 4 * 10 + 2 * 8
    logits = model(torch.randint(0, 5, (2, 5), dtype=torch.int32), 3)
    assert logits.shape == (2, 3, 5) and torch.isfinite(logits).all()


def test_model_runs_on_meta_device():
    model = NeuralTuringMachine(9, NTMConfig(memory_slots=16, read_heads=2)).to("meta")
    logits = model(torch.zeros(4, 11, dtype=torch.long, device="meta"), 6)
    assert logits.device.type == "meta" and logits.shape == (4, 6, 9) and logits.dtype == torch.float32


def test_initial_weightings_start_on_slot_zero():
    model = NeuralTuringMachine(5, SMALL)
    weights = torch.softmax(model.initial_weight_logits, dim=-1)
    assert (weights[:, 0] > 0.99).all()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("controller_size", 0),
        ("controller_layers", 0),
        ("controller", "gru"),
        ("embedding_size", 2.5),
        ("memory_slots", 0),
        ("memory_width", True),
        ("read_heads", 0),
        ("write_heads", -1),
        ("shift_range", -1),
        ("shift_range", 64),
        ("memory_init", math.nan),
        ("init", "xavier"),
    ],
)
def test_bad_config_names_the_field(field, value):
    config = NTMConfig(**{field: value})
    with pytest.raises(ConfigError, match=field):
        config.validate()
    with pytest.raises(ConfigError, match=field):
        NeuralTuringMachine(5, config)


def test_feedforward_controller_has_one_layer():
    with pytest.raises(ConfigError, match="controller_layers"):
        NTMConfig(controller="feedforward", controller_layers=2).validate()


def test_config_type_is_checked():
    with pytest.raises(ConfigError, match="NTMConfig"):
        NeuralTuringMachine(5, {"memory_slots": 8})


def test_gradients_finite_on_a_long_input():
    torch.manual_seed(0)
    model = NeuralTuringMachine(6, NTMConfig(controller_size=12, embedding_size=4, memory_slots=16, memory_width=4))
    inputs = torch.randint(1, 5, (2, 195))
    inputs[:, 0] = 0  # a symbol seen only at the first step
    inputs[:, -1] = 5  # the separator, seen only at the last: it is the input of all 5 answer steps
    logits = model(inputs, 5)
    targets = torch.randint(0, 6, (2, 5))
    torch.nn.functional.cross_entropy(logits.reshape(-1, 6), targets.reshape(-1)).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    # No placeholder row: the embedding holds the task's 6 symbols only, and the answer phase is fed the separator.
    assert model.embedding.weight.shape == (6, 4)
    assert model.embedding.weight.grad[5].abs().sum() > 0
    # The first input step reaches the loss through 198 steps of recurrence and memory: the stream is the 194 input
    # tokens before the separator, then the separator at each of the 5 answer steps (199 steps in all).
    assert model.embedding.weight.grad[0].abs().sum() > 0


def test_default_config_and_uniform_init():
    assert NeuralTuringMachine(5).config == NTMConfig()
    model = NeuralTuringMachine(5, NTMConfig(controller_size=8, memory_slots=6, memory_width=3, init="uniform"))
    assert model.heads.weight.abs().max() <= 1.0 and model.heads.weight.abs().max() > 0.5
    torch.testing.assert_close(model.initial_reads, torch.full((1, 3), 1e-6))
    assert torch.isfinite(model(torch.randint(0, 5, (2, 4)), 3)).all()
