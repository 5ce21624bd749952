"""Pictures of what a memory learned: head trails in key space, the per-step 1-D view, read-weight heatmaps
and learning curves, drawn with matplotlib's object API (no pyplot), so they work headless.

`plot_run(run_dir, out)` draws a trained run, as `liemem plot` does; `record(model, task, inputs, targets)` and
the `plot_*` functions draw any model on any example into axes of your own.
"""

from .charts import Chart, chart, principal_components
from .curves import curves, plot_learning_curves
from .heatmap import plot_read_weights
from .recording import MemoryRecording, record
from .run import FORMATS, KINDS, draw, plot_run
from .timeline import plot_timeline
from .trail import plot_trail, trail_chart, trail_panels

__all__ = [
    "FORMATS",
    "KINDS",
    "Chart",
    "MemoryRecording",
    "chart",
    "curves",
    "draw",
    "plot_learning_curves",
    "plot_read_weights",
    "plot_run",
    "plot_timeline",
    "plot_trail",
    "principal_components",
    "record",
    "trail_chart",
    "trail_panels",
]
