"""Each built-in group against independent references: scipy, matrix exponentials, hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.spatial.transform import Rotation

import groups
from manifolds import Euclidean, Sphere, Torus

F64 = torch.float64


def rodrigues(axis: np.ndarray, angle: float, q: np.ndarray) -> np.ndarray:
    """The paper's formula: q cos t + (xi x q) sin t + xi <xi, q> (1 - cos t)."""
    return q * np.cos(angle) + np.cross(axis, q) * np.sin(angle) + axis * (axis @ q) * (1 - np.cos(angle))


def quaternion_of(rotation: Rotation) -> torch.Tensor:
    x, y, z, w = rotation.as_quat()
    return torch.tensor([w, x, y, z], dtype=F64)


@pytest.mark.parametrize("angle", [0.0, 1e-9, 1e-5, 3e-3, 0.7, 2.5, math.pi - 1e-7, math.pi])
def test_so3_exp_acts_by_rodrigues(angle):
    so3 = groups.get("so3")
    rng = np.random.default_rng(0)
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    q = rng.normal(size=3)
    q /= np.linalg.norm(q)
    g = so3.exp(torch.tensor(axis * angle))
    moved = so3.act(g, torch.tensor(q)).numpy()
    np.testing.assert_allclose(moved, rodrigues(axis, angle, q), atol=1e-14)


@pytest.mark.parametrize("angle", [1e-5, 3e-3, 1.0, math.pi - 1e-7, math.pi - 1e-11])
def test_so3_log_matches_scipy_near_zero_and_pi(angle):
    so3 = groups.get("so3")
    rng = np.random.default_rng(1)
    for _ in range(5):
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        rotation = Rotation.from_rotvec(axis * angle)
        np.testing.assert_allclose(so3.log(quaternion_of(rotation)).numpy(), rotation.as_rotvec(), atol=1e-9)


def test_so3_log_is_the_same_for_both_quaternions_of_a_rotation():
    so3 = groups.get("so3")
    rotations = Rotation.random(50, random_state=5)
    quaternions = torch.tensor(rotations.as_quat()[:, [3, 0, 1, 2]])
    expected = rotations.as_rotvec()  # angles in [0, pi]
    np.testing.assert_allclose(so3.log(quaternions).numpy(), expected, atol=1e-12)
    np.testing.assert_allclose(so3.log(-quaternions).numpy(), expected, atol=1e-12)


def test_so3_log_at_exactly_pi_is_a_half_turn():
    so3 = groups.get("so3")
    half_turn = torch.tensor([0.0, 0.6, 0.0, 0.8], dtype=F64)
    log = so3.log(half_turn)
    assert math.isclose(float(log.norm()), math.pi, rel_tol=1e-15)
    np.testing.assert_allclose(log.numpy() / math.pi, [0.6, 0.0, 0.8], atol=1e-15)


def test_so3_float32_log_near_pi_keeps_axis():
    so3 = groups.get("so3")
    axis = torch.tensor([2.0, -1.0, 2.0]) / 3
    log = so3.log(so3.exp(axis * (math.pi - 1e-3)))
    torch.testing.assert_close(log, axis * (math.pi - 1e-3), atol=1e-5, rtol=1e-5)


def test_so3_compose_matches_scipy():
    so3 = groups.get("so3")
    a, b = Rotation.random(random_state=2), Rotation.random(random_state=3)
    composed = so3.compose(quaternion_of(a), quaternion_of(b))
    points = np.random.default_rng(4).normal(size=(4, 3))
    np.testing.assert_allclose(so3.act(composed, torch.tensor(points)).numpy(), (a * b).apply(points), atol=1e-13)


def test_so3_from_controller_follows_paper():
    so3 = groups.get("so3")
    raw = torch.tensor([0.0, 0.0, 5.0, 0.3], dtype=F64)  # axis +z, angle tanh(0.3)
    moved = so3.act(so3.from_controller(raw), torch.tensor([1.0, 0.0, 0.0], dtype=F64))
    angle = math.tanh(0.3)
    np.testing.assert_allclose(moved.numpy(), [math.cos(angle), math.sin(angle), 0.0], atol=1e-6)
    bounded = groups.get("so3", angle_bound=True)
    saturated = torch.tensor([0.0, 0.0, 1.0, 50.0], dtype=F64)  # tanh(50) = 1: the angle is the bound itself
    # The bound's logit b starts uniform in [-1, 1] (the authors' draw), so the bound pi * sigmoid(b - 5) starts
    # between pi * sigmoid(-6) and pi * sigmoid(-4), about 0.0078 and 0.0566 rad.
    drawn = bounded.angle.bound_logit.item()
    others = [groups.get("so3", angle_bound=True).angle.bound_logit.item() for _ in range(20)]
    assert all(-1.0 <= b <= 1.0 for b in [drawn, *others]) and len(set(others)) == 20  # drawn, not a constant
    log = bounded.log(bounded.from_controller(saturated))
    assert math.isclose(float(log.detach().norm()), math.pi / (1 + math.exp(5 - drawn)), rel_tol=1e-6)
    assert math.pi / (1 + math.exp(6)) <= float(log.detach().norm()) <= math.pi / (1 + math.exp(4))
    with torch.no_grad():
        bounded.angle.bound_logit.fill_(0.0)
    log = bounded.log(bounded.from_controller(saturated))
    assert math.isclose(float(log.detach().norm()), 0.021026211295, rel_tol=1e-6)  # pi * sigmoid(0 - 5) by hand


@pytest.mark.parametrize("angle_bound", [False, True])
def test_se2_from_controller_follows_paper(angle_bound):
    se2 = groups.get("se2", angle_bound=angle_bound)
    if angle_bound:
        assert -1.0 <= se2.angle.bound_logit.item() <= 1.0  # drawn uniform in [-1, 1], as the authors' code does
        with torch.no_grad():
            se2.angle.bound_logit.fill_(0.5)  # a value of our own, so that the bound below is known by hand
    raw = torch.tensor([3.0, -4.0, 0.8], dtype=F64)
    angle = math.tanh(0.8) * (math.pi / (1 + math.exp(5 - 0.5)) if angle_bound else 1.0)
    expected = [math.cos(angle), math.sin(angle), 3 / math.sqrt(26), -4 / math.sqrt(26)]
    np.testing.assert_allclose(se2.from_controller(raw).detach().numpy(), expected, rtol=1e-12)


def test_so3_check_rejects_non_unit_quaternions_and_se2_bad_rotations():
    with pytest.raises(ValueError, match=r"SO3\(.*quaternion is off unit norm"):
        groups.get("so3").check(torch.tensor([2.0, 0.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match=r"SE2\(.*rotation .* off unit norm"):
        groups.get("se2").check(torch.tensor([2.0, 0.0, 0.0, 0.0]))
    groups.get("se2").check(torch.tensor([0.6, 0.8, 5.0, -3.0]))


def se2_hat(xi: np.ndarray) -> np.ndarray:
    vx, vy, omega = xi
    return np.array([[0.0, -omega, vx], [omega, 0.0, vy], [0.0, 0.0, 0.0]])


def se2_matrix(g: torch.Tensor) -> np.ndarray:
    cos, sin, tx, ty = g.tolist()
    return np.array([[cos, -sin, tx], [sin, cos, ty], [0.0, 0.0, 1.0]])


@pytest.mark.parametrize("omega", [0.0, 1e-8, 1e-4, 0.9, -2.0, math.pi - 1e-6])
def test_se2_exp_and_log_match_matrix_exponential(omega):
    se2 = groups.get("se2")
    xi = np.array([0.7, -1.3, omega])
    g = se2.exp(torch.tensor(xi))
    np.testing.assert_allclose(se2_matrix(g), scipy.linalg.expm(se2_hat(xi)), atol=1e-12)
    np.testing.assert_allclose(se2.log(g).numpy(), xi, atol=1e-9)
    logm = np.real(scipy.linalg.logm(se2_matrix(g)))
    np.testing.assert_allclose(se2.log(g).numpy(), [logm[0, 2], logm[1, 2], logm[1, 0]], atol=1e-6)


def test_se2_hand_example():
    se2 = groups.get("se2")
    quarter_turn_then_shift = torch.tensor([0.0, 1.0, 2.0, 0.0], dtype=F64)  # rotate 90 deg, then move by (2, 0)
    point = torch.tensor([1.0, 0.0], dtype=F64)
    np.testing.assert_allclose(se2.act(quarter_turn_then_shift, point).numpy(), [2.0, 1.0], atol=1e-15)
    inverse = se2.inverse(quarter_turn_then_shift)
    np.testing.assert_allclose(se2.act(inverse, torch.tensor([2.0, 1.0], dtype=F64)).numpy(), [1.0, 0.0], atol=1e-15)


def test_translation_hand_example_and_bound():
    translation = groups.get("translation", n=2)
    g = torch.tensor([3.0, 4.0], dtype=F64)
    np.testing.assert_allclose(translation.from_controller(g).numpy(), [3 / math.sqrt(26), 4 / math.sqrt(26)])
    huge = translation.from_controller(torch.tensor([3e30, 4e30]))
    np.testing.assert_allclose(huge.numpy(), [0.6, 0.8], rtol=1e-6)
    np.testing.assert_allclose(translation.interpolate(g, -g, 0.25).numpy(), [1.5, 2.0])


def test_torus_translation_hand_example():
    torus = groups.get("torus", n=2)
    keys = Torus(2).from_angles(torch.tensor([0.5, 3.0], dtype=F64))
    moved = torus.act(torch.tensor([0.25, 0.5], dtype=F64), keys)
    np.testing.assert_allclose(Torus(2).to_angles(moved).numpy(), [0.75, 3.5 - 2 * math.pi], atol=1e-15)
    # The short way round: from 3.0 to -3.0 rad is a step of 2 pi - 6 through pi, not -6.
    halfway = torus.interpolate(torch.tensor([0.0, 3.0], dtype=F64), torch.tensor([0.0, -3.0], dtype=F64), 0.5)
    np.testing.assert_allclose(torch.cos(halfway).numpy(), [1.0, -1.0], atol=1e-15)


def test_key_spaces_of_builtins():
    assert isinstance(groups.get("translation", n=3).key_space, Euclidean)
    assert groups.get("translation", n=3).key_space.dim == 3
    assert isinstance(groups.get("so3").key_space, Sphere) and groups.get("so3").key_space.dim == 3
    assert isinstance(groups.get("se2").key_space, Euclidean) and groups.get("se2").key_space.dim == 2
    assert isinstance(groups.get("torus", n=3).key_space, Torus) and groups.get("torus", n=3).key_space.dim == 6


def se3_hat(xi: np.ndarray) -> np.ndarray:
    """The 4x4 matrix of the algebra element (v, omega)."""
    v, w = xi[:3], xi[3:]
    matrix = np.zeros((4, 4))
    matrix[:3, :3] = [[0.0, -w[2], w[1]], [w[2], 0.0, -w[0]], [-w[1], w[0], 0.0]]
    matrix[:3, 3] = v
    return matrix


def se3_matrix(g: torch.Tensor) -> np.ndarray:
    """The 4x4 homogeneous matrix of the element (q, t), the rotation taken by scipy from the quaternion."""
    w, x, y, z, *t = g.tolist()
    matrix = np.eye(4)
    matrix[:3, :3] = Rotation.from_quat([x, y, z, w]).as_matrix()
    matrix[:3, 3] = t
    return matrix


@pytest.mark.parametrize("angle", [0.0, 1e-9, 1e-4, 0.03, 0.9, 2.0, math.pi - 1e-3, math.pi - 1e-7])
def test_se3_exp_and_log_match_matrix_exponential_and_logarithm(angle):
    """exp against scipy's expm of the 4x4 algebra matrix, log against logm, at angles from 0 to just short of pi
    (logm itself loses digits there, so the round trip is checked to 1e-9 and logm to 1e-6)."""
    se3 = groups.get("se3")
    axis = np.array([0.48, -0.6, 0.64])
    xi = np.concatenate(([0.7, -1.3, 0.4], angle * axis / np.linalg.norm(axis)))
    g = se3.exp(torch.tensor(xi))
    np.testing.assert_allclose(se3_matrix(g), scipy.linalg.expm(se3_hat(xi)), atol=1e-12)
    np.testing.assert_allclose(se3.log(g).numpy(), xi, atol=1e-9)
    logm = np.real(scipy.linalg.logm(se3_matrix(g)))
    from_logm = [logm[0, 3], logm[1, 3], logm[2, 3], logm[2, 1], logm[0, 2], logm[1, 0]]
    np.testing.assert_allclose(se3.log(g).numpy(), from_logm, atol=1e-6)


def test_se3_log_at_a_half_turn_gives_a_rotation_of_pi():
    """At exactly pi, log picks one of the two rotation vectors (+-pi axis); either one's exp is the element."""
    se3 = groups.get("se3")
    g = torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 2.0, 3.0], dtype=F64)  # half a turn about z, then t = (1, 2, 3)
    xi = se3.log(g)
    assert abs(abs(xi[5].item()) - math.pi) < 1e-12 and torch.isfinite(xi).all()
    np.testing.assert_allclose(se3_matrix(se3.exp(xi)), se3_matrix(g), atol=1e-12)


def test_se3_hand_example_and_controller():
    se3 = groups.get("se3")
    # A quarter turn about z, then a shift by (1, 0, 2): (1, 0, 0) -> (0, 1, 0) -> (1, 1, 2).
    half = math.sqrt(0.5)
    g = torch.tensor([half, 0.0, 0.0, half, 1.0, 0.0, 2.0], dtype=F64)
    np.testing.assert_allclose(se3.act(g, torch.tensor([1.0, 0.0, 0.0], dtype=F64)).numpy(), [1, 1, 2], atol=1e-15)
    back = se3.act(se3.inverse(g), torch.tensor([1.0, 1.0, 2.0], dtype=F64))
    np.testing.assert_allclose(back.numpy(), [1.0, 0.0, 0.0], atol=1e-15)
    # Controller: translation a / sqrt(1 + |a|^2) from the first three, SO(3)'s axis and tanh angle from the rest.
    raw = torch.tensor([3.0, 0.0, 4.0, 0.0, 0.0, 2.0, 0.5], dtype=F64)
    element = se3.from_controller(raw)
    np.testing.assert_allclose(element[4:].numpy(), [3 / math.sqrt(26), 0.0, 4 / math.sqrt(26)], rtol=1e-12)
    angle = math.tanh(0.5)
    np.testing.assert_allclose(element[:4].numpy(), [math.cos(angle / 2), 0, 0, math.sin(angle / 2)], atol=1e-5)
    with pytest.raises(ValueError, match=r"SE3\(.*quaternion.*off unit norm"):
        se3.check(torch.tensor([2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]))


def test_product_space_distance_adds_the_factors_squares():
    """S^2 x R^1: the distance of two keys by hand, from the chord on the sphere and the gap on the line."""
    space = groups.get("product").key_space
    x = torch.tensor([1.0, 0.0, 0.0, 2.0], dtype=F64)
    y = torch.tensor([0.0, 1.0, 0.0, -1.0], dtype=F64)  # a quarter turn away (chord sqrt 2), 3 apart on the line
    np.testing.assert_allclose(space.dist(x, y).item(), math.sqrt(2 + 9), rtol=1e-15)
    np.testing.assert_allclose(space.dist2(x, y).item(), 11.0, rtol=1e-15)
    assert space.chordal and groups.get("product", factors=["so3", "translation"]).key_space.dim == 5
    geodesic = groups.get("product", factors=[{"name": "so3", "distance": "geodesic"}, "translation"]).key_space
    assert not geodesic.chordal
    x2, y2 = torch.cat((x, x[3:])), torch.cat((y, y[3:]))  # the line twice: R^2 with both coordinates 3 apart
    np.testing.assert_allclose(geodesic.dist2(x2, y2).item(), (math.pi / 2) ** 2 + 9 + 9, rtol=1e-12)


def test_product_group_acts_factor_by_factor():
    """so3 x translation(1): a quarter turn about z and a shift of 5 move (1, 0, 0 | 2) to (0, 1, 0 | 7)."""
    product = groups.get("product")
    half = math.sqrt(0.5)
    g = torch.tensor([half, 0.0, 0.0, half, 5.0], dtype=F64)
    moved = product.act(g, torch.tensor([1.0, 0.0, 0.0, 2.0], dtype=F64))
    np.testing.assert_allclose(moved.numpy(), [0.0, 1.0, 0.0, 7.0], atol=1e-15)
    assert product.controller_dim == 4 + 1 and product.algebra_dim == 3 + 1 and product.element_shape == (5,)


@pytest.mark.parametrize("factors", ["so3", [], [{"n": 2}], [{"name": "nosuch"}]])
def test_product_refuses_bad_factors_by_name(factors):
    with pytest.raises(ValueError, match=r"product|unknown group"):
        groups.get("product", factors=factors)
