"""Axioms and numerics that every registered Lie group must satisfy.

The tests receive each group through the `group` fixture (see conftest.py), so a newly registered subclass is
checked by all of them. Elements are compared through their action on random keys, which identifies an element
whatever its representation (a quaternion and its negative, angles modulo 2 pi).
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from groups import LieGroup
from helpers import DTYPES, ELEMENT_KINDS, algebra_in_ball, assert_same_element, close, elements

seeds = st.integers(0, 2**31 - 1)
batches = st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple)
dtypes = st.sampled_from(DTYPES)
kinds = st.sampled_from(ELEMENT_KINDS)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@given(seed=seeds, batch=batches, dtype=dtypes, kind=kinds)
def test_identity_is_neutral(group, seed, batch, dtype, kind):
    g = elements(group, kind, batch, dtype, gen(seed))
    e = group.identity(*batch, dtype=dtype)
    assert e.shape == (*batch, *group.element_shape) and e.dtype == dtype
    assert_same_element(group, group.compose(e, g), g, gen(seed + 1))
    assert_same_element(group, group.compose(g, e), g, gen(seed + 1))
    x = group.key_space.random(*batch, dtype=dtype, generator=gen(seed + 2))
    close(group.act(e, x), x)


@given(seed=seeds, batch=batches, dtype=dtypes, kind=kinds)
def test_inverse_undoes(group, seed, batch, dtype, kind):
    g = elements(group, kind, batch, dtype, gen(seed))
    e = group.identity(*batch, dtype=dtype)
    assert_same_element(group, group.compose(g, group.inverse(g)), e, gen(seed + 1))
    assert_same_element(group, group.compose(group.inverse(g), g), e, gen(seed + 1))
    x = group.key_space.random(*batch, dtype=dtype, generator=gen(seed + 2))
    close(group.act(group.inverse(g), group.act(g, x)), x, scale=10)


@given(seed=seeds, batch=batches, dtype=dtypes, kind=kinds)
def test_compose_agrees_with_act(group, seed, batch, dtype, kind):
    g = elements(group, kind, batch, dtype, gen(seed))
    h = group.random(*batch, dtype=dtype, generator=gen(seed + 1))
    x = group.key_space.random(*batch, dtype=dtype, generator=gen(seed + 2))
    close(group.act(group.compose(g, h), x), group.act(g, group.act(h, x)), scale=10)


@given(seed=seeds, batch=batches, dtype=dtypes)
def test_compose_is_associative(group, seed, batch, dtype):
    g, h, k = (group.random(*batch, dtype=dtype, generator=gen(seed + i)) for i in range(3))
    left = group.compose(group.compose(g, h), k)
    right = group.compose(g, group.compose(h, k))
    assert_same_element(group, left, right, gen(seed + 3), scale=10)


@given(seed=seeds, batch=batches, dtype=dtypes, kind=kinds)
def test_operations_produce_valid_elements(group, seed, batch, dtype, kind):
    g = elements(group, kind, batch, dtype, gen(seed))
    h = group.random(*batch, dtype=dtype, generator=gen(seed + 1))
    raw = 3 * torch.randn(*batch, group.controller_dim, dtype=dtype, generator=gen(seed + 2))
    for element in (g, h, group.compose(g, h), group.inverse(g), group.interpolate(g, h, 0.7), group.identity()):
        group.check(element.to(dtype))
    group.check(group.from_controller(raw))


def test_check_rejects_what_is_not_an_element(group):
    g = group.random(3, dtype=torch.float64, generator=gen(0))
    with pytest.raises(ValueError, match=r"NaN"):
        group.check(torch.full_like(g, float("nan")))
    with pytest.raises(ValueError, match=r"shape"):
        group.check(torch.zeros(3, *[n + 1 for n in group.element_shape], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"floating point"):
        group.check(g.long())


@given(seed=seeds, batch=batches, dtype=dtypes, kind=kinds)
def test_action_stays_on_key_space(group, seed, batch, dtype, kind):
    g = elements(group, kind, batch, dtype, gen(seed))
    x = group.key_space.random(*batch, dtype=dtype, generator=gen(seed + 1))
    moved = group.act(g, x)
    assert moved.shape == x.shape and moved.dtype == dtype
    group.key_space.check(moved)
    for _ in range(20):  # repeated actions must not drift off the space either
        moved = group.act(g, moved)
    group.key_space.check(moved)


@given(seed=seeds, batch=batches, dtype=dtypes, kind=kinds)
def test_action_is_isometry(group, seed, batch, dtype, kind):
    g = elements(group, kind, batch, dtype, gen(seed))
    x = group.key_space.random(*batch, dtype=dtype, generator=gen(seed + 1))
    y = group.key_space.random(*batch, dtype=dtype, generator=gen(seed + 2))
    space = group.key_space
    close(space.dist(group.act(g, x), group.act(g, y)), space.dist(x, y), scale=10)
    close(space.dist2(group.act(g, x), group.act(g, y)), space.dist2(x, y), scale=10)


@given(seed=seeds, batch=batches, dtype=dtypes)
def test_log_inverts_exp_within_injectivity_radius(group, seed, batch, dtype):
    xi = algebra_in_ball(group, batch, dtype, gen(seed))
    close(group.log(group.exp(xi)), xi, scale=10)
    tiny = 1e-7 * xi  # compared relative to its size: a log that returned zeros must fail
    close(group.log(group.exp(tiny)) * 1e7, xi)


@given(seed=seeds, batch=batches, dtype=dtypes, kind=kinds)
def test_exp_inverts_log(group, seed, batch, dtype, kind):
    g = elements(group, kind, batch, dtype, gen(seed))
    xi = group.log(g)
    assert xi.shape == (*batch, group.algebra_dim) and xi.dtype == dtype
    assert_same_element(group, group.exp(xi), g, gen(seed + 1), scale=10)


@given(seed=seeds, batch=batches, dtype=dtypes)
def test_interpolation_endpoints(group, seed, batch, dtype):
    g0 = group.random(*batch, dtype=dtype, generator=gen(seed))
    g1 = group.random(*batch, dtype=dtype, generator=gen(seed + 1))
    assert_same_element(group, group.interpolate(g0, g1, 0.0), g0, gen(seed + 2), scale=10)
    assert_same_element(group, group.interpolate(g0, g1, 1.0), g1, gen(seed + 2), scale=10)


@given(seed=seeds, batch=batches, dtype=dtypes, r=st.floats(-1.5, 1.5))
def test_interpolation_follows_one_parameter_subgroup(group, seed, batch, dtype, r):
    xi = algebra_in_ball(group, batch, dtype, gen(seed), fraction=0.6)
    e = group.identity(*batch, dtype=dtype)
    target = group.exp(xi)
    assert_same_element(group, group.interpolate(e, target, r), group.exp(r * xi), gen(seed + 1), scale=10)
    ratios = torch.rand(batch, dtype=dtype, generator=gen(seed + 2))  # one r per batch entry
    assert_same_element(group, group.interpolate(e, target, ratios), group.exp(ratios[..., None] * xi), gen(seed + 3))


@given(seed=seeds, batch=batches, dtype=dtypes)
def test_batched_ops_match_one_at_a_time(group, seed, batch, dtype):
    g = group.random(*batch, dtype=dtype, generator=gen(seed))
    h = group.random(*batch, dtype=dtype, generator=gen(seed + 1))
    x = group.key_space.random(*batch, dtype=dtype, generator=gen(seed + 2))
    xi = algebra_in_ball(group, batch, dtype, gen(seed + 3))
    raw = torch.randn(*batch, group.controller_dim, dtype=dtype, generator=gen(seed + 4))
    ops = {
        "compose": (group.compose, (g, h)),
        "inverse": (group.inverse, (g,)),
        "act": (group.act, (g, x)),
        "exp": (group.exp, (xi,)),
        "log": (group.log, (g,)),
        "from_controller": (group.from_controller, (raw,)),
        "interpolate": (lambda a, b: group.interpolate(a, b, 0.3), (g, h)),
    }
    for name, (op, args) in ops.items():
        batched = op(*args)
        assert batched.dtype == dtype, name
        for index in itertools.product(*map(range, batch)):
            single = op(*(a[index] for a in args))
            close(batched[index], single, msg=lambda m, name=name: f"{name}: {m}")


def test_broadcasting_between_elements_and_keys(group):
    g = group.random(4, 1, dtype=torch.float64, generator=gen(0))
    x = group.key_space.random(1, 6, dtype=torch.float64, generator=gen(1))
    h = group.random(1, 6, dtype=torch.float64, generator=gen(2))
    tail = len(group.element_shape)
    g_full = g.expand(4, 6, *g.shape[2:])
    x_full, h_full = x.expand(4, 6, -1), h.expand(4, 6, *h.shape[2:])
    moved = group.act(g, x)
    assert moved.shape == (4, 6, group.key_space.dim) and tail >= 0
    close(moved, group.act(g_full, x_full))
    close(group.act(group.compose(g, h), x), group.act(group.compose(g_full, h_full), x_full))
    ratios = torch.linspace(0, 1, 4, dtype=torch.float64)[:, None]
    close(
        group.act(group.interpolate(g, h, ratios), x),
        group.act(group.interpolate(g_full, h_full, ratios.expand(4, 6)), x_full),
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_constructors_respect_dtype_and_generator(group, dtype):
    assert group.identity(2, dtype=dtype).dtype == dtype
    first = group.random(3, dtype=dtype, generator=gen(7))
    again = group.random(3, dtype=dtype, generator=gen(7))
    other = group.random(3, dtype=dtype, generator=gen(8))
    assert first.shape == (3, *group.element_shape) and first.dtype == dtype
    assert torch.equal(first, again) and not torch.equal(first, other)


def singular_algebra(group, dtype) -> dict[str, torch.Tensor]:
    """Algebra vectors where naive formulas divide by zero: zero, tiny, and just inside the injectivity radius."""
    direction = torch.nn.functional.normalize(torch.randn(3, group.algebra_dim, dtype=dtype, generator=gen(0)), dim=-1)
    points = {"zero": torch.zeros(3, group.algebra_dim, dtype=dtype), "tiny": 1e-7 * direction}
    if math.isfinite(group.injectivity_radius):
        points["near-radius"] = (group.injectivity_radius - 1e-4) * direction
    return points


def assert_finite_gradient(label, fn, *inputs):
    inputs = [t.detach().clone().requires_grad_(True) for t in inputs]
    out = fn(*inputs)
    assert torch.isfinite(out).all(), f"{label}: non-finite value"
    weights = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape)
    grads = torch.autograd.grad((out * weights).sum(), inputs, allow_unused=True)
    for grad in grads:
        assert grad is None or torch.isfinite(grad).all(), f"{label}: non-finite gradient"


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradients_finite_at_singular_points(group, dtype):
    x = group.key_space.random(3, dtype=dtype, generator=gen(1))
    for name, xi in singular_algebra(group, dtype).items():
        g = group.exp(xi).detach()
        identity = group.identity(3, dtype=dtype)
        assert_finite_gradient(f"exp at {name}", group.exp, xi)
        assert_finite_gradient(f"log at {name}", group.log, g)
        assert_finite_gradient(f"act at {name}", group.act, g, x)
        assert_finite_gradient(f"interpolate g to itself at {name}", lambda a: group.interpolate(a, a, 0.5), g)
        assert_finite_gradient(f"interpolate at {name}", lambda a, b: group.interpolate(a, b, 0.25), identity, g)
        assert_finite_gradient(f"log(g^-1 g) at {name}", lambda a: group.log(group.compose(group.inverse(a), a)), g)
    assert_finite_gradient("dist at x == y", group.key_space.dist, x, x)
    assert_finite_gradient("dist2 at x == y", group.key_space.dist2, x, x)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("magnitude", [0.0, 1e-30, 1.0, 1e30])
def test_from_controller_finite_for_any_input(group, dtype, magnitude):
    signs = torch.tensor([1.0, -1.0], dtype=dtype).repeat(group.controller_dim)[: group.controller_dim]
    raw = magnitude * torch.stack((signs, -signs, torch.ones_like(signs)))
    assert_finite_gradient(f"from_controller at {magnitude}", group.from_controller, raw)
    action = group.from_controller(raw)
    group.key_space.check(group.act(action, group.key_space.origin(3, dtype=dtype)))
    params = [p for p in group.parameters() if p.requires_grad]
    if params:  # a learnable bound must receive a finite gradient too
        grads = torch.autograd.grad(group.from_controller(raw + 0.5).sum(), params)
        assert all(torch.isfinite(grad).all() for grad in grads)


def test_gradcheck_float64(group):
    torch.manual_seed(0)
    g = group.random(2, dtype=torch.float64, generator=gen(3))
    h = group.random(2, dtype=torch.float64, generator=gen(4))
    x = group.key_space.random(2, dtype=torch.float64, generator=gen(5))
    xi = algebra_in_ball(group, (2,), torch.float64, gen(6), fraction=0.8)
    raw = torch.randn(2, group.controller_dim, dtype=torch.float64, generator=gen(7))
    checks = {
        "exp": (group.exp, (xi,)),
        "log": (group.log, (g,)),
        "compose": (group.compose, (g, h)),
        "inverse": (group.inverse, (g,)),
        "act": (group.act, (g, x)),
        "interpolate": (lambda a, b: group.interpolate(a, b, 0.3), (g, h)),
        "from_controller": (group.from_controller, (raw,)),
        "dist": (group.key_space.dist, (x, group.key_space.random(2, dtype=torch.float64, generator=gen(8)))),
    }
    for name, (fn, args) in checks.items():
        args = tuple(a.detach().clone().requires_grad_(True) for a in args)
        assert torch.autograd.gradcheck(fn, args), name


def test_operations_run_on_meta_device(group):
    """No operation creates a tensor on the CPU behind the caller's back: all of them run on `meta`."""
    meta = torch.device("meta")
    g = group.random(2, device=meta)
    x = group.key_space.random(2, device=meta)
    assert g.device == meta and x.device == meta
    xi = torch.empty(2, group.algebra_dim, device=meta)
    raw = torch.empty(2, group.controller_dim, device=meta)
    outputs = [
        group.exp(xi),
        group.log(g),
        group.compose(g, g),
        group.inverse(g),
        group.act(g, x),
        group.interpolate(g, g, 0.5),
        group.interpolate(g, g, torch.empty(2, device=meta)),
        group.from_controller(raw),
        group.identity(2, device=meta),
        group.key_space.dist(x, x),
        group.key_space.project(x),
        group.key_space.origin(2, device=meta),
    ]
    assert all(out.device == meta for out in outputs)
    group.key_space.check(x)


def test_series_and_closed_forms_agree_across_the_switch(group):
    """Sweep |xi| through every small-angle switch: an error in a Taylor branch shows up as a jump.

    In float64, exp must satisfy exp(xi) = exp(xi/2)^2 (the halves often fall on the other side of the switch)
    and log must invert it to a few ulp; in float32, exp and log must agree with float64 to float32 precision.
    """
    radius = min(group.injectivity_radius * 0.9, 2.0)
    magnitudes = torch.logspace(-6, math.log10(radius), 400, dtype=torch.float64)
    directions = torch.nn.functional.normalize(
        torch.randn(400, group.algebra_dim, dtype=torch.float64, generator=gen(0)), dim=-1
    )
    xi = magnitudes[:, None] * directions
    g = group.exp(xi)
    half = group.exp(xi / 2)
    assert_same_element(group, group.compose(half, half), g, gen(1), scale=100)
    relative_error = torch.linalg.vector_norm(group.log(g) - xi, dim=-1) / magnitudes
    assert relative_error.max() < 5e-15, f"log(exp(xi)) off by {float(relative_error.max()):.2e} relative"
    points = group.key_space.random(5, 1, dtype=torch.float64, generator=gen(2))
    moved32 = group.act(group.exp(xi.float()).double(), points)
    torch.testing.assert_close(moved32, group.act(g, points), rtol=2e-6, atol=2e-6)
    torch.testing.assert_close(group.log(g.float()), xi.float(), rtol=2e-6, atol=1e-7)


def test_interpolate_matches_the_exp_log_formula_at_every_distance(group):
    """A group's own `interpolate` must equal g0 . exp(r log(g0^-1 g1)), the generic definition, whether g1 is
    far from g0 or within a small-angle switch of it; in float64 tightly, in float32 to float32 precision."""
    count = 300
    radius = min(group.injectivity_radius * 0.9, 2.0)
    magnitudes = torch.logspace(-6, math.log10(radius), count, dtype=torch.float64)
    directions = torch.randn(count, group.algebra_dim, dtype=torch.float64, generator=gen(0))
    step = group.exp(magnitudes[:, None] * torch.nn.functional.normalize(directions, dim=-1))
    g0 = group.random(count, dtype=torch.float64, generator=gen(1))
    g1 = group.compose(g0, step)
    points = group.key_space.random(4, 1, dtype=torch.float64, generator=gen(2))
    for r in (0.3, -0.5, 1.7, torch.rand(count, dtype=torch.float64, generator=gen(3))):
        expected = group.act(LieGroup.interpolate(group, g0, g1, r), points)
        torch.testing.assert_close(group.act(group.interpolate(g0, g1, r), points), expected, rtol=1e-11, atol=1e-11)
        r32 = r.float() if isinstance(r, torch.Tensor) else r
        got32 = group.act(group.interpolate(g0.float(), g1.float(), r32).double(), points)
        torch.testing.assert_close(got32, expected, rtol=1e-5, atol=1e-5)
