"""Package-wide rules: imports point one way (manifolds <- groups <- liemem), and public API is documented."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["manifolds", "groups", "liemem"]


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("layer", LAYERS)
def test_imports_point_one_way(layer):
    forbidden = set(LAYERS[LAYERS.index(layer) + 1 :])
    for path in (ROOT / layer).rglob("*.py"):
        assert not imported_top_levels(path) & forbidden, f"{path.relative_to(ROOT)} imports a higher layer"


def public_objects():
    for layer in LAYERS:
        package = importlib.import_module(layer)
        yield layer, package
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{layer}."):
            if info.name.rsplit(".", 1)[-1].startswith("_"):
                continue
            module = importlib.import_module(info.name)
            yield info.name, module
            for name, obj in vars(module).items():
                if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                    continue
                if inspect.isclass(obj) or inspect.isfunction(obj):
                    yield f"{info.name}.{name}", obj
                if inspect.isclass(obj):
                    for attr, member in vars(obj).items():
                        if not attr.startswith("_") and inspect.isfunction(member) and attr != "extra_repr":
                            yield f"{info.name}.{name}.{attr}", inspect.getattr_static(obj, attr)


def test_every_public_module_class_and_method_has_a_docstring():
    missing = [name for name, obj in public_objects() if not (inspect.getdoc(obj) or "").strip()]
    assert not missing, f"no docstring: {missing}"
