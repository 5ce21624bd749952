"""Plane and sphere coordinates for drawing points of any key space.

`chart(key_space, points)` picks a view by the key space's type: keys of one or two coordinates (R, R^2, a
circle S^1 or T^1) as they are, S^2 as a sphere in 3-D, the Poincaré disk as a disk and the 3-ball inside its
sphere, the 2- and 3-torus by their angles, and anything else by
its first two principal components; a key space of a user's own gets the same rules by its number of coordinates.
A key space that wants another view registers one: `@chart.register(MyKeySpace)`. Coordinates are NumPy float64.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np

import manifolds


class Chart(NamedTuple):
    """Points `[N, k]` with k of 1 (drawn against time), 2 or 3 (a 3-D view), and how to draw them."""

    coords: np.ndarray
    labels: tuple[str, ...]  # axis labels, one per coordinate
    sphere: bool = False  # draw the unit sphere under the points
    disk: bool = False  # draw the unit circle, the Poincaré disk's boundary, and circles of hyperbolic radius
    period: float | None = None  # every axis is an angle: a line crossing the seam is broken there

    @property
    def three_d(self) -> bool:
        """Whether the view needs 3-D axes."""
        return self.coords.shape[1] == 3


def principal_components(points: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The points' coordinates `[N, count]` along their first `count` principal axes, and each axis's share of
    the variance. Axes beyond the points' rank get zero coordinates; each axis's sign makes its largest
    loading positive, so the same points always give the same picture."""
    points = np.asarray(points, dtype=np.float64)
    centered = points - points.mean(axis=0)
    _, singular, axes = np.linalg.svd(centered, full_matrices=False)
    axes = axes[:count]
    signs = np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])
    axes = axes * np.where(signs == 0, 1.0, signs)[:, None]
    coords = np.zeros((len(points), count))
    coords[:, : len(axes)] = centered @ axes.T
    variance = singular**2
    total = variance.sum()
    shares = np.zeros(count)
    if total > 0:
        shares[: len(axes)] = variance[:count] / total
    return coords, shares


def _as_they_are(points: np.ndarray) -> Chart:
    return Chart(points, tuple(f"k{i + 1}" for i in range(points.shape[1])))


def _by_pca(points: np.ndarray) -> Chart:
    coords, shares = principal_components(points, 2)
    return Chart(coords, tuple(f"PC{i + 1} ({100 * share:.0f}%)" for i, share in enumerate(shares)))


@functools.singledispatch
def chart(key_space, points: np.ndarray) -> Chart:
    """Coordinates to draw `points` (`[N, key_space.dim]`) of `key_space`; see the module docstring."""
    points = np.asarray(points, dtype=np.float64)
    return _as_they_are(points) if points.shape[1] <= 2 else _by_pca(points)


@chart.register
def _(key_space: manifolds.Sphere, points: np.ndarray) -> Chart:
    points = np.asarray(points, dtype=np.float64)
    if points.shape[1] == 3:
        return Chart(points, ("x", "y", "z"), sphere=True)
    return chart.dispatch(manifolds.KeySpace)(key_space, points)


@chart.register
def _(key_space: manifolds.Torus, points: np.ndarray) -> Chart:
    points = np.asarray(points, dtype=np.float64)
    if key_space.n in (2, 3):
        pairs = points.reshape(len(points), key_space.n, 2)
        angles = np.arctan2(pairs[..., 1], pairs[..., 0])
        return Chart(angles, tuple(f"θ{i + 1}" for i in range(key_space.n)), period=2 * math.pi)
    return chart.dispatch(manifolds.KeySpace)(key_space, points)


@chart.register
def _(key_space: manifolds.PoincareBall, points: np.ndarray) -> Chart:
    points = np.asarray(points, dtype=np.float64)
    if points.shape[1] == 2:
        return Chart(points, ("Re z", "Im z"), disk=True)
    if points.shape[1] == 3:
        return Chart(points, ("x", "y", "z"), sphere=True)
    return chart.dispatch(manifolds.KeySpace)(key_space, points)
