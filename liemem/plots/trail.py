"""Key-space trails of a Lie-access machine's heads (paper, figures 2b, 3 and 4).

The write head (red) leaves one memory slot per input step: a circle filled by its strength (black is strong)
and labelled with the symbol stored. The read head (blue) is drawn solid over the answer steps and dotted over
the input steps. The view comes from `charts.chart`, so any key space, a user's included, can be drawn; a
product of key spaces is drawn factor by factor, one panel each (`trail_panels`).
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib import colormaps

import manifolds

from .charts import Chart, chart
from .recording import MemoryRecording

WRITE_COLOR, READ_COLOR = "#d62728", "#1f77b4"
MAX_LABELS = 48  # more slot labels than this overlap; every k-th is labelled instead
STRENGTH_COLORS = colormaps["Greys"]


def trail_chart(recording: MemoryRecording) -> Chart:
    """The view of the recording's keys and read positions, in that order (keys first)."""
    _require_trail(recording)
    points = np.concatenate((recording.keys, recording.read_positions))
    view = chart(recording.key_space, points)
    shape = np.shape(view.coords)
    if len(shape) != 2 or shape[0] != len(points) or not 1 <= shape[1] <= 3:
        raise ValueError(
            f"the chart of {recording.key_space!r} gave coordinates of shape {shape}; "
            f"a view needs one row per point and 1 to 3 columns, here [{len(points)}, 1-3]"
        )
    return view


def trail_panels(recording: MemoryRecording) -> list[tuple[MemoryRecording, Chart, str]]:
    """What a trail picture draws, as (recording, view, title) per panel: one panel for most key spaces, and one
    per factor for a `ProductSpace` without a chart of its own, each in its factor's view (S^2 x R: the sphere,
    and the line against time), so that no principal plane mixes the factors' coordinates."""
    _require_trail(recording)
    space = recording.key_space
    own_chart = chart.dispatch(type(space)) is not chart.dispatch(manifolds.KeySpace)
    if not isinstance(space, manifolds.ProductSpace) or own_chart:
        return [(recording, trail_chart(recording), f"head trails in {space!r}")]
    panels = []
    ends = np.cumsum(space.sizes)
    for index, (factor, end) in enumerate(zip(space.factors, ends, strict=True)):
        part = slice(end - factor.dim, end)
        factor_recording = recording._replace(
            key_space=factor,
            keys=recording.keys[:, part],
            read_positions=recording.read_positions[:, part],
            write_positions=None if recording.write_positions is None else recording.write_positions[:, part],
        )
        title = f"factor {index + 1} of {len(ends)}\n{factor!r}"
        panels.append((factor_recording, trail_chart(factor_recording), title))
    return panels


def _require_trail(recording: MemoryRecording) -> None:
    if not recording.lie_access:
        raise TypeError("a key-space trail needs a Lie-access model: this recording has no head positions")


def _broken_at_seam(coords: np.ndarray, period: float | None) -> np.ndarray:
    """Insert a NaN row where consecutive angles jump by more than half a period, so no line crosses the seam."""
    if period is None or len(coords) < 2:
        return coords
    jumps = np.abs(np.diff(coords, axis=0)).max(axis=1) > period / 2
    pieces = np.split(coords, np.flatnonzero(jumps) + 1)
    gap = np.full((1, coords.shape[1]), np.nan)
    return np.concatenate([part for piece in pieces for part in (piece, gap)][:-1])


def _line(ax, coords: np.ndarray, view: Chart, **style):
    coords = _broken_at_seam(coords, view.period)
    return ax.plot(*coords.T, **style)


def plot_trail(ax, recording: MemoryRecording, view: Chart | None = None, title: str | None = None):
    """Draw the heads' trails on `ax` (a 3-D axes when `trail_chart(recording).three_d`); returns `ax`.

    Keys of one coordinate are drawn against time: slot t + 1 on row t, where input step t wrote it, and the read
    head on the row of each step, time running down.
    """
    _require_trail(recording)
    view = trail_chart(recording) if view is None else view
    if view.three_d != (getattr(ax, "name", None) == "3d"):
        wanted = "a 3-D axes (projection='3d')" if view.three_d else "2-D axes"
        raise ValueError(f"plot_trail: the view of {recording.key_space!r} needs {wanted}")
    slots, steps = len(recording.keys), recording.input_length
    keys, reads = view.coords[:slots], view.coords[slots:]
    labels = view.labels
    if view.coords.shape[1] == 1:
        keys = np.column_stack((keys[:, 0], np.arange(-1, slots - 1)))
        reads = np.column_stack((reads[:, 0], np.arange(len(reads))))
        labels = (labels[0], "step")
        ax.invert_yaxis()
    if view.sphere:
        _draw_sphere(ax)
    if view.disk:
        _draw_disk(ax)
    _line(ax, keys[1:], view, color=WRITE_COLOR, linewidth=1.2, label="write head")
    # Markers too: where the seam breaks the line into single points, a line alone would draw nothing.
    _line(
        ax, reads[: steps + 1], view, color=READ_COLOR, linewidth=0.8, linestyle=":", marker=".", markersize=2,
        label="read head (input)",
    )  # fmt: skip
    _line(
        ax, reads[steps:], view, color=READ_COLOR, linewidth=1.4, marker=".", markersize=4, label="read head (answer)"
    )
    faces = STRENGTH_COLORS(np.clip(recording.strengths, 0.0, 1.0))
    edges = ["#999999"] + [WRITE_COLOR] * (slots - 1)  # slot 0 is the initial slot, not a write
    ax.scatter(*keys.T, s=42, c=faces, edgecolors=edges, linewidths=1.0, zorder=3, label="memory (fill: strength)")
    if len(reads) > steps:
        ax.scatter(*reads[steps].T, s=70, facecolors="none", edgecolors=READ_COLOR, linewidths=1.5, zorder=4)
    names = recording.slot_labels()
    every = max(1, math.ceil((slots - 1) / MAX_LABELS))
    # Labels sit beside their circle on a pale box, readable over dark fills and lines alike.
    box = {"boxstyle": "round,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.7}
    for slot in range(1, slots, every):
        if view.three_d:
            ax.text(*keys[slot], f"  {names[slot]}", fontsize=7, color="#222222", zorder=5)
        else:
            ax.annotate(
                names[slot], keys[slot], xytext=(4, 4), textcoords="offset points", fontsize=7, color="#222222",
                bbox=box, zorder=5,
            )  # fmt: skip
    if view.period is not None:
        for axis in "xyz"[: view.coords.shape[1]]:
            getattr(ax, f"set_{axis}lim")(-math.pi, math.pi)
    if view.sphere:
        ax.set_box_aspect((1, 1, 1))
        for setter in (ax.set_xlim, ax.set_ylim, ax.set_zlim):
            setter(-1.05, 1.05)
    elif view.three_d:
        ax.set_box_aspect((1, 1, 1))
    elif view.disk:
        ax.set_aspect("equal", adjustable="box")
        ax.set_xlim(-1.05, 1.05)
        ax.set_ylim(-1.05, 1.05)
    elif view.coords.shape[1] == 2:  # angles keep their fixed range; planes grow their limits to keep the aspect
        ax.set_aspect("equal", adjustable="box" if view.period is not None else "datalim")
    for axis, label in zip("xyz", labels, strict=False):
        getattr(ax, f"set_{axis}label")(label)
    ax.set_title(f"head trails in {recording.key_space!r}" if title is None else title, fontsize=10)
    ax.legend(loc="best", fontsize=7, framealpha=0.8)
    return ax


def _draw_sphere(ax) -> None:
    u, v = np.meshgrid(np.linspace(0, 2 * np.pi, 25), np.linspace(0, np.pi, 13))
    ax.plot_wireframe(np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v), color="#dddddd", linewidth=0.4)


# Hyperbolic radii of the guide circles drawn in the Poincaré disk: equal steps in distance crowd towards the edge.
DISK_GUIDE_RADII = (1.0, 2.0, 3.0, 4.0, 6.0)


def _draw_disk(ax) -> None:
    """The unit circle, and circles about the centre at the hyperbolic radii of `DISK_GUIDE_RADII`, labelled."""
    angle = np.linspace(0, 2 * np.pi, 200)
    ax.plot(np.cos(angle), np.sin(angle), color="#888888", linewidth=1.0)
    for index, radius in enumerate(DISK_GUIDE_RADII):
        euclidean = math.tanh(radius / 2)  # a point at Euclidean norm tanh(d / 2) lies at distance d
        ax.plot(euclidean * np.cos(angle), euclidean * np.sin(angle), color="#dddddd", linewidth=0.5, zorder=0)
        at = 1.0 + 0.15 * index  # labels step round the circle: the outer circles crowd together
        ax.annotate(f"d={radius:g}", (euclidean * math.cos(at), euclidean * math.sin(at)), fontsize=6,
                    color="#aaaaaa")  # fmt: skip
