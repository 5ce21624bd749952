"""Shared test setup: hypothesis profiles, the group cases every property test runs over, and extra groups.

Every group in the registry is tested, so a group added by subclassing is checked with no test edits. The
suite loads `examples/custom_group.py`; `--group-module MODULE_OR_PATH` (repeatable) loads more.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

import groups

ROOT = Path(__file__).resolve().parents[1]

settings.register_profile(
    "default", max_examples=50, deadline=None, suppress_health_check=[HealthCheck.differing_executors]
)
settings.register_profile(
    "thorough", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.differing_executors]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# Variants of the built-in groups beyond their defaults (which the registry loop covers).
GROUP_VARIANTS = {
    "translation-n1": lambda: groups.get("translation", n=1),
    "translation-n3": lambda: groups.get("translation", n=3),
    "torus-n1": lambda: groups.get("torus", n=1),
    "torus-n3": lambda: groups.get("torus", n=3),
    "so3-bounded": lambda: groups.get("so3", angle_bound=True),
    "so3-geodesic": lambda: groups.get("so3", distance="geodesic"),
    "se2-bounded": lambda: groups.get("se2", angle_bound=True),
    "mobius-bounded": lambda: groups.get("mobius", angle_bound=True),
    "product-mobius-translation": lambda: groups.get("product", factors=["mobius", {"name": "translation", "n": 1}]),
    "product-torus-translation": lambda: groups.get("product", factors=["torus", {"name": "translation", "n": 1}]),
    "product-se3-so3": lambda: groups.get("product", factors=["se3", {"name": "so3", "angle_bound": True}]),
}


def pytest_addoption(parser):
    parser.addoption(
        "--group-module",
        action="append",
        default=[],
        help="import this module (dotted name or .py path) so that the groups it registers are tested too",
    )


def _load(spec: str) -> None:
    if spec.endswith(".py"):
        path = Path(spec) if Path(spec).is_absolute() else ROOT / spec
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        importlib.import_module(spec)


def pytest_configure(config):
    for spec in ["examples/custom_group.py", *config.getoption("--group-module")]:
        _load(spec)


def group_cases() -> dict[str, callable]:
    """Every registered group with default arguments, plus the variants above."""
    cases = {name: (lambda name=name: groups.get(name)) for name in groups.names()}
    cases.update(GROUP_VARIANTS)
    return cases


def pytest_generate_tests(metafunc):
    if "group" in metafunc.fixturenames:
        cases = group_cases()
        metafunc.parametrize("group", [case() for case in cases.values()], ids=list(cases))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
