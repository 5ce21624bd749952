"""The reference LANTM of the speed benchmark reads memory as the paper says and trains without NaNs.

`benchmarks/reference_lantm.py` is the baseline the benchmark compares against and a readable statement of the
model, so its inverse-square read is checked against the paper's formula
w_i = s_i d_i^-2 / sum_j s_j d_j^-2 (d Euclidean), evaluated directly in float64.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from liemem import engine

ROOT = Path(__file__).resolve().parents[1]


def load_reference_module():
    # benchmarks/ is not a package, so the file is loaded by path.
    path = ROOT / "benchmarks" / "reference_lantm.py"
    spec = importlib.util.spec_from_file_location("reference_lantm", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


reference = load_reference_module()

KEYS = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [-1.5, 0.5], [0.7, -0.9]])
STRENGTHS = torch.tensor([1.0, 0.5, 0.25, 0.8, 0.05])
HEADS = torch.tensor([[0.3, 0.4], [-1.0, 1.0], [0.9, 0.1]])


def paper_weights(head: torch.Tensor, keys: torch.Tensor, strengths: torch.Tensor) -> torch.Tensor:
    distances = torch.linalg.vector_norm(head[:, None, :] - keys[None], dim=-1)
    unnormalised = strengths * distances**-2
    return unnormalised / unnormalised.sum(dim=-1, keepdim=True)


def test_inverse_square_read_matches_the_paper_formula():
    values = torch.randn(len(KEYS), reference.VALUE_SIZE, generator=torch.Generator().manual_seed(0))
    batch = len(HEADS)
    keys = KEYS.expand(batch, -1, -1)
    strengths = STRENGTHS.expand(batch, -1)

    weights = reference.inverse_square_weights(HEADS, keys, strengths)
    read = reference.read_memory(HEADS, keys, values.expand(batch, -1, -1), strengths)

    expected_weights = paper_weights(HEADS.double(), KEYS.double(), STRENGTHS.double())
    torch.testing.assert_close(weights.double(), expected_weights, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(read.double(), expected_weights @ values.double(), rtol=1e-5, atol=1e-6)


def test_head_on_a_key_reads_that_slot_with_finite_gradients():
    head = KEYS[1:2].clone().requires_grad_()
    keys = KEYS.unsqueeze(0).clone().requires_grad_()
    strengths = STRENGTHS.unsqueeze(0).clone().requires_grad_()
    values = torch.randn(1, len(KEYS), reference.VALUE_SIZE, generator=torch.Generator().manual_seed(1))
    values.requires_grad_()

    weights = reference.inverse_square_weights(head, keys, strengths)
    read = reference.read_memory(head, keys, values, strengths)
    (read * torch.linspace(-1, 1, reference.VALUE_SIZE)).sum().backward()

    torch.testing.assert_close(weights, torch.eye(len(KEYS))[1:2], rtol=0, atol=1e-6)
    for tensor in (head, keys, strengths, values):
        assert torch.isfinite(tensor.grad).all()


def test_output_shape_and_finite_gradients_with_the_read_head_on_a_key():
    torch.manual_seed(0)
    vocab_size, batch, input_length, answer_length = 7, 3, 5, 4
    model = reference.ReferenceLANTM(vocab_size)
    # With no action and a zero random-access key the read head stays at its start, which is the initial key.
    for layer in (model.read_action, model.read_random_key):
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)
    inputs = torch.randint(0, vocab_size, (batch, input_length))
    targets = torch.randint(0, vocab_size, (batch, answer_length))

    logits = model(inputs, answer_length)
    assert logits.shape == (batch, answer_length, vocab_size)
    nn.functional.cross_entropy(logits.reshape(-1, vocab_size), targets.reshape(-1)).backward()

    assert torch.equal(model.initial_read_head, model.initial_key)
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name


def reordered(rows: torch.Tensor) -> torch.Tensor:
    """nn.LSTMCell's gate order (input, forget, candidate, output) to liemem's (input, forget, output, candidate)."""
    i, f, g, o = rows.chunk(4, dim=0)
    return torch.cat((i, f, o, g), dim=0)


def test_liemem_lantm_computes_what_the_independent_reference_computes():
    """liemem's LANTM, both its hand-differentiated and its plain loop, against the separately written reference,
    with the reference's weights copied in: same logits and the same gradient for every parameter, in float64."""
    from liemem import build_model

    torch.manual_seed(0)
    vocab, embed = 7, reference.EMBEDDING_SIZE
    ref = reference.ReferenceLANTM(vocab).double()
    with torch.no_grad():
        for parameter in ref.parameters():  # away from the zero initial state, so every term matters
            parameter.add_(0.3 * torch.randn_like(parameter))
    model = build_model("lantm", vocab).double()
    step_layers = [ref.read_random_key, ref.read_action, ref.read_gate]
    step_layers += [ref.write_random_key, ref.write_action, ref.write_gate, ref.write_value, ref.write_strength]
    with torch.no_grad():
        model.embedding.weight.copy_(ref.embedding.weight)
        input_weight = reordered(ref.lstm.weight_ih)
        model.controller.input_weight.copy_(input_weight[:, :embed])
        model.controller.recurrent_weight[0].copy_(
            torch.cat((input_weight[:, embed:], reordered(ref.lstm.weight_hh)), 1)
        )
        model.controller.bias[0].copy_(reordered(ref.lstm.bias_ih))
        model.controller.hidden_bias[0].copy_(reordered(ref.lstm.bias_hh))
        model.controller.initial_hidden.copy_(ref.initial_hidden[None])
        model.controller.initial_cell.copy_(ref.initial_cell[None])
        model.step_projection.weight.copy_(torch.cat([layer.weight for layer in step_layers]))
        model.step_projection.bias.copy_(torch.cat([layer.bias for layer in step_layers]))
        model.readout.hidden.weight.copy_(torch.cat((ref.output_from_hidden.weight, ref.output_coefficient.weight)))
        model.readout.hidden.bias.copy_(torch.cat((ref.output_from_hidden.bias, ref.output_coefficient.bias)))
        model.readout.read.load_state_dict(ref.output_from_read.state_dict())
        model.initial_positions.copy_(torch.stack((ref.initial_read_head, ref.initial_write_head)))
        model.initial_read.copy_(ref.initial_read)
        model.initial_key.copy_(ref.initial_key)
        model.initial_value.copy_(ref.initial_value)
        model.initial_strength.copy_(ref.initial_strength[0])
    inputs = torch.randint(0, vocab, (3, 6))
    expected = ref(inputs, 4)
    expected.sin().sum().backward()

    def grad(parameter):
        return parameter.grad

    ref_input_grad = reordered(grad(ref.lstm.weight_ih))
    # Every liemem parameter's gradient, laid out from the reference's as the weights were copied in above.
    expected_grads = {
        "embedding.weight": grad(ref.embedding.weight),
        "controller.input_weight": ref_input_grad[:, :embed],
        "controller.recurrent_weight.0": torch.cat((ref_input_grad[:, embed:], reordered(grad(ref.lstm.weight_hh))), 1),
        "controller.bias.0": reordered(grad(ref.lstm.bias_ih)),
        "controller.hidden_bias.0": reordered(grad(ref.lstm.bias_hh)),
        "controller.initial_hidden": grad(ref.initial_hidden)[None],
        "controller.initial_cell": grad(ref.initial_cell)[None],
        "step_projection.weight": torch.cat([grad(layer.weight) for layer in step_layers]),
        "step_projection.bias": torch.cat([grad(layer.bias) for layer in step_layers]),
        "readout.hidden.weight": torch.cat((grad(ref.output_from_hidden.weight), grad(ref.output_coefficient.weight))),
        "readout.hidden.bias": torch.cat((grad(ref.output_from_hidden.bias), grad(ref.output_coefficient.bias))),
        "readout.read.weight": grad(ref.output_from_read.weight),
        "readout.read.bias": grad(ref.output_from_read.bias),
        "initial_positions": torch.stack((grad(ref.initial_read_head), grad(ref.initial_write_head))),
        "initial_read": grad(ref.initial_read),
        "initial_key": grad(ref.initial_key),
        "initial_value": grad(ref.initial_value),
        "initial_strength": grad(ref.initial_strength)[0],
    }
    assert {name for name, _ in model.named_parameters()} == set(expected_grads)
    for path in ("auto", "loop", "autograd"):
        with engine.forced(path):
            model.zero_grad()
            logits = model(inputs, 4)
            logits.sin().sum().backward()
        torch.testing.assert_close(logits, expected, rtol=1e-10, atol=1e-12)
        for name, parameter in model.named_parameters():
            want = expected_grads[name]
            scale = want.abs().max().item()
            assert scale > 0, name  # every parameter takes part, so each comparison can fail
            torch.testing.assert_close(
                parameter.grad, want.view_as(parameter), rtol=1e-8, atol=1e-12 * max(scale, 1.0), msg=name
            )
