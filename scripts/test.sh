#!/usr/bin/env bash
# Sets up the environment if needed, then runs the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python="$(bash scripts/setup.sh | tail -n 1)"
exec "$python" -m pytest -x -q "$@"
