"""Key spaces against float64 formulas, and the geoopt pitfalls they must not inherit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import groups
from manifolds import Euclidean, KeySpace, PoincareBall, Sphere, Torus

F64 = torch.float64
SPACES = {
    "euclidean": lambda: Euclidean(3),
    "sphere": lambda: Sphere(3),
    "sphere-geodesic": lambda: Sphere(4, distance="geodesic"),
    "torus": lambda: Torus(2),
    "poincare": lambda: PoincareBall(2),
    "poincare-3": lambda: PoincareBall(3),
}


@pytest.fixture(params=list(SPACES), ids=list(SPACES))
def space(request) -> KeySpace:
    return SPACES[request.param]()


def test_euclidean_distance_matches_formula():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    got = Euclidean(3).dist(torch.tensor(x), torch.tensor(y)).numpy()
    np.testing.assert_allclose(got, np.sqrt(((x - y) ** 2).sum(-1)), rtol=1e-14)
    np.testing.assert_allclose(Euclidean(3).dist2(torch.tensor(x), torch.tensor(y)).numpy(), ((x - y) ** 2).sum(-1))


def test_distance_broadcasts_over_leading_axes():
    heads = Euclidean(2).random(4, 1, dtype=F64)
    keys = Euclidean(2).random(1, 7, dtype=F64)
    assert Euclidean(2).dist(heads, keys).shape == (4, 7)  # geoopt's default Euclidean would be element-wise


def test_sphere_chordal_is_default_and_geodesic_matches_arccos():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 3))
    y = rng.normal(size=(6, 3))
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    y /= np.linalg.norm(y, axis=-1, keepdims=True)
    chord = Sphere(3).dist(torch.tensor(x), torch.tensor(y)).numpy()
    np.testing.assert_allclose(chord, np.linalg.norm(x - y, axis=-1), rtol=1e-14)
    geodesic = Sphere(3, distance="geodesic").dist(torch.tensor(x), torch.tensor(y)).numpy()
    np.testing.assert_allclose(geodesic, np.arccos(np.clip((x * y).sum(-1), -1, 1)), rtol=1e-12)


def test_geodesic_resolves_tiny_angles_in_float32_and_is_pi_at_antipodes():
    sphere = Sphere(3, distance="geodesic")
    x = torch.tensor([1.0, 0.0, 0.0])
    y = torch.tensor([math.cos(1e-6), math.sin(1e-6), 0.0])
    assert float(sphere.dist(x, x)) == 0.0  # geoopt's clamped acos gives 0.0141 here
    assert math.isclose(float(sphere.dist(x, y)), 1e-6, rel_tol=1e-3)
    assert sphere.dist(x, -x) == torch.tensor(math.pi)  # pi rounded to float32, exactly


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_distance_has_finite_zero_gradient_on_the_diagonal(space, dtype):
    x = space.random(3, dtype=dtype, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    for fn in (space.dist, space.dist2):
        value = fn(x, x)
        (grad,) = torch.autograd.grad(value.sum(), x)
        assert torch.equal(value, torch.zeros_like(value))
        assert torch.isfinite(grad).all() and torch.equal(grad, torch.zeros_like(grad))


def test_torus_distance_is_smooth_and_translation_invariant():
    torus = Torus(2)
    theta = torch.tensor([[0.3, -2.0]], dtype=F64)
    phi = torch.tensor([[2.9, 3.1]], dtype=F64)
    expected = np.sqrt(np.sum(2 - 2 * np.cos((theta - phi).numpy())))
    assert float(torus.dist(torus.from_angles(theta), torus.from_angles(phi))) == pytest.approx(expected, rel=1e-14)
    shift = torch.tensor([[1.7, -0.4]], dtype=F64)
    shifted = torus.dist(torus.from_angles(theta + shift), torus.from_angles(phi + shift))
    assert float(shifted) == pytest.approx(expected, rel=1e-13)


def test_projection_lands_on_the_space(space):
    ambient = torch.randn(5, space.dim, dtype=F64) * 3
    space.check(space.project(ambient))
    on_space = space.random(5, dtype=F64)
    torch.testing.assert_close(space.project(on_space), on_space)


@pytest.mark.parametrize("space_cls", [Sphere, Torus, PoincareBall])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_projection_of_zero_tiny_and_huge_vectors_is_finite(space_cls, dtype):
    space = space_cls()
    magnitudes = torch.tensor([0.0, 1e-45, 1e-39, 1e-30, 1.0, 1e30], dtype=dtype)
    ambient = (magnitudes[:, None] * torch.linspace(1.0, 0.5, space.dim, dtype=dtype)).requires_grad_(True)
    projected = space.project(ambient)
    space.check(projected)
    for output in range(space.dim):  # every row of the Jacobian, not just its sum
        (grad,) = torch.autograd.grad(projected[:, output].sum(), ambient, retain_graph=True)
        assert torch.isfinite(grad).all()


def test_distances_refuse_keys_of_the_wrong_size():
    with pytest.raises(ValueError, match=r"Euclidean\(n=2\).*last axis of size 2"):
        Euclidean(2).dist(torch.ones(3), torch.zeros(3))
    with pytest.raises(ValueError, match=r"Sphere\(n=3.*last axis of size 3"):
        Sphere(3).dist2(torch.ones(5), torch.zeros(5))
    with pytest.raises(ValueError, match=r"Torus\(n=2\).*last axis of size 4"):
        Torus(2).project(torch.ones(3))


def test_sphere_projection_is_normalisation():
    x = torch.tensor([3.0, 0.0, 4.0], dtype=F64)
    torch.testing.assert_close(Sphere(3).project(x), torch.tensor([0.6, 0.0, 0.8], dtype=F64))


def test_random_and_origin_shapes_dtypes_and_generator(space):
    for dtype in (torch.float32, F64):
        points = space.random(2, 3, dtype=dtype, generator=torch.Generator().manual_seed(5))
        again = space.random(2, 3, dtype=dtype, generator=torch.Generator().manual_seed(5))
        assert points.shape == (2, 3, space.dim) and points.dtype == dtype
        assert torch.equal(points, again)
        space.check(points)
        origin = space.origin(4, dtype=dtype)
        assert origin.shape == (4, space.dim) and origin.dtype == dtype
        space.check(origin)


def test_check_rejects_points_off_the_space():
    with pytest.raises(ValueError, match=r"Sphere\(n=3.*not on the key space"):
        Sphere(3).check(torch.tensor([1.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match=r"Torus\(n=2\).*not on the key space"):
        Torus(2).check(torch.tensor([1.0, 0.0, 0.5, 0.5]))
    with pytest.raises(ValueError, match=r"Euclidean\(n=2\).*NaN"):
        Euclidean(2).check(torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match=r"last axis of size 3"):
        Sphere(3).check(torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"floating point"):
        Euclidean(2).check(torch.zeros(2, dtype=torch.long))


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: Euclidean(0), "key dimension"),
        (lambda: Sphere(1), "ambient dimension"),
        (lambda: Torus(0), "number of circles"),
        (lambda: PoincareBall(0), "dimension n"),
        (lambda: Sphere(3, distance="manhattan"), "unknown distance"),
    ],
)
def test_bad_construction_is_a_clear_error(factory, message):
    with pytest.raises(ValueError, match=message):
        factory()


def test_keys_follow_requested_device(space):
    meta = torch.device("meta")
    assert space.random(2, device=meta).device == meta
    assert space.origin(2, device=meta).device == meta
    generated = space.random(2, device=meta, generator=torch.Generator().manual_seed(0))
    assert generated.device == meta


def test_chordal_flag_says_when_dist2_is_the_squared_chord(space):
    """Readers use a fused kernel for |x - y|^2 when `chordal` is set, so the flag must never lie."""
    expected = {"euclidean": True, "sphere": True, "sphere-geodesic": False, "torus": True}
    expected |= {"poincare": False, "poincare-3": False}
    name = next(key for key, make in SPACES.items() if repr(make()) == repr(space))
    assert space.chordal is expected[name]
    x, y = space.random(6, dtype=F64), space.random(6, dtype=F64)
    chord2 = ((x - y) ** 2).sum(-1)
    assert torch.allclose(space.dist2(x, y), chord2) is space.chordal


def test_a_subclass_with_its_own_distance_is_not_chordal():
    class Warped(Euclidean):
        def dist2(self, x, y):
            return super().dist2(x, y) * 2

    class Geodesic(Sphere):
        def dist2(self, x, y):
            return self.dist(x, y).square() * 4

    assert Euclidean(2).chordal and not Warped(2).chordal
    assert Sphere(3).chordal and not Geodesic(3).chordal


def test_a_key_space_adds_no_parameters_or_state(space):
    """geoopt's Poincaré ball holds its curvature as a parameter; a key space must not pass it on to the model."""
    assert list(space.parameters()) == [] and space.state_dict() == {}
    assert list(groups.get("product", factors=["mobius", "se2"]).parameters()) == []
