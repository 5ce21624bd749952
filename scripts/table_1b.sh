#!/usr/bin/env bash
# Runs the Table 1b suite into results/table-1b, resuming wherever it stopped, then writes its report:
#   1. all 112 cells with the paper presets, seed 1 (the Lie-access models first, then the LSTM, RAM, RAM/tape);
#   2. seeds 2 and 3 for every cell more than 5 coarse points below the paper (the paper took the best of 1-3);
#   3. the four Lie-access models on the eight tasks, small regime, with liemem's own defaults, one run.
# Two runs at a time, one torch thread each. Hours of CPU: run it in the background; kill and rerun at will.
#   bash scripts/table_1b.sh [RUNS_DIR]   (default runs/table-1b; RESULTS=DIR and PYTHON=INTERPRETER override)
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-$(bash scripts/setup.sh | tail -n 1)}"
runs="${1:-runs/table-1b}"
results="${RESULTS:-results/table-1b}"
suite() { "$python" -m liemem suite --out "$runs" --results "$results" --workers 2 "$@"; }

suite --seeds 1
suite --seeds 2 3 --only-below-paper 5
suite --preset defaults --models lantm lantm-s slantm slantm-s --regimes small --seeds 1
"$python" -m liemem suite --report "$results"
