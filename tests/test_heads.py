"""Head movement (paper 4.3 and appendix B) on hand-worked examples."""

from __future__ import annotations

import math

import pytest
import torch

import groups
from liemem.heads import HeadState, LieHeads


def test_translation_head_mixes_random_access_then_moves():
    heads = LieHeads(groups.get("translation"))
    state = HeadState(torch.tensor([[[1.0, 0.0]]]), torch.zeros(1, 1, 2))
    # random-access key (3, 4), action (3, 4), gate logit 0: g = 1/2.
    raw = torch.tensor([[[3.0, 4.0, 3.0, 4.0, 0.0]]])
    moved = heads.move(raw, state)
    mixed = torch.tensor([2.0, 2.0])  # (1/2) (1, 0) + (1/2) (3, 4)
    action = torch.tensor([3.0, 4.0]) / math.sqrt(26.0)  # a / sqrt(1 + |a|^2)
    torch.testing.assert_close(moved.position[0, 0], mixed + action)
    torch.testing.assert_close(moved.action[0, 0], action)


def test_closed_gate_follows_the_trail_and_open_gate_jumps():
    heads = LieHeads(groups.get("translation"))
    state = HeadState(torch.tensor([[[1.0, 0.0]]]), torch.zeros(1, 1, 2))
    shut = heads.move(torch.tensor([[[9.0, 9.0, 0.0, 0.0, -30.0]]]), state)
    torch.testing.assert_close(shut.position[0, 0], torch.tensor([1.0, 0.0]))
    opened = heads.move(torch.tensor([[[9.0, 9.0, 0.0, 0.0, 30.0]]]), state)
    torch.testing.assert_close(opened.position[0, 0], torch.tensor([9.0, 9.0]))


def test_sphere_head_projects_then_rotates_by_rodrigues():
    heads = LieHeads(groups.get("so3"))
    state = HeadState(torch.tensor([[[1.0, 0.0, 0.0]]]), heads.group.identity(1, 1))
    z = 0.5
    # Random-access key (0, 0, 2) -> e3 with the gate open; rotate about e1 by tanh(z).
    raw = torch.tensor([[[0.0, 0.0, 2.0, 1.0, 0.0, 0.0, z, 40.0]]])
    moved = heads.move(raw, state)
    theta = math.tanh(z)
    # Rodrigues with axis e1 on e3: e3 cos + (e1 x e3) sin = (0, -sin, cos).
    torch.testing.assert_close(moved.position[0, 0], torch.tensor([0.0, -math.sin(theta), math.cos(theta)]))


def test_action_interpolation_is_the_straight_line_for_translations():
    heads = LieHeads(groups.get("translation"), action_interpolation=True)
    state = HeadState(torch.zeros(1, 1, 2), torch.tensor([[[1.0, 0.0]]]))
    # New candidate action 0 (raw 0), action gate logit 0: r = 1/2, so a = (1/2) a_prev.
    raw = torch.tensor([[[0.0, 0.0, 0.0, 0.0, -30.0, 0.0]]])
    moved = heads.move(raw, state)
    torch.testing.assert_close(moved.action[0, 0], torch.tensor([0.5, 0.0]))
    torch.testing.assert_close(moved.position[0, 0], torch.tensor([0.5, 0.0]))


@pytest.mark.parametrize("name", ["so3", "se2", "torus", "so2"])
def test_heads_stay_on_the_key_space(name):
    group = groups.get(name)
    heads = LieHeads(group, action_interpolation=True)
    state = heads.initial_state(group.key_space.random(2), batch=5)
    for _ in range(20):
        state = heads.move(3 * torch.randn(5, 2, heads.raw_size), state)
    group.key_space.check(state.position)
    group.check(state.action)


def test_heads_need_a_lie_group():
    with pytest.raises(TypeError, match="LieGroup"):
        LieHeads("translation")
