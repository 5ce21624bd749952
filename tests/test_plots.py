"""Plots: key-space charts against hand-computed coordinates, access traces against the read formula, and every
kind of picture rendered to a valid, non-blank image of the expected size, for every model and every group."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import groups
import manifolds
from liemem import build_model, tasks
from liemem.cli import main
from liemem.config import ConfigError
from liemem.models import LANTMConfig, LieAccessMachine
from liemem.plots import (
    KINDS,
    Chart,
    MemoryRecording,
    chart,
    curves,
    draw,
    plot_read_weights,
    plot_run,
    plot_timeline,
    plot_trail,
    principal_components,
    record,
)
from liemem.plots.trail import DISK_GUIDE_RADII, READ_COLOR, WRITE_COLOR, _broken_at_seam
from liemem.training import CheckpointError, TrainConfig, train
from liemem.training.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[1]
TINY_RUN = dict(
    task="copy", train_lengths=(2, 4), test_lengths=(5, 6), eval_samples=16, device="cpu", steps=6, eval_every=3,
    checkpoint_every=3, log_every=1,
)  # fmt: skip


def hex_rgb(color: str) -> np.ndarray:
    return np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)])


def load_image(path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB")).astype(int)


def assert_valid_image(path, width: int, height: int, colors: tuple[str, ...] = (), ink: float = 0.02) -> None:
    """A PNG of `width` x `height` pixels with real content: much of it not background, many shades, and
    each of `colors` drawn on a visible number of pixels."""
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (width, height)
    pixels = load_image(path)
    assert (pixels.min(axis=2) < 240).mean() > ink, "the image is (almost) blank"
    packed = (pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2]
    assert len(np.unique(packed)) > 50
    for color in colors:
        near = (np.abs(pixels - hex_rgb(color)).max(axis=2) <= 12).sum()
        assert near >= 30, f"colour {color} is drawn on only {near} pixels"


def save(figure, path) -> Path:
    figure.savefig(path, format="png")
    return path


def copy_example(size=5, seed=0):
    task = tasks.get("copy")
    (examples,) = tasks.get("copy").sample((size, size), 1, np.random.default_rng(seed))
    inputs, targets = task.encode(examples)
    return task, inputs[0], targets[0]


# ---- charts -------------------------------------------------------------------------------------------------


def test_the_plane_is_drawn_as_it_is():
    points = np.array([[0.0, 1.0], [2.0, -3.0]])
    view = chart(manifolds.Euclidean(2), points)
    assert view.labels == ("k1", "k2") and not view.sphere and view.period is None
    np.testing.assert_array_equal(view.coords, points)


def test_a_line_is_drawn_against_time():
    task, inputs, targets = copy_example(size=4)
    model = LieAccessMachine(task.vocab_size, LANTMConfig(group="translation", group_options={"n": 1}))
    recording = record(model, task, inputs, targets)
    view = chart(model.key_space, np.array([[1.5], [-2.0]]))
    assert view.labels == ("k1",)
    np.testing.assert_array_equal(view.coords, [[1.5], [-2.0]])
    ax = draw("trail", recording, []).axes[0]
    # <start> a b c d <sep>: 5 input steps write slots 1-5 on rows 0-4; the separator's step, row 5, is the first
    # answer step and writes nothing.
    written = len(inputs) - 1
    assert written == 5 and recording.keys.shape == (written + 1, 1)
    writes = np.column_stack(ax.lines[0].get_data())
    np.testing.assert_allclose(writes, np.column_stack((recording.keys[1:, 0], np.arange(written))))
    assert ax.get_ylabel() == "step" and ax.yaxis_inverted()
    reads = np.column_stack(ax.lines[2].get_data())
    steps = np.arange(written, written + len(targets))
    np.testing.assert_allclose(reads, np.column_stack((recording.read_positions[written:, 0], steps)))


def test_the_two_sphere_is_drawn_in_three_dimensions():
    points = manifolds.Sphere(3).random(4, dtype=torch.float64).numpy()
    view = chart(manifolds.Sphere(3), points)
    assert view.sphere and view.coords.shape == (4, 3)
    np.testing.assert_array_equal(view.coords, points)


def test_the_three_torus_is_drawn_by_its_angles_in_three_dimensions():
    angles = np.array([[0.5, -3.0, 1.0], [-1.0, 0.0, 3.1]])
    points = np.stack((np.cos(angles), np.sin(angles)), axis=-1).reshape(2, 6)
    view = chart(manifolds.Torus(3), points)
    assert view.three_d and not view.sphere and view.labels == ("θ1", "θ2", "θ3")
    np.testing.assert_allclose(view.coords, angles, atol=1e-12)


def test_the_two_torus_is_drawn_by_its_angles():
    angles = np.array([[0.5, -3.0], [math.pi / 2, 2.9], [-1.0, 0.0]])
    points = np.stack((np.cos(angles), np.sin(angles)), axis=-1).reshape(3, 4)  # (cos, sin) per circle
    view = chart(manifolds.Torus(2), points)
    assert view.period == pytest.approx(2 * math.pi) and view.labels == ("θ1", "θ2")
    np.testing.assert_allclose(view.coords, angles, atol=1e-12)


@pytest.mark.parametrize("space", [manifolds.Euclidean(5), manifolds.Torus(4), manifolds.Sphere(4)])
def test_other_key_spaces_are_drawn_by_their_principal_plane(space):
    # Points on a plane spanned by two orthonormal directions: PCA recovers their in-plane coordinates.
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(space.dim, 2)))[0].T
    plane = rng.normal(size=(30, 2)) * [3.0, 1.0]
    view = chart(space, plane @ basis + 0.25)
    assert view.coords.shape == (30, 2) and view.labels[0].startswith("PC1")
    centred = plane - plane.mean(axis=0)
    # Same point geometry: all pairwise distances agree with the original plane's.
    distances = np.linalg.norm(view.coords[:, None] - view.coords[None], axis=-1)
    np.testing.assert_allclose(distances, np.linalg.norm(centred[:, None] - centred[None], axis=-1), atol=1e-9)


def test_principal_components_of_points_on_a_line():
    direction = np.array([3.0, 4.0]) / 5.0
    t = np.array([-2.0, 0.0, 1.0, 5.0])
    coords, shares = principal_components(t[:, None] * direction + [1.0, -1.0], 2)
    np.testing.assert_allclose(coords[:, 0], t - t.mean(), atol=1e-12)  # the largest loading is made positive
    np.testing.assert_allclose(coords[:, 1], 0.0, atol=1e-12)
    np.testing.assert_allclose(shares, [1.0, 0.0], atol=1e-12)
    flipped, _ = principal_components(-(t[:, None] * direction), 1)
    np.testing.assert_allclose(flipped[:, 0], t.mean() - t, atol=1e-12)  # same rule, so the picture mirrors


def test_a_key_space_of_ones_own_gets_a_view_by_default_and_may_register_another():
    class Stripes(manifolds.Euclidean):
        pass

    points = np.arange(12.0).reshape(4, 3) ** 1.5
    assert chart(Stripes(3), points).labels[0].startswith("PC1")

    @chart.register(Stripes)
    def _(key_space, points):
        return chart.dispatch(manifolds.KeySpace)(key_space, np.asarray(points)[:, :2])

    np.testing.assert_array_equal(chart(Stripes(3), points).coords, points[:, :2])


def test_lines_break_where_angles_cross_the_seam():
    coords = np.array([[3.0, 0.0], [-3.0, 0.1], [-2.5, 0.2]])
    broken = _broken_at_seam(coords, 2 * math.pi)
    assert broken.shape == (4, 2) and np.isnan(broken[1]).all()
    np.testing.assert_array_equal(broken[[0, 2, 3]], coords)
    np.testing.assert_array_equal(_broken_at_seam(coords, None), coords)


# ---- access traces ------------------------------------------------------------------------------------------


def test_lantm_read_weights_follow_the_inverse_square_formula():
    torch.manual_seed(0)
    model = build_model("lantm", 10).double()
    inputs = torch.randint(0, 10, (2, 5))
    with torch.no_grad():
        trace = model.trace(inputs, 4)
        access = model.access_trace(inputs, 4)
    torch.testing.assert_close(access.logits, model(inputs, 4), rtol=0, atol=1e-12)
    # 5 tokens: 4 input steps (the last token begins the answer phase), 4 + 4 = 8 steps, 1 + 4 = 5 slots.
    assert access.read_weights.shape == (2, 8, 1, 5) and access.input_length == 4
    keys, strengths = trace.keys.numpy(), trace.strengths.numpy()
    for step in range(8):
        query = trace.read_positions[:, step].numpy()
        written = 1 + min(step, 4)  # slot 0, then one slot per input step before this one
        dist2 = ((query[:, None] - keys[:, :written]) ** 2).sum(-1)
        expected = strengths[:, :written] / (dist2 + 1e-10)
        expected /= expected.sum(axis=1, keepdims=True)
        weights = access.read_weights[:, step, 0].numpy()
        np.testing.assert_allclose(weights[:, :written], expected, rtol=1e-6, atol=1e-8)
        assert (weights[:, written:] == 0).all()


def test_each_input_step_writes_the_slot_that_holds_its_key():
    torch.manual_seed(1)
    model = build_model("slantm-s", 10)
    inputs = torch.randint(0, 10, (3, 4))
    with torch.no_grad():
        trace, access = model.trace(inputs, 3), model.access_trace(inputs, 3)
    # 4 tokens: 3 input steps; the separator's step is the first of the 3 answer steps, which write nothing.
    assert access.write_weights.shape == (3, 6, 1, 4) and access.input_length == 3
    written = access.write_weights[:, :3, 0]
    assert (written.sum(-1) == 1).all() and (access.write_weights[:, 3:] == 0).all()
    slots = written.argmax(-1)  # [B, input steps]
    torch.testing.assert_close(torch.gather(trace.keys, 1, slots[..., None].expand(-1, -1, 3)), trace.write_positions)
    assert slots.tolist() == [[1, 2, 3]] * 3  # a new slot each step, after the initial slot 0


@pytest.mark.parametrize("name", ["ram", "ram-tape"])
def test_ram_traces_the_weights_its_reads_used(name, monkeypatch):
    import liemem.memory

    torch.manual_seed(1)
    model = build_model(name, 10)
    inputs = torch.randint(0, 10, (3, 4))
    used = []
    original = liemem.memory.read

    def spy(*args, **kwargs):
        result = original(*args, **kwargs)
        used.append(result.weights.detach())
        return result

    monkeypatch.setattr(liemem.memory, "read", spy)
    access = model.access_trace(inputs, 3)
    # 4 tokens: 3 input steps (the last token begins the answer phase), 3 + 3 = 6 reads; the initial slots (one,
    # two with the tape, as the authors' RAM/tape), then 3 written ones.
    initial = 2 if name == "ram-tape" else 1
    assert len(used) == 6 and access.read_weights.shape == (3, 6, 1, initial + 3) and access.input_length == 3
    for step, weights in enumerate(used):
        slots = weights.shape[-1]
        assert slots == initial + min(step, 3)  # the initial slots, then one per input step read before
        torch.testing.assert_close(access.read_weights[:, step, :, :slots], weights)
        assert (access.read_weights[:, step, :, slots:] == 0).all()
    expected = np.zeros((6, initial + 3))
    expected[np.arange(3), np.arange(initial, initial + 3)] = 1.0  # input step t appends slot t + initial
    np.testing.assert_array_equal(access.write_weights[:, :, 0].numpy(), np.broadcast_to(expected, (3, 6, initial + 3)))
    torch.testing.assert_close(access.logits, model(inputs, 3))


def test_ntm_traces_every_heads_weighting(monkeypatch):
    import liemem.models.ntm_addressing as addressing

    torch.manual_seed(2)
    model = build_model("ntm", 10, read_heads=2, write_heads=2, memory_slots=16)
    inputs = torch.randint(0, 10, (2, 4))
    used = []
    original = addressing.address

    def spy(*args, **kwargs):
        result = original(*args, **kwargs)
        used.append(result.detach())
        return result

    monkeypatch.setattr(addressing, "address", spy)
    access = model.access_trace(inputs, 3)
    # 4 tokens: 3 input steps, then 3 answer steps (the first fed the separator): 6 steps, each addressing all heads.
    assert access.read_weights.shape == (2, 6, 2, 16) and access.write_weights.shape == (2, 6, 2, 16)
    assert access.input_length == 3 and len(used) == 6
    addressed = torch.stack(used, dim=1)  # [B, steps, read heads then write heads, slots]
    torch.testing.assert_close(access.read_weights, addressed[:, :, :2])
    torch.testing.assert_close(access.write_weights, addressed[:, :, 2:])
    for weights in (access.read_weights, access.write_weights):
        assert (weights >= 0).all()
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
    torch.testing.assert_close(access.logits, model(inputs, 3))


def test_a_model_without_memory_says_so():
    with pytest.raises(TypeError, match="no external memory"):
        build_model("lstm", 10).access_trace(torch.zeros(1, 3, dtype=torch.long), 2)


def test_a_recording_labels_each_slot_with_the_symbol_written_there():
    task, inputs, targets = copy_example()
    recording = record(build_model("lantm", task.vocab_size), task, inputs, targets)
    # <start> and the 5 symbols are the input steps, each writing a slot; <sep> begins the answer phase and
    # writes none, so it labels no slot.
    tokens = task.decode(inputs)
    assert tokens[-1] == "<sep>" and recording.input_length == len(inputs) - 1 == 6
    assert recording.slot_labels() == ["", *tokens[:-1]]
    assert recording.inputs == tokens and len(recording.predicted) == len(targets)
    assert recording.keys.shape == (len(inputs), 2)  # the initial slot and one per input step
    assert recording.read_positions.shape == (len(inputs) - 1 + len(targets), 2)


def test_soft_writes_label_only_the_slots_written_mostly():
    writes = np.zeros((3, 1, 4))
    writes[0, 0] = [0.1, 0.8, 0.1, 0.0]
    writes[1, 0] = [0.3, 0.3, 0.4, 0.0]
    recording = MemoryRecording(["a", "b"], ["c"], ["c"], writes.copy(), writes)
    assert recording.slot_labels() == ["", "a", "", ""]


# ---- learning curves ----------------------------------------------------------------------------------------


def test_curves_read_loss_and_both_scores_from_the_metrics_records():
    records = [
        {"step": 10, "loss": 2.0, "train": {"fine": 0.1, "coarse": 0.0, "samples": 320}},
        {"step": 20, "loss": 1.0, "lr": 0.02},  # a record from before training scores were logged
        {"step": 20, "eval": {"fine": 0.5, "coarse": 0.25, "samples": 16}},
    ]
    data = curves(records)
    np.testing.assert_array_equal(data.loss[0], [10, 20])
    np.testing.assert_array_equal(data.loss[1], [2.0, 1.0])
    np.testing.assert_array_equal(data.train_fine[0], [10])
    np.testing.assert_array_equal(data.test_coarse[1], [0.25])
    assert not data.empty and curves([]).empty
    assert curves([{"step": 5, "loss": "n/a", "eval": "oops"}, {"step": 6, "loss": float("nan")}]).empty


def test_metrics_lines_that_are_not_records_are_skipped(tmp_path):
    lines = [
        json.dumps({"step": 10, "loss": 1.0}), "", '{"step": 15, "lo', "[1, 2]", json.dumps({"loss": 3.0}),
        json.dumps({"step": 20, "loss": 0.5}), '{"step": 30, "lo',
    ]  # fmt: skip
    (tmp_path / "metrics.jsonl").write_bytes("\n".join(lines).encode() + b"\n\xff\xfe\n")
    assert [record["step"] for record in read_metrics(tmp_path)] == [10, 20]


def test_a_lone_record_is_still_drawn(tmp_path):
    figure = draw("curves", None, [{"step": 10, "loss": 2.0, "train": {"fine": 0.5, "coarse": 0.0}}])
    loss_ax, score_ax = figure.axes
    assert loss_ax.lines[0].get_marker() not in (None, "None", "") and len(score_ax.lines) == 2
    assert all(line.get_marker() not in (None, "None", "") for line in score_ax.lines)


# ---- pictures -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny trained runs of a Lie-access machine, a baseline with memory, and one without."""
    root = tmp_path_factory.mktemp("runs")
    for model in ("lantm", "ntm", "lstm"):
        train(TrainConfig(model=model, **TINY_RUN), root / model, progress=False, echo=lambda line: None)
    return root


@pytest.mark.parametrize(
    ("model", "kind", "size", "colors"),
    [
        ("lantm", "all", (1400, 1100), (WRITE_COLOR, READ_COLOR)),
        ("lantm", "trail", (800, 650), (WRITE_COLOR, READ_COLOR)),
        ("lantm", "timeline", (800, 650), (WRITE_COLOR, READ_COLOR)),
        ("lantm", "heatmap", (800, 650), ("#440154",)),  # viridis at weight 0
        ("lantm", "curves", (800, 650), ("#2ca02c", "#9467bd")),
        ("ntm", "all", (1400, 600), ("#440154", "#2ca02c")),
        ("ntm", "heatmap", (800, 650), ("#440154",)),
        ("lstm", "all", (800, 650), ("#2ca02c",)),
    ],
)
def test_every_kind_of_plot_renders_a_valid_image(runs, tmp_path, model, kind, size, colors):
    out = plot_run(runs / model, tmp_path / f"{kind}.png", kind=kind, length=4)
    assert_valid_image(out, *size, colors)


def test_the_trail_draws_the_written_keys_and_the_read_path():
    task, inputs, targets = copy_example()
    recording = record(build_model("lantm", task.vocab_size), task, inputs, targets)
    figure = draw("trail", recording, [])
    ax = figure.axes[0]
    writes, reads_in, reads_out = ax.lines[:3]
    written = len(inputs) - 1  # input steps: every token but <sep>, whose step is the first answer step
    assert len(recording.keys) == written + 1
    np.testing.assert_allclose(np.column_stack(writes.get_data()), recording.keys[1:])
    np.testing.assert_allclose(np.column_stack(reads_out.get_data()), recording.read_positions[written:])
    np.testing.assert_allclose(np.column_stack(reads_in.get_data()), recording.read_positions[: written + 1])
    memory, ring = ax.collections[:2]
    np.testing.assert_allclose(memory.get_offsets(), recording.keys)
    np.testing.assert_allclose(ring.get_offsets(), recording.read_positions[written][None])  # first answer step
    # Fill by strength: black for strength 1, white for 0, on the Greys colour map.
    greys = memory.get_facecolors()[:, :3].mean(axis=1)
    assert np.all(np.diff(greys[np.argsort(recording.strengths)]) <= 1e-12)


def test_the_sphere_is_drawn_under_a_trail_on_it():
    task, inputs, targets = copy_example()
    recording = record(build_model("slantm", task.vocab_size), task, inputs, targets)
    ax = draw("trail", recording, []).axes[0]
    assert ax.name == "3d" and type(ax.collections[0]).__name__ == "Line3DCollection"  # the wireframe
    segments = np.concatenate(ax.collections[0]._segments3d)
    np.testing.assert_allclose(np.linalg.norm(segments, axis=-1), 1.0, atol=1e-12)


def test_the_poincare_disk_is_drawn_as_a_disk():
    task, inputs, targets = copy_example()
    recording = record(build_model("mobius", task.vocab_size), task, inputs, targets)
    view = chart(recording.key_space, recording.keys)
    assert view.disk and not view.three_d and view.labels == ("Re z", "Im z")
    ax = draw("trail", recording, []).axes[0]
    assert ax.name != "3d" and ax.get_xlim() == ax.get_ylim() == (-1.05, 1.05) and ax.get_aspect() == 1.0
    boundary, *guides = ax.lines[: 1 + len(DISK_GUIDE_RADII)]
    np.testing.assert_allclose(np.linalg.norm(np.column_stack(boundary.get_data()), axis=-1), 1.0, atol=1e-12)
    radii = [np.linalg.norm(np.column_stack(guide.get_data()), axis=-1).mean() for guide in guides]
    np.testing.assert_allclose(radii, np.tanh(np.array(DISK_GUIDE_RADII) / 2), rtol=1e-12)  # hyperbolic radius d
    written = np.column_stack(ax.lines[len(DISK_GUIDE_RADII) + 1].get_data())
    np.testing.assert_allclose(written, recording.keys[1:])
    assert (np.linalg.norm(recording.keys, axis=-1) < 1).all()
    assert chart(manifolds.PoincareBall(3), np.zeros((2, 3))).sphere  # the 3-ball inside its sphere


def test_a_product_is_drawn_factor_by_factor():
    """S^2 x R: the sphere in 3-D and the line against time, each panel with its own factor's coordinates."""
    task, inputs, targets = copy_example()
    recording = record(build_model("product", task.vocab_size), task, inputs, targets)
    sphere_ax, line_ax = draw("trail", recording, []).axes
    assert sphere_ax.name == "3d" and line_ax.name != "3d"
    assert sphere_ax.get_title().startswith("factor 1 of 2") and line_ax.get_title().endswith("Euclidean(n=1)")
    written = len(inputs) - 1
    np.testing.assert_allclose(np.column_stack(sphere_ax.lines[0].get_data_3d()), recording.keys[1:, :3])
    line_writes = np.column_stack(line_ax.lines[0].get_data())
    np.testing.assert_allclose(line_writes, np.column_stack((recording.keys[1:, 3], np.arange(written))))
    reads = np.column_stack(line_ax.lines[2].get_data())  # the answer steps' read positions on the line
    np.testing.assert_allclose(reads[:, 0], recording.read_positions[written:, 3])


def test_a_product_with_a_chart_of_its_own_is_drawn_in_one_panel():
    class Banded(manifolds.ProductSpace):
        pass

    @chart.register(Banded)
    def _(key_space, points):
        return Chart(np.asarray(points)[:, :2], ("a", "b"))

    task, inputs, targets = copy_example()
    recording = record(build_model("product", task.vocab_size), task, inputs, targets)
    banded = recording._replace(key_space=Banded(manifolds.Sphere(3), manifolds.Euclidean(1)))
    (ax,) = draw("trail", banded, []).axes
    assert ax.get_xlabel() == "a" and ax.get_title().startswith("head trails in Banded")
    np.testing.assert_allclose(np.column_stack(ax.lines[0].get_data()), recording.keys[1:, :2])


def test_a_trail_refuses_axes_of_the_wrong_kind_before_drawing():
    from matplotlib.figure import Figure

    task, inputs, targets = copy_example()
    flat = record(build_model("lantm", task.vocab_size), task, inputs, targets)
    sphere = record(build_model("slantm", task.vocab_size), task, inputs, targets)
    ax3d = Figure().add_subplot(projection="3d")
    with pytest.raises(ValueError, match="needs 2-D axes"):
        plot_trail(ax3d, flat)
    ax = Figure().add_subplot()
    with pytest.raises(ValueError, match="needs a 3-D axes"):
        plot_trail(ax, sphere)
    assert not ax.lines and not ax3d.lines


def test_a_registered_chart_must_give_one_row_per_point_and_at_most_three_columns():
    class Wide(manifolds.Euclidean):
        pass

    @chart.register(Wide)
    def _(key_space, points):
        return chart.dispatch(manifolds.KeySpace)(key_space, np.zeros((len(points), 2)))._replace(
            coords=np.zeros((len(points), 4))
        )

    task, inputs, targets = copy_example()
    model = build_model("lantm", task.vocab_size)
    model.heads.group.key_space.__class__ = Wide
    with pytest.raises(ValueError, match="1 to 3 columns"):
        draw("trail", record(model, task, inputs, targets), [])


def test_the_heatmap_shows_the_answer_steps_read_weights_of_every_head():
    task, inputs, targets = copy_example()
    torch.manual_seed(3)
    model = build_model("ntm", task.vocab_size, read_heads=2, memory_slots=12)
    recording = record(model, task, inputs, targets)
    figure = draw("heatmap", recording, [])
    images = [ax.images[0] for ax in figure.axes if ax.images]
    assert len(images) == 2
    weights = model.access_trace(torch.as_tensor(inputs).unsqueeze(0), len(targets)).read_weights[0]
    written = len(inputs) - 1  # input steps: every token but <sep>, whose step is the first answer step
    assert weights.shape[0] == written + len(targets)
    expected = weights[written:]
    for head, image in enumerate(images):
        np.testing.assert_allclose(image.get_array(), expected[:, head].detach().double().numpy(), atol=1e-6)
        assert [label.get_text() for label in image.axes.get_yticklabels()] == task.decode(targets)
    # Every step: rows are the input steps' tokens (without <sep>), then the targets of the answer steps.
    from matplotlib.figure import Figure

    ax = plot_read_weights(Figure().add_subplot(), recording, head=1, answer_only=False)
    np.testing.assert_allclose(ax.images[0].get_array(), weights[:, 1].detach().double().numpy(), atol=1e-6)
    labels = [label.get_text() for label in ax.get_yticklabels()]
    assert labels == task.decode(inputs)[:-1] + task.decode(targets)


def test_the_timeline_puts_step_t_on_row_t_at_the_keys_first_principal_coordinate():
    task, inputs, targets = copy_example(size=6)
    recording = record(build_model("lantm", task.vocab_size), task, inputs, targets)
    from matplotlib.figure import Figure

    ax = plot_timeline(Figure().add_subplot(), recording)
    # An independent PCA: the covariance's leading eigenvector.
    points = np.concatenate((recording.keys, recording.read_positions))
    centred = points - points.mean(axis=0)
    axis = np.linalg.eigh(centred.T @ centred)[1][:, -1]
    written = centred[1 : len(recording.keys)] @ axis
    offsets = ax.collections[-1].get_offsets()  # the writes, drawn last
    input_steps = len(inputs) - 1  # every token but <sep>, whose step is the first answer step
    assert len(recording.keys) == input_steps + 1
    np.testing.assert_array_equal(offsets[:, 1], np.arange(input_steps))
    if written[-1] < written[0]:
        written = -written  # the view orients writing left to right
    np.testing.assert_allclose(offsets[:, 0], written, atol=1e-9)
    sign = 1.0 if np.allclose(offsets[:, 0], written) else -1.0
    read = sign * (centred[len(recording.keys) :] @ axis)
    if (centred[len(recording.keys) - 1] @ axis) * sign < (centred[1] @ axis) * sign:
        read = -read
    answers = ax.collections[2].get_offsets()  # the read head on the answer rows
    np.testing.assert_array_equal(answers[:, 1], np.arange(input_steps, input_steps + len(targets)))
    np.testing.assert_allclose(answers[:, 0], read[input_steps:], atol=1e-9)
    labels = [label.get_text() for label in ax.get_yticklabels()]
    assert labels == task.decode(inputs)[:-1] + recording.predicted


GROUP_CASES = [(name, {}) for name in groups.names()] + [
    ("translation", {"n": 1}),
    ("translation", {"n": 3}),
    ("torus", {"n": 1}),
    ("torus", {"n": 3}),
]


@pytest.mark.parametrize(("name", "options"), GROUP_CASES, ids=[f"{n}{o or ''}" for n, o in GROUP_CASES])
def test_every_group_is_drawn_with_no_plotting_code_of_its_own(tmp_path, name, options):
    # `groups.names()` includes the example's user-defined SO(2), which the test suite loads.
    torch.manual_seed(0)
    task, inputs, targets = copy_example()
    model = LieAccessMachine(task.vocab_size, LANTMConfig(group=name, group_options=options))
    figure = draw("all", record(model, task, inputs, targets), [])
    assert_valid_image(save(figure, tmp_path / "all.png"), 1400, 1100, (WRITE_COLOR, READ_COLOR))


def test_the_user_defined_group_is_among_those_drawn():
    assert "so2" in groups.names()


# ---- command line -------------------------------------------------------------------------------------------


def test_plot_command_writes_the_file_and_prints_its_path(runs, tmp_path, capsys):
    out = tmp_path / "nested" / "trail.png"
    status = main(["plot", str(runs / "lantm"), "--kind", "trail", "--length", "3", "--seed", "4", "--out", str(out)])
    printed = capsys.readouterr().out.strip()
    assert status == 0 and printed == str(out)
    assert_valid_image(out, 800, 650, (WRITE_COLOR, READ_COLOR))


def test_plot_draws_the_example_sample_prints(runs, tmp_path, capsys):
    main(["sample", "--task", "copy", "--split", "test", "--lengths", "3-3", "-n", "1", "--seed", "7"])
    example = json.loads(capsys.readouterr().out)
    recorded = {}
    import liemem.plots.run as plot_module

    original = plot_module.record

    def keep(*args):
        recorded["it"] = original(*args)
        return recorded["it"]

    plot_module.record = keep
    try:
        plot_run(runs / "lantm", tmp_path / "x.png", length=3, seed=7, kind="timeline")
    finally:
        plot_module.record = original
    assert recorded["it"].inputs == ["<start>", *example["input"], "<sep>"]
    assert recorded["it"].targets == [*example["target"], "<end>"]


def test_plot_writes_svg_and_pdf_too(runs, tmp_path):
    assert (tmp_path / "c.svg").exists() is False
    plot_run(runs / "lantm", tmp_path / "c.svg", kind="curves")
    plot_run(runs / "lantm", tmp_path / "c.pdf", kind="curves")
    assert (tmp_path / "c.svg").read_text().lstrip().startswith("<?xml")
    assert (tmp_path / "c.pdf").read_bytes().startswith(b"%PDF")


@pytest.mark.parametrize(
    ("model", "argv", "message"),
    [
        ("ntm", ["--kind", "trail"], "a trail needs a Lie-access model"),
        ("lstm", ["--kind", "heatmap"], "has no memory"),
        ("lantm", ["--kind", "pie"], "invalid choice"),
        ("lantm", ["--task", "double"], "has other tokens (13)"),
        ("lantm", ["--task", "sorting"], "unknown task"),
        ("lantm", ["--length", "100000"], "--length must be"),
        ("lantm", ["--length", "0"], "--length must be in [1, 1000], got 0"),
        ("lantm", ["--seed", "-1"], "--seed must be"),
        ("lantm", ["--device", "cuda:7"], "device"),
        ("missing", [], "no checkpoint"),
    ],
)
def test_plot_refuses_bad_input_in_one_line(runs, tmp_path, capsys, model, argv, message):
    status = main(["plot", str(runs / model), "--out", str(tmp_path / "x.png"), *argv])
    err = capsys.readouterr().err
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def test_another_task_must_have_the_same_tokens_not_just_as_many(tmp_path):
    run = tmp_path / "copy129"
    train(TrainConfig(**{**TINY_RUN, "task_options": {"symbol_count": 129}, "steps": 1}), run, False)
    # priority_sort also has 132 tokens, but its token 128 is "@" where this model learned "128".
    assert tasks.get("priority_sort").vocab_size == tasks.get("copy", symbol_count=129).vocab_size
    with pytest.raises(ConfigError, match="task 'priority_sort' has other tokens"):
        plot_run(run, tmp_path / "x.png", task="priority_sort", kind="heatmap")
    assert_valid_image(plot_run(run, tmp_path / "ok.png", kind="heatmap"), 800, 650)


def test_a_run_without_memory_draws_its_curves_and_no_example(runs, tmp_path, monkeypatch):
    import liemem.plots.run as plot_module

    def no_example(*args):
        raise AssertionError("no example should be run")

    monkeypatch.setattr(plot_module, "record", no_example)
    assert_valid_image(plot_run(runs / "lstm", tmp_path / "all.png"), 800, 650, ("#2ca02c",))


def test_curves_still_check_the_options_they_do_not_use(runs, tmp_path):
    with pytest.raises(ConfigError, match="unknown task"):
        plot_run(runs / "lantm", tmp_path / "c.png", kind="curves", task="sorting")
    with pytest.raises(ConfigError, match="--length must be"):
        plot_run(runs / "lantm", tmp_path / "c.png", kind="curves", length=0)
    with pytest.raises(ConfigError, match="device"):
        plot_run(runs / "lantm", tmp_path / "c.png", kind="curves", device="cuda:9")


def test_many_read_heads_get_a_grid_of_heatmaps():
    task, inputs, targets = copy_example()
    model = build_model("ntm", task.vocab_size, read_heads=4, memory_slots=12)
    figure = draw("all", record(model, task, inputs, targets), [])
    heatmaps = [ax for ax in figure.axes if ax.images]
    assert len(heatmaps) == 4
    corners = sorted({(round(ax.get_position().x0, 3), round(ax.get_position().y0, 3)) for ax in heatmaps})
    assert len({x for x, _ in corners}) == 2 and len({y for _, y in corners}) == 2  # two columns, two rows


def test_curves_need_only_the_metrics_file(runs, tmp_path):
    run = tmp_path / "early"
    run.mkdir()
    (run / "metrics.jsonl").write_text((runs / "lantm" / "metrics.jsonl").read_text())
    assert_valid_image(plot_run(run, tmp_path / "c.png", kind="curves"), 800, 650, ("#2ca02c",))
    with pytest.raises(CheckpointError, match="no checkpoint"):
        plot_run(run, tmp_path / "t.png", kind="trail")
    with pytest.raises(ConfigError, match="holds no loss or score records yet"):
        plot_run(tmp_path / "nothing", tmp_path / "c.png", kind="curves")


def test_a_default_length_too_long_to_draw_says_to_choose_one(tmp_path):
    run = tmp_path / "long"
    train(TrainConfig(**{**TINY_RUN, "test_lengths": (1001, 1002), "eval_samples": 1, "steps": 1}), run, False)
    with pytest.raises(ConfigError, match="smallest test size, 1001, is more than 1000; choose one with --length"):
        plot_run(run, tmp_path / "x.png", kind="trail")
    assert_valid_image(plot_run(run, tmp_path / "c.png", kind="curves"), 800, 650, ink=0.01)  # one step: a dot


def test_plot_refuses_an_unknown_image_format(runs, tmp_path, capsys):
    status = main(["plot", str(runs / "lantm"), "--out", str(tmp_path / "x.jpeg")])
    assert status == 2 and "--out must end in one of .png, .svg, .pdf" in capsys.readouterr().err


def test_plotting_needs_no_display(runs, tmp_path):
    env = {key: value for key, value in os.environ.items() if key not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["MPLBACKEND"] = "tkagg"  # an interactive backend that cannot start here: it must never be touched
    out = tmp_path / "all.png"
    code = (
        "import sys; from liemem.cli import main; status = main(sys.argv[1:]); "
        "assert 'matplotlib.pyplot' not in sys.modules; sys.exit(status)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "plot", str(runs / "lantm"), "--out", str(out)],
        env=env, capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert_valid_image(out, 1400, 1100)


def test_kinds_are_the_documented_ones():
    assert KINDS == ("all", "trail", "timeline", "heatmap", "curves")


@pytest.mark.cuda
def test_a_run_is_drawn_on_cuda_as_on_the_cpu(runs, tmp_path):
    pictures = [
        plot_run(runs / "lantm", tmp_path / f"{device}.png", kind="timeline", device=device)
        for device in ("cpu", "cuda")
    ]
    assert_valid_image(pictures[1], 800, 650, (WRITE_COLOR, READ_COLOR))
    difference = np.abs(load_image(pictures[0]) - load_image(pictures[1]))
    assert (difference.max(axis=2) > 40).mean() < 0.001  # the same picture, up to float rounding in the layout
