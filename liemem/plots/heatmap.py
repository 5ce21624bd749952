"""Read weights as a heatmap, answer steps by memory slots, for every model with a memory.

Columns are the memory's slots, labelled (when few enough to read) with the symbol the writes left there;
rows are the answer steps, labelled with the symbol each should emit.
"""

from __future__ import annotations

from .recording import MemoryRecording

MAX_TICK_LABELS = 48  # symbol labels on an axis up to this many rows or columns; plain indices beyond


def plot_read_weights(ax, recording: MemoryRecording, head: int = 0, answer_only: bool = True):
    """Draw read head `head`'s weights (answer steps only, or every step) on `ax`; returns `ax`."""
    if recording.read_weights is None:
        raise TypeError("read weights need a model with a memory: this recording has none")
    heads = recording.read_weights.shape[1]
    if not 0 <= head < heads:
        raise ValueError(f"read head {head} does not exist: the model has {heads} read head(s)")
    first = recording.input_length if answer_only else 0
    weights = recording.read_weights[first:, head]
    image = ax.imshow(weights, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.figure.colorbar(image, ax=ax, label="read weight", fraction=0.05, pad=0.02)

    rows, slots = weights.shape
    labels = recording.slot_labels()
    if slots <= MAX_TICK_LABELS and any(labels):
        ax.set_xticks(range(slots), labels, fontsize=6, rotation=90)
        ax.set_xlabel("memory slot (symbol written there)")
    else:
        ax.set_xlabel("memory slot")
    steps = recording.targets if answer_only else recording.inputs[: recording.input_length] + recording.targets
    if rows <= MAX_TICK_LABELS:
        ax.set_yticks(range(rows), steps, fontsize=6)
        ax.set_ylabel("answer step (target symbol)" if answer_only else "step (symbol)")
    else:
        ax.set_ylabel("answer step" if answer_only else "step")
    suffix = f", read head {head}" if heads > 1 else ""
    ax.set_title(f"read weights{suffix}", fontsize=10)
    return ax
