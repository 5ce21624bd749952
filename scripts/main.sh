#!/usr/bin/env bash
# Sets up the environment if needed, then runs liemem's main job: LANTM trained on copy (lengths 2-8), scored
# at twice the training length. Extra arguments go to `liemem train` (--device cuda, say).
set -euo pipefail
cd "$(dirname "$0")/.."
python="$(bash scripts/setup.sh | tail -n 1)"
out=runs/quickstart
rm -rf "$out"  # a fresh run each time, not a resumed one
exec "$python" -m liemem train --config examples/configs/quickstart.toml --out "$out" "$@"
