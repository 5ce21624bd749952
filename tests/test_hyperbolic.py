"""The Poincaré ball and its Möbius group against independent references: the arcosh formula in float64, 2x2
complex matrices with scipy's expm and logm, and hand-computed examples. The axioms are in the property suite."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

import groups
from manifolds import PoincareBall
from manifolds.poincare import RANDOM_ACCESS_RADIUS, boundary_margin, interior_margin

F64 = torch.float64


def arcosh_distance(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The textbook form, arcosh(1 + 2 |x - y|^2 / ((1 - |x|^2)(1 - |y|^2))), in float64."""
    gap = (1 - (x**2).sum(-1)) * (1 - (y**2).sum(-1))
    return np.arccosh(1 + 2 * ((x - y) ** 2).sum(-1) / gap)


def algebra_matrix(xi) -> np.ndarray:
    theta, beta_r, beta_i = xi
    beta = complex(beta_r, beta_i)
    return np.array([[1j * theta, beta], [np.conj(beta), -1j * theta]])


def element_matrix(g: torch.Tensor) -> np.ndarray:
    ar, ai, br, bi = g.tolist()
    a, b = complex(ar, ai), complex(br, bi)
    return np.array([[a, b], [np.conj(b), np.conj(a)]])


def mobius(matrix: np.ndarray, z: complex) -> complex:
    return (matrix[0, 0] * z + matrix[0, 1]) / (matrix[1, 0] * z + matrix[1, 1])


# --- the key space ----------------------------------------------------------------------------------------------


def test_distance_matches_the_arcosh_formula():
    ball = PoincareBall(3)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2, 50, 3))
    x *= rng.uniform(0, 0.99, size=(50, 1)) / np.linalg.norm(x, axis=-1, keepdims=True)
    y *= rng.uniform(0, 0.99, size=(50, 1)) / np.linalg.norm(y, axis=-1, keepdims=True)
    expected = arcosh_distance(x, y)
    np.testing.assert_allclose(ball.dist(torch.tensor(x), torch.tensor(y)).numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(ball.dist2(torch.tensor(x), torch.tensor(y)).numpy(), expected**2, rtol=1e-12)


def test_distance_from_the_centre_is_twice_artanh():
    ball = PoincareBall(2)
    radii = np.array([0.0, 1e-8, 0.1, 0.5, 0.9, 0.999, 1 - 1e-9])
    points = torch.tensor(np.stack((radii, 0 * radii), axis=-1))
    np.testing.assert_allclose(ball.dist(points, ball.origin(dtype=F64)).numpy(), 2 * np.arctanh(radii), rtol=1e-7)


def test_nearby_points_keep_their_precision_in_float32():
    """At 1e-6 apart the arcosh form loses most digits in float32; the asinh form keeps them."""
    ball = PoincareBall(2)
    x = torch.tensor([0.3, 0.2])
    y = torch.tensor([0.3 + 1e-6, 0.2])
    # The conformal factor 2 / (1 - |x|^2) times the Euclidean gap, from the float32 points themselves.
    x64, y64 = x.double().numpy(), y.double().numpy()
    expected = 2 * (y64[0] - x64[0]) / (1 - (x64**2).sum())
    assert float(ball.dist(x, y)) == pytest.approx(expected, rel=1e-5)
    assert float(ball.dist2(x, y)) == pytest.approx(expected**2, rel=1e-5)


def test_dist2_series_and_closed_form_meet_at_the_switch():
    """A sweep of distances through the series' switch: dist2 equals dist^2 to a few ulp on both sides."""
    ball = PoincareBall(2)
    x = torch.tensor([0.2, -0.1], dtype=F64).expand(400, 2)
    offsets = torch.logspace(-9, -0.5, 400, dtype=F64)
    y = x + offsets[:, None] * torch.tensor([0.6, 0.8], dtype=F64)
    torch.testing.assert_close(ball.dist2(x, y), ball.dist(x, y).square(), rtol=1e-14, atol=0)


def test_near_the_boundary_the_distance_is_not_clamped():
    """geoopt's clamped artanh gives 16.6 here, with gradient 0; the distance is 23.7 and has a gradient."""
    ball = PoincareBall(2)
    for dtype in (torch.float32, F64):
        x = torch.tensor([0.99999, 0.0], dtype=dtype, requires_grad=True)
        y = torch.tensor([0.0, 0.99999], dtype=dtype)
        expected = arcosh_distance(np.array([0.99999, 0.0]), np.array([0.0, 0.99999]))
        distance = ball.dist(x, y)
        assert distance.item() == pytest.approx(expected, rel=1e-3 if dtype == torch.float32 else 1e-9)
        (grad,) = torch.autograd.grad(distance, x)
        assert torch.isfinite(grad).all() and grad[0] > 1e4  # pushing x outward moves it far away


def test_far_apart_keys_have_finite_gradients_in_float32():
    """Opposite keys at norm 1 - 1e-7 are keys (strictly inside) about 33 apart; s = sinh(d / 2)^2 is near 1e14
    there, where the series of the unselected branch overflows."""
    ball = PoincareBall(2)
    x = torch.tensor([[0.9999999, 0.0]], requires_grad=True)
    y = -x.detach()
    ball.check(x.detach())
    x64 = x.detach().double().numpy()
    expected = arcosh_distance(x64, -x64)
    squared = ball.dist2(x, y)
    assert squared.item() == pytest.approx(expected[0] ** 2, rel=1e-3)
    (grad,) = torch.autograd.grad(squared.sum(), x)
    assert torch.isfinite(grad).all() and grad[0, 0] > 0  # pushing x outward takes it further from y


def test_projection_is_the_identity_at_the_centre_too():
    """Inside the ball `project` is the identity, and so is its derivative, the centre included."""
    ball = PoincareBall(2)
    for point in (torch.zeros(2, dtype=F64), torch.tensor([1e-8, 0.0], dtype=F64)):
        jacobian = torch.autograd.functional.jacobian(ball.project, point)
        assert torch.equal(jacobian, torch.eye(2, dtype=F64))


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_projection_keeps_keys_strictly_inside(dtype):
    ball = PoincareBall(2)
    ambient = torch.tensor([[1.0, 0.0], [0.6, 0.8], [1e30, -1e30], [3.0, 4.0], [0.3, 0.4], [0.0, 0.0]], dtype=dtype)
    projected = ball.project(ambient)
    norms = torch.linalg.vector_norm(projected, dim=-1)
    assert (norms < 1).all()  # strictly, in the projection's own dtype
    radius = 1 - boundary_margin(dtype)
    torch.testing.assert_close(norms[:4], torch.full((4,), radius, dtype=dtype))
    torch.testing.assert_close(projected[3], torch.tensor([0.6, 0.8], dtype=dtype) * radius)
    assert torch.equal(projected[4:], ambient[4:])  # inside the ball, the identity
    assert torch.isfinite(ball.dist(projected[:1], projected[1:2]))


def test_check_takes_every_point_inside_and_refuses_the_sphere():
    """geoopt's own test refuses float32 keys beyond norm 0.996; every point strictly inside is a key."""
    ball = PoincareBall(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert not ball.manifold.check_point_on_manifold(torch.tensor([0.998, 0.0]))
    ball.check(torch.tensor([0.998, 0.0]))
    ball.check(torch.tensor([0.0, 0.99999]))
    with pytest.raises(ValueError, match=r"PoincareBall\(n=2\).*not on the key space.*norm 1"):
        ball.check(torch.tensor([0.6, 0.8], dtype=F64))
    with pytest.raises(ValueError, match=r"not on the key space.*strictly inside"):
        ball.check(torch.tensor([[0.1, 0.1], [3.0, 0.0]]))


def test_product_with_a_ball_uses_the_ball_s_own_check():
    product = groups.get("product", factors=["mobius", "translation"]).key_space
    product.check(torch.tensor([0.0, 0.998, 5.0, -3.0]))
    with pytest.raises(ValueError, match=r"factor 1, PoincareBall\(n=2\).*strictly inside"):
        product.check(torch.tensor([1.0, 0.0, 5.0, -3.0]))


# --- the group --------------------------------------------------------------------------------------------------

ALGEBRA = [
    (0.0, 0.0, 0.0),
    (1e-9, -2e-9, 5e-10),
    (0.3, 0.0, 0.0),  # elliptic: a rotation about the centre
    (0.0, 0.8, -0.5),  # hyperbolic: a translation
    (0.6, 0.36, 0.48),  # parabolic, |beta| = |theta|
    (1.2, 0.4, -0.3),  # elliptic
    (0.5, 2.0, 1.0),  # hyperbolic with a rotation
    (math.pi / 2 - 1e-6, 0.0, 0.0),  # just short of a half turn
]


@pytest.mark.parametrize("xi", ALGEBRA)
def test_exp_matches_the_matrix_exponential(xi):
    mobius_group = groups.get("mobius")
    g = mobius_group.exp(torch.tensor(xi, dtype=F64))
    np.testing.assert_allclose(element_matrix(g), scipy.linalg.expm(algebra_matrix(xi)), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("xi", ALGEBRA)
def test_log_matches_the_matrix_logarithm(xi):
    """Within |xi| < pi / 2, log is the principal matrix logarithm; logm itself loses digits near a half turn."""
    mobius_group = groups.get("mobius")
    g = mobius_group.exp(torch.tensor(xi, dtype=F64))
    logm = scipy.linalg.logm(element_matrix(g))
    from_logm = [logm[0, 0].imag, logm[0, 1].real, logm[0, 1].imag]
    if np.linalg.norm(xi) < math.pi / 2:
        np.testing.assert_allclose(mobius_group.log(g).numpy(), xi, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(mobius_group.log(g).numpy(), from_logm, atol=1e-6)


def test_exp_series_matches_the_closed_forms_just_below_the_switch():
    """Right below the switch, where the series' last kept terms matter most, against cosh / sinh and cos / sin."""
    mobius_group = groups.get("mobius")
    deltas = np.concatenate((np.linspace(2e-7, 9.9e-7, 40), -np.linspace(2e-7, 9.9e-7, 40)))
    theta = 0.05
    beta = np.sqrt(deltas + theta**2)  # |beta|^2 - theta^2 = delta
    xi = torch.tensor(np.stack((np.full_like(beta, theta), beta, 0 * beta), axis=-1))
    g = mobius_group.exp(xi).numpy()
    root = np.sqrt(np.abs(deltas))
    c = np.where(deltas > 0, np.cosh(root), np.cos(root))
    s = np.where(deltas > 0, np.sinh(root), np.sin(root)) / root
    np.testing.assert_allclose(g[:, 0], c, rtol=4e-16, atol=0)
    np.testing.assert_allclose(g[:, 2], beta * s, rtol=6e-16, atol=0)


def test_action_compose_and_inverse_match_complex_matrices():
    mobius_group = groups.get("mobius")
    g, h = mobius_group.random(2, dtype=F64, generator=torch.Generator().manual_seed(3))
    z = torch.tensor([0.3, -0.55], dtype=F64)
    expected = mobius(element_matrix(g), complex(0.3, -0.55))
    np.testing.assert_allclose(mobius_group.act(g, z).numpy(), [expected.real, expected.imag], rtol=1e-13)
    np.testing.assert_allclose(
        element_matrix(mobius_group.compose(g, h)), element_matrix(g) @ element_matrix(h), rtol=1e-13
    )
    np.testing.assert_allclose(element_matrix(mobius_group.inverse(g)), np.linalg.inv(element_matrix(g)), rtol=1e-13)


def test_hand_examples_translation_rotation_and_controller():
    mobius_group = groups.get("mobius")
    centre = torch.zeros(2, dtype=F64)
    # exp(0, t, 0) moves the centre to tanh(t), at hyperbolic distance 2t.
    moved = mobius_group.act(mobius_group.exp(torch.tensor([0.0, 0.7, 0.0], dtype=F64)), centre)
    np.testing.assert_allclose(moved.numpy(), [math.tanh(0.7), 0.0], rtol=1e-15)
    assert float(mobius_group.key_space.dist(moved, centre)) == pytest.approx(1.4, rel=1e-14)
    # exp(theta, 0, 0) turns the disk about its centre by 2 theta.
    turned = mobius_group.act(mobius_group.exp(torch.tensor([0.25, 0.0, 0.0], dtype=F64)), torch.tensor([0.5, 0.0]))
    np.testing.assert_allclose(turned.numpy(), [0.5 * math.cos(0.5), 0.5 * math.sin(0.5)], rtol=1e-7)
    # The controller's step: the centre moves by the paper's bounded length 3 / sqrt(10) along (1, 0), after a turn
    # by tanh(0.4) about the centre (which leaves the centre where it is but turns a neighbour).
    step = mobius_group.from_controller(torch.tensor([3.0, 0.0, 0.4], dtype=F64))
    moved = mobius_group.act(step, centre)
    assert float(mobius_group.key_space.dist(moved, centre)) == pytest.approx(3 / math.sqrt(10), rel=1e-14)
    np.testing.assert_allclose(moved[1].item(), 0.0, atol=1e-16)
    turn = mobius_group.act(step, torch.tensor([1e-6, 0.0], dtype=F64)) - moved
    assert math.atan2(turn[1].item(), turn[0].item()) == pytest.approx(math.tanh(0.4), rel=1e-6)
    with pytest.raises(ValueError, match=r"Mobius\(.*\|a\|\^2 - \|b\|\^2 is off 1"):
        mobius_group.check(torch.tensor([1.0, 0.0, 0.5, 0.0], dtype=F64))


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_far_translations_leave_keys_inside_the_disk(dtype):
    """Fifty steps of length 2 carry a key to distance 100, far past what floating point can place; the action
    sets it at the interior margin, a key still, at finite distance from every other."""
    mobius_group = groups.get("mobius")
    step = mobius_group.exp(torch.tensor([0.0, 1.0, 0.0], dtype=dtype))
    key = mobius_group.key_space.origin(dtype=dtype)
    for _ in range(50):
        key = mobius_group.act(step, key)
    mobius_group.key_space.check(key)
    assert float(torch.linalg.vector_norm(key)) == pytest.approx(1 - interior_margin(dtype), rel=1e-7)
    assert torch.isfinite(mobius_group.key_space.dist2(key, mobius_group.key_space.origin(dtype=dtype)))


def test_far_elements_act_and_log_without_overflow_in_float32():
    """A translation of length 90 has entries near 1.7e19, whose squares overflow float32: the action still sends
    the centre along the real axis to the margin, and log still returns the length."""
    mobius_group = groups.get("mobius")
    far = mobius_group.exp(torch.tensor([0.0, 45.0, 0.0]))
    assert torch.isfinite(far).all() and far[0] > 1e19
    moved = mobius_group.act(far, torch.tensor([0.0, 0.0]))
    torch.testing.assert_close(moved, torch.tensor([1 - interior_margin(torch.float32), 0.0]))
    # log(exp(xi)) = xi for a translation of length 100 with a quarter turn (|xi|^2 - theta^2 > 0: hyperbolic).
    xi = torch.tensor([0.4, 30.0, -40.0])
    torch.testing.assert_close(mobius_group.log(mobius_group.exp(xi)), xi, rtol=1e-5, atol=1e-5)


def test_random_access_keys_fill_a_ball_of_bounded_radius_one_to_one():
    """The key of raw output v lies at distance R tanh(|v| / R) from the centre, along v: about |v| for small
    outputs, never past R, and two outputs of one direction never name one key, as clipping would make them."""
    ball = PoincareBall(2)
    radius = RANDOM_ACCESS_RADIUS
    sizes = np.array([0.0, 1e-30, 1e-3, 0.5, 2.0, 6.0, 20.0, 60.0, 1e30])
    raw = torch.tensor(np.stack((0.6 * sizes, -0.8 * sizes), axis=-1), requires_grad=True)
    keys = ball.random_access_key(raw)
    distances = ball.dist(keys, ball.origin(dtype=F64)).detach().numpy()
    np.testing.assert_allclose(distances[:-2], radius * np.tanh(sizes[:-2] / radius), rtol=1e-9, atol=1e-300)
    assert distances[-1] < radius + 1e-9 and (np.diff(distances[:-1]) > 0).all()  # one-to-one up to |v| = 60
    directions = keys[2:].detach() / torch.linalg.vector_norm(keys[2:].detach(), dim=-1, keepdim=True)
    torch.testing.assert_close(directions, torch.tensor([[0.6, -0.8]], dtype=F64).expand(7, 2))
    (grad,) = torch.autograd.grad(keys.sum(), raw)
    assert torch.isfinite(grad).all() and grad[0].abs().max() == pytest.approx(0.5)  # the derivative 1/2 at 0
    # In float32 the norm of (1e30, 1e30) overflows; the key is still at distance R tanh(inf) = R, along (1, 1).
    huge = ball.random_access_key(torch.tensor([[1e30, 1e30], [-3.0, 4.0]]))
    ball.check(huge)
    expected = math.tanh(radius / 2) / math.sqrt(2)
    torch.testing.assert_close(huge[0], torch.tensor([expected, expected]))


def test_heads_aim_at_the_ball_s_random_access_key_and_other_spaces_keep_the_paper_s():
    """With the gate open (all random access, no move), a head lands on its random-access key: on the ball the
    bounded key (which the mix's projection leaves alone), on the sphere pi(pi(k)), as the paper's rule gives."""
    from liemem.heads import HeadState, LieHeads

    sphere = groups.get("so3").key_space
    cases = (
        ("mobius", PoincareBall(2).random_access_key),
        ("so3", lambda k: sphere.soft_project(sphere.soft_project(k))),
    )
    for name, expected in cases:
        heads = LieHeads(groups.get(name))
        key_dim = heads.group.key_space.dim
        raw = torch.zeros(1, 1, heads.raw_size, dtype=F64)
        raw[..., :key_dim] = torch.linspace(3.0, -5.0, key_dim, dtype=F64)
        raw[..., heads.gate_index] = 60.0  # sigmoid(60) = 1 in float64
        state = HeadState(heads.group.key_space.origin(1, 1, dtype=F64), heads.group.identity(1, 1, dtype=F64))
        moved = heads.move(raw, state)
        torch.testing.assert_close(moved.position, expected(raw[..., :key_dim]), rtol=1e-12, atol=1e-12)
