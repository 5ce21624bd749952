"""The per-step 1-D view of a Lie-access machine's memory (paper, figure 2a).

Keys and read positions are projected on their first principal axis. Row t is step t, top to bottom: on an
input row, the key written then (filled by its strength, black is strong) and, faintly, the read head; on an
answer row, the read head, over thin lines at every key's position so one sees which slot it reads.
"""

from __future__ import annotations

import numpy as np

from .charts import principal_components
from .recording import MemoryRecording
from .trail import READ_COLOR, STRENGTH_COLORS, WRITE_COLOR, _require_trail

MAX_TICK_LABELS = 64  # one tick label per row up to this many rows


def plot_timeline(ax, recording: MemoryRecording):
    """Draw the per-step 1-D PCA view on `ax`; returns `ax`."""
    _require_trail(recording)
    slots, inputs = len(recording.keys), recording.input_length
    coords, shares = principal_components(np.concatenate((recording.keys, recording.read_positions)), 1)
    keys, reads = coords[:slots, 0], coords[slots:, 0]
    if slots > 2 and keys[-1] < keys[1]:  # orient the axis so that writing proceeds left to right
        keys, reads = -keys, -reads
    steps = len(reads)
    rows = np.arange(steps)

    ax.vlines(keys[1:], inputs - 0.5, steps - 0.5, colors="#bbbbbb", linewidths=0.5, zorder=1)
    ax.axhline(inputs - 0.5, color="#888888", linewidth=0.6, linestyle="--", zorder=1)
    ax.scatter(reads[:inputs], rows[:inputs], s=10, color=READ_COLOR, alpha=0.35, zorder=2, label="read head")
    ax.scatter(reads[inputs:], rows[inputs:], s=22, color=READ_COLOR, zorder=3)
    faces = STRENGTH_COLORS(np.clip(recording.strengths[1:], 0.0, 1.0))
    ax.scatter(keys[1:], rows[:inputs], s=42, c=faces, edgecolors=WRITE_COLOR, zorder=4, label="write (fill: strength)")

    ax.set_ylim(steps - 0.5, -0.5)  # time runs down, as in the paper
    if steps <= MAX_TICK_LABELS:
        ax.set_yticks(rows, recording.inputs[: recording.input_length] + recording.predicted, fontsize=6)
    ax.set_ylabel("step: input symbol, then the answer emitted")
    ax.set_xlabel(f"1st principal axis of key space ({100 * shares[0]:.0f}% of variance)")
    ax.set_title("keys and heads per step (1-D PCA)", fontsize=10)
    ax.legend(loc="best", fontsize=7, framealpha=0.8)
    return ax
