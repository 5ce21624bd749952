#!/usr/bin/env bash
# Prepares the Python environment liemem runs in and prints the path of its interpreter on the last line.
#
# Inside an activated virtual environment, liemem installs into it. Otherwise it makes ./.venv; if the system
# Python already has torch (a CUDA build, say), the venv sees it and keeps it. Only when no torch is found is
# torch 2.13.0 installed; pip takes a local wheel when one is configured (a CPU build, on CI), else PyPI's.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${VIRTUAL_ENV:-}" ]; then
    python="$VIRTUAL_ENV/bin/python"
else
    venv=.venv
    if [ ! -x "$venv/bin/python" ]; then
        if python3 -c "import torch" >/dev/null 2>&1; then
            python3 -m venv --system-site-packages "$venv" >&2
        else
            python3 -m venv "$venv" >&2
        fi
    fi
    python="$venv/bin/python"
fi

pip() { "$python" -m pip --disable-pip-version-check "$@" >&2; }

if ! "$python" -c "import torch" >/dev/null 2>&1; then
    pip install -q "torch==2.13.0"
fi

# Reinstall only when the project's requirements change.
stamp="$("$python" -c 'import sys; print(sys.prefix)')/.liemem-installed"
wanted="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
    pip install -q -e ".[dev]"
    echo "$wanted" >"$stamp"
fi
echo "$python"
