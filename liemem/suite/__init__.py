"""Suites of runs: a grid of tasks x models x regimes x seeds trained from a preset, each run in its own
directory and recorded as one small JSON file, and a report that sets the records beside the paper's table 1b.

    liemem suite --models lantm slantm --regimes small --seeds 1 2 3 --out runs/suite --results results/t1b
    liemem suite --report results/t1b

`plan` lists the cells, `run_suite` runs them (resuming, in parallel, or on a Ray cluster), `write_report`
writes `table.md` and a figure from the records alone.
"""

from .plan import PAPER_MODELS, PAPER_TASKS, Cell, four_times_lengths, plan
from .runner import pending_cells, run_cell, run_suite

__all__ = [
    "PAPER_MODELS",
    "PAPER_TASKS",
    "Cell",
    "four_times_lengths",
    "pending_cells",
    "plan",
    "run_cell",
    "run_suite",
]
