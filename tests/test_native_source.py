"""The C++ kernels' source is kept in the style of `.clang-format`, as the Python is kept by ruff."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "liemem" / "engine" / "native").glob("*.cpp"))


def test_the_kernels_source_is_formatted():
    # The interpreter's own scripts first: pip puts clang-format there, on PATH only in an activated environment.
    formatter = shutil.which(
        "clang-format", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])
    )
    if formatter is None:
        pytest.skip("clang-format is not installed (pip install 'liemem[dev]')")
    assert SOURCES, "no C++ source found"
    for source in SOURCES:
        formatted = subprocess.run(
            [formatter, f"--style=file:{ROOT / '.clang-format'}", str(source)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert formatted == source.read_text(), f"{source.name} is not formatted: run clang-format -i on it"
