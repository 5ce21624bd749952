"""A user-defined Lie group: planar rotations SO(2) acting on the unit circle.

Subclassing `LieGroup` with a name is all it takes: the class registers itself as "so2", so that
`groups.get("so2")` builds it and liemem's property suite checks it (the suite loads this file). Run it to
see a head walk around the circle:

    python examples/custom_group.py
"""

from __future__ import annotations

import math

import torch

from groups import LieGroup
from manifolds import Sphere


class SO2(LieGroup, name="so2"):
    """Rotations of the plane, stored as unit complex numbers (cos theta, sin theta), acting on S^1."""

    def __init__(self):
        super().__init__(Sphere(2), algebra_dim=1, element_shape=(2,), controller_dim=1, injectivity_radius=math.pi)

    def exp(self, xi):
        """The rotation by angle xi[..., 0]."""
        return torch.cat((torch.cos(xi), torch.sin(xi)), dim=-1)

    def log(self, g):
        """The angle of g in (-pi, pi]."""
        return torch.atan2(g[..., 1:], g[..., :1])

    def compose(self, g, h):
        """Complex multiplication: angles add."""
        cos = g[..., 0] * h[..., 0] - g[..., 1] * h[..., 1]
        sin = g[..., 1] * h[..., 0] + g[..., 0] * h[..., 1]
        return torch.stack((cos, sin), dim=-1)

    def inverse(self, g):
        """The complex conjugate."""
        return torch.stack((g[..., 0], -g[..., 1]), dim=-1)

    def act(self, g, x):
        """Rotate points of the circle; rotating a unit vector is the same complex multiplication."""
        return self.compose(g, x)

    def from_controller(self, raw):
        """A rotation by tanh(raw) radians: bounded steps, as the paper's rotation heads take."""
        return self.exp(torch.tanh(raw))


if __name__ == "__main__":
    import groups

    so2 = groups.get("so2")
    step = so2.from_controller(torch.tensor([2.0]))
    head = so2.key_space.origin()
    for t in range(5):
        print(f"step {t}: head at angle {math.degrees(math.atan2(head[1], head[0])):7.2f} deg")
        head = so2.act(step, head)
