"""Building groups by name, and the errors for names and arguments that do not exist."""

from __future__ import annotations

import math

import pytest
import torch

import groups
from groups import LieGroup
from manifolds import Euclidean


def test_builtin_names():
    assert {"translation", "so3", "se2", "torus"} <= set(groups.names())
    assert groups.get("translation", n=5).algebra_dim == 5
    assert groups.get("torus", n=4).key_space.dim == 8


def test_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match=r"unknown group 'so4'; known groups: .*se2.*so3.*torus.*translation"):
        groups.get("so4")


def test_bad_argument_names_it_and_lists_valid_ones():
    with pytest.raises(ValueError, match=r"'so3' does not take argument\(s\) 'n'; it takes: angle_bound, distance"):
        groups.get("so3", n=3)


@pytest.mark.parametrize(
    ("name", "kwargs"), [("translation", {"n": 0}), ("torus", {"n": -1}), ("so3", {"distance": "l1"})]
)
def test_bad_argument_values(name, kwargs):
    with pytest.raises(ValueError, match=r"(n|distance)"):
        groups.get(name, **kwargs)


def test_subclass_registers_itself_and_name_clash_is_refused():
    class Scaling(LieGroup, name="test-scaling-shift"):
        def __init__(self):
            super().__init__(Euclidean(1), algebra_dim=1, element_shape=(1,), controller_dim=1)

        def exp(self, xi):
            return xi

        log = exp

        def compose(self, g, h):
            return g + h

        def inverse(self, g):
            return -g

        def act(self, g, x):
            return x + g

        def from_controller(self, raw):
            return torch.tanh(raw)

    assert isinstance(groups.get("test-scaling-shift"), Scaling)
    assert groups.get("test-scaling-shift").injectivity_radius == math.inf
    with pytest.raises(ValueError, match="already taken"):

        class Other(Scaling, name="test-scaling-shift"):
            pass


def test_same_name_from_another_module_is_refused_and_abstract_classes_are_not_registered():
    namespace = {"__name__": "someone_elses_module"}
    code = "from groups import Translation\nclass SO3(Translation, name='so3'):\n    pass\n"
    with pytest.raises(ValueError, match=r"'so3' is already taken by groups.so3.SO3"):
        exec(code, namespace)
    assert type(groups.get("so3")).__module__ == "groups.so3"
    with pytest.raises(TypeError, match=r"abstract group Half.*exp"):

        class Half(LieGroup, name="test-half"):
            def log(self, g):
                return g

    assert "test-half" not in groups.names()


def test_custom_group_example_is_registered():
    so2 = groups.get("so2")  # loaded by conftest from examples/custom_group.py
    quarter = so2.exp(torch.tensor([math.pi / 2], dtype=torch.float64))
    torch.testing.assert_close(
        so2.act(quarter, torch.tensor([1.0, 0.0], dtype=torch.float64)), torch.tensor([0.0, 1.0], dtype=torch.float64)
    )


@pytest.mark.parametrize("op", ["exp", "log", "act", "from_controller"])
def test_wrong_trailing_shape_is_a_clear_error(op):
    so3 = groups.get("so3")
    calls = {
        "exp": lambda: so3.exp(torch.zeros(2, 4)),
        "log": lambda: so3.log(torch.zeros(2, 3)),
        "act": lambda: so3.act(so3.identity(2), torch.zeros(2, 2)),
        "from_controller": lambda: so3.from_controller(torch.zeros(3)),
    }
    with pytest.raises(ValueError, match=r"SO3\(.*\).*shape"):
        calls[op]()
