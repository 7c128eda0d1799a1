"""Figures: layout (axes, image size), content (overlay follows the map, weights printed) and input checks."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from drsta import viz
from drsta.data.annotations import PARTS, FrameAnnotations

N, K, H, W, h, w = 6, 3, 32, 16, 4, 2


@pytest.fixture
def frames(rng) -> np.ndarray:
    return rng.integers(0, 256, (N, H, W, 3), dtype=np.uint8)


@pytest.fixture
def maps(rng) -> np.ndarray:
    maps = rng.random((N, K, h, w))
    return maps / maps.sum(axis=(-2, -1), keepdims=True)


@pytest.fixture
def weights(rng) -> np.ndarray:
    return torch.softmax(torch.from_numpy(rng.normal(size=(N, K))), dim=0).numpy()


@pytest.fixture
def truth() -> FrameAnnotations:
    """Ground truth of the N frames: the parts stacked in the middle column, no accessory in frame 1; frame 2
    occluded 45 %, frame 4 blurred, frame 5 occluded 10 % (written, not degraded)."""
    boxes = np.array([[4, 0, 12, 8], [4, 8, 12, 20], [4, 20, 12, 32], [10, 10, 14, 18]], dtype=np.float32)
    part_boxes = np.repeat(boxes[None], N, axis=0)
    part_boxes[0, 3] = np.nan
    labels = np.zeros((N, H, W), dtype=np.uint8)
    for p, (x0, y0, x1, y1) in enumerate(boxes[:3].astype(int), start=1):
        labels[:, y0:y1, x0:x1] = p
    return FrameAnnotations(
        size=(H, W),
        person_box=np.repeat(np.array([[4, 0, 12, 32]], dtype=np.float32), N, axis=0),
        part_boxes=part_boxes,
        occluder_box=np.full((N, 4), np.nan, dtype=np.float32),
        labels=labels,
        occlusion=np.array([0, 0.45, 0, 0, 0.1, 0], dtype=np.float32),
        bad=np.array(["none", "none", "none", "blur", "none", "none"]),
        garbage=np.array([""] * N),
    )


def part_rectangles(ax) -> list[tuple[str, tuple[float, float, float, float]]]:
    return [(patch.get_label(), patch.get_bbox().bounds) for patch in ax.patches]


def saved_pixels(fig, path) -> np.ndarray:
    return np.asarray(Image.open(viz.save_figure(fig, path)).convert("RGB"))


def check_png(path, fig, dpi: int) -> Image.Image:
    assert path.is_file()
    image = Image.open(path)
    assert image.format == "PNG"
    expected = np.round(fig.get_size_inches() * dpi)
    assert np.allclose(image.size, expected, atol=1), (image.size, expected)
    return image


def test_receptive_fields_figure_layout(tmp_path, frames, maps):
    fig = viz.receptive_fields_figure(frames, maps, max_frames=4)
    assert len(fig.axes) == 4 * (K + 1)  # 4 rows × (frame + K models)
    assert [ax.get_title() for ax in fig.axes[: K + 1]] == ["frame", "model 1", "model 2", "model 3"]
    # Frames 1 and 6 and two evenly spaced ones between them.
    assert [fig.axes[r * (K + 1)].get_ylabel() for r in range(4)] == ["frame 1", "frame 3", "frame 4", "frame 6"]
    path = viz.save_figure(fig, tmp_path / "nested" / "dir" / "fields.png", dpi=80)
    image = check_png(path, fig, dpi=80)
    assert 300 < image.size[0] < 600 and 1.5 < image.size[1] / image.size[0] < 2.5  # 4×4 panels of 2:1 crops


def test_receptive_fields_figure_fewer_frames_than_rows_and_titles(frames, maps):
    fig = viz.receptive_fields_figure(frames[:2], maps[:2], titles=["head", "torso", "legs"], max_frames=4)
    assert len(fig.axes) == 2 * (K + 1)
    assert [ax.get_title() for ax in fig.axes[1 : K + 1]] == ["head", "torso", "legs"]


def test_receptive_fields_overlay_follows_the_map(tmp_path, frames):
    top = np.zeros((N, K, h, w))
    top[:, :, 0, :] = 0.5
    bottom = np.zeros((N, K, h, w))
    bottom[:, :, -1, :] = 0.5
    pixels_top = saved_pixels(viz.receptive_fields_figure(frames, top, max_frames=1), tmp_path / "top.png")
    pixels_bottom = saved_pixels(viz.receptive_fields_figure(frames, bottom, max_frames=1), tmp_path / "bottom.png")
    assert pixels_top.shape == pixels_bottom.shape
    assert (pixels_top != pixels_bottom).any(axis=-1).mean() > 0.1
    # The frame column does not depend on the map.
    frame_column = slice(0, pixels_top.shape[1] // (K + 1))
    np.testing.assert_array_equal(pixels_top[:, frame_column], pixels_bottom[:, frame_column])


def test_receptive_fields_figure_draws_the_part_boxes_of_the_truth(tmp_path, frames, maps, truth):
    plain = viz.receptive_fields_figure(frames, maps, max_frames=2)
    fig = viz.receptive_fields_figure(frames, maps, max_frames=2, truth=truth)
    assert len(fig.axes) == len(plain.axes) == 2 * (K + 1)
    assert not plain.legends and all(not ax.patches for ax in plain.axes)
    # Rows show frames 1 and 6; frame 1 has no accessory. Every panel of a row, frame and heat maps, has the boxes.
    # Pixel edges 4..12 × 0..8 (head) in imshow's pixel-centred coordinates: (x, y, width, height).
    first_row = [("head", (3.5, -0.5, 8.0, 8.0)), ("torso", (3.5, 7.5, 8.0, 12.0)), ("legs", (3.5, 19.5, 8.0, 12.0))]
    for col in range(K + 1):
        assert part_rectangles(fig.axes[col]) == first_row
        assert [label for label, _ in part_rectangles(fig.axes[K + 1 + col])] == list(PARTS)
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == list(PARTS)
    assert fig.get_size_inches()[1] > plain.get_size_inches()[1]  # room for the legend
    check_png(viz.save_figure(fig, tmp_path / "with.png"), fig, dpi=100)
    images = (saved_pixels(plain, tmp_path / "plain.png"), saved_pixels(fig, tmp_path / "with.png"))
    magenta = [((pixels[..., 0] > 220) & (pixels[..., 1] < 40) & (pixels[..., 2] > 220)).sum() for pixels in images]
    assert magenta[1] > magenta[0] + 100, magenta  # the head boxes, drawn
    with pytest.raises(ValueError, match="size"):
        viz.receptive_fields_figure(frames[:, :16], maps, truth=truth)
    with pytest.raises(ValueError, match="N=5"):
        viz.receptive_fields_figure(frames[:5], maps[:5], truth=truth)


@pytest.mark.parametrize("size", [(4, 2), (3, 5), (1, 1), (8, 4)])
def test_upsample_bilinear_matches_torch(rng, size):
    map_hw = rng.random(size)
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(map_hw)[None, None], size=(H, W), mode="bilinear", align_corners=False
    )[0, 0]
    np.testing.assert_allclose(viz._upsample_bilinear(map_hw, H, W), expected.numpy(), atol=1e-12)


def test_temporal_weights_figure(tmp_path, frames, weights):
    fig = viz.temporal_weights_figure(frames, weights)
    assert len(fig.axes) == N
    best = int(weights.mean(axis=1).argmax())
    for n, ax in enumerate(fig.axes):
        mean_text, per_model_text = (t.get_text() for t in ax.texts)
        assert mean_text == f"{weights[n].mean():.2f}"
        assert per_model_text.split() == [f"{x:.2f}" for x in weights[n]]
        assert ax.spines["bottom"].get_visible() == (n == best)
    check_png(viz.save_figure(fig, tmp_path / "temporal.png"), fig, dpi=100)


def test_temporal_weights_figure_marks_degraded_frames(tmp_path, frames, weights, truth):
    fig = viz.temporal_weights_figure(frames, weights, truth=truth)
    assert [ax.get_title() for ax in fig.axes] == ["clean", "occluded 45%", "clean", "blur", "occluded 10%", "clean"]
    degraded = [1, 3]  # 45 % occluded (from 30 %) and blurred; 10 % is written but not degraded
    assert [n for n, ax in enumerate(fig.axes) if ax.patches] == degraded
    for n in degraded:
        (border,) = fig.axes[n].patches
        assert border.get_linestyle() == "--" and border.get_edgecolor() != fig.axes[n].spines["top"].get_edgecolor()
    # The weights underneath and the heaviest frame's red spines are as without the truth.
    plain = viz.temporal_weights_figure(frames, weights)
    for ax, plain_ax in zip(fig.axes, plain.axes, strict=True):
        assert [t.get_text() for t in ax.texts] == [t.get_text() for t in plain_ax.texts]
        assert ax.spines["left"].get_visible() == plain_ax.spines["left"].get_visible()
        assert plain_ax.get_title() == ""
    check_png(viz.save_figure(fig, tmp_path / "temporal.png"), fig, dpi=100)
    with pytest.raises(ValueError, match="N=5"):
        viz.temporal_weights_figure(frames[:5], weights[:5], truth=truth)


@pytest.mark.parametrize(
    ("occlusion", "bad", "words"),
    [(0.0, "none", "clean"), (0.04, "none", "clean"), (0.45, "none", "occluded 45%"),
     (0.0, "out_of_crop", "out of crop"), (0.5, "blur", "blur · occluded 50%")],
)  # fmt: skip
def test_frame_condition(occlusion, bad, words):
    assert viz.frame_condition(occlusion, bad) == words


def test_temporal_weights_figure_wraps_many_models(frames, rng):
    weights = rng.random((N, 7))
    fig = viz.temporal_weights_figure(frames.astype(np.float32) / 255, weights)
    assert all(ax.texts[1].get_text().count("\n") == 2 for ax in fig.axes)  # 7 weights, three to a line


def test_temporal_weights_figure_single_model_prints_only_the_weight(frames, rng):
    weights = rng.random((N, 1))
    fig = viz.temporal_weights_figure(frames, weights)
    assert [[t.get_text() for t in ax.texts] for ax in fig.axes] == [[f"{x:.2f}"] for x in weights[:, 0]]


def test_cmc_figure(tmp_path):
    cmc = np.linspace(0.8, 0.98, 20)
    fig = viz.cmc_figure(cmc, label="DRSTA", mAP=0.653)
    (ax,) = fig.axes
    (curve, points) = ax.get_lines()
    np.testing.assert_allclose(curve.get_xdata(), np.arange(1, 21))
    np.testing.assert_allclose(curve.get_ydata(), 100 * cmc)
    np.testing.assert_array_equal(points.get_xdata(), [1, 5, 10, 20])
    assert ax.get_ylim() == (0, 100)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "DRSTA (mAP 65.3%)",
        "R1 80.0 · R5 83.8 · R10 88.5 · R20 98.0 (%)",
    ]
    check_png(viz.save_figure(fig, tmp_path / "cmc.png", dpi=50), fig, dpi=50)


def test_cmc_figure_short_curve_marks_only_existing_ranks():
    fig = viz.cmc_figure(np.array([0.5, 0.6, 0.7, 0.8, 0.9, 0.9]))
    (_, points) = fig.axes[0].get_lines()
    np.testing.assert_array_equal(points.get_xdata(), [1, 5])
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["CMC", "R1 50.0 · R5 90.0 (%)"]


def test_no_pyplot_and_no_global_backend(tmp_path):
    """Importing and drawing never loads pyplot, so no global backend or figure manager is touched."""
    code = (
        "import sys, numpy as np, matplotlib; from drsta import viz; "
        "backend = dict.__getitem__(matplotlib.rcParams, 'backend'); "
        f"viz.save_figure(viz.cmc_figure(np.array([0.5, 1.0])), {str(tmp_path / 'cmc.png')!r}); "
        "assert 'matplotlib.pyplot' not in sys.modules; "
        "assert dict.__getitem__(matplotlib.rcParams, 'backend') == backend"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert (tmp_path / "cmc.png").is_file()


BAD_INPUTS = [
    ("frames", lambda f, m, w: viz.receptive_fields_figure(f[0], m)),
    ("frames", lambda f, m, w: viz.receptive_fields_figure(f[..., :2], m)),
    ("frames", lambda f, m, w: viz.receptive_fields_figure(f.astype(np.int32), m)),
    ("frames", lambda f, m, w: viz.receptive_fields_figure(f.astype(np.float32), m)),  # 0..255 floats
    ("maps", lambda f, m, w: viz.receptive_fields_figure(f, m[:, 0])),
    ("maps", lambda f, m, w: viz.receptive_fields_figure(f, m[:, :, :0])),
    ("same N", lambda f, m, w: viz.receptive_fields_figure(f, m[:-1])),
    ("maps", lambda f, m, w: viz.receptive_fields_figure(f, np.full_like(m, np.nan))),
    ("titles", lambda f, m, w: viz.receptive_fields_figure(f, m, titles=["a", "b"])),
    ("max_frames", lambda f, m, w: viz.receptive_fields_figure(f, m, max_frames=0)),
    ("frames", lambda f, m, w: viz.temporal_weights_figure(f[..., 0], w)),
    ("weights", lambda f, m, w: viz.temporal_weights_figure(f, w[:, 0])),
    ("same N", lambda f, m, w: viz.temporal_weights_figure(f, w[:-1])),
    ("weights", lambda f, m, w: viz.temporal_weights_figure(f, w[:, :0])),
    ("weights", lambda f, m, w: viz.temporal_weights_figure(f, np.full_like(w, np.inf))),
    ("cmc", lambda f, m, w: viz.cmc_figure(np.array([]))),
    ("cmc", lambda f, m, w: viz.cmc_figure(np.ones((2, 3)))),
    ("cmc", lambda f, m, w: viz.cmc_figure(np.array([80.0, 90.0]))),
    ("mAP", lambda f, m, w: viz.cmc_figure(np.array([0.8]), mAP=65.3)),
]


@pytest.mark.parametrize(("names", "call"), BAD_INPUTS)
def test_bad_input_raises_naming_it(frames, maps, weights, names, call):
    with pytest.raises(ValueError, match=names):
        call(frames, maps, weights)


def test_save_figure_refuses_other_formats(tmp_path):
    with pytest.raises(ValueError, match=r"\.png"):
        viz.save_figure(viz.cmc_figure(np.array([0.5])), tmp_path / "cmc.jpg")
    assert not (tmp_path / "cmc.jpg").exists()
