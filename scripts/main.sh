#!/usr/bin/env bash
# Sets up the environment if needed, then runs liemem's main job.
set -euo pipefail
cd "$(dirname "$0")/.."
python="$(bash scripts/setup.sh | tail -n 1)"
exec "$python" -m liemem.demo "$@"
