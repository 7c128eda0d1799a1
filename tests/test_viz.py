"""Figures: layout (axes, image size), content (overlay follows the map, weights printed) and input checks."""

import itertools
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


# --- ranked results (drsta search --figure) and the sweep figure ------------------------------------------------


def numbered_clip(num_frames: int, channel: int) -> np.ndarray:
    """(N, H, W, 3) uint8 frames whose `channel` holds 10 × the frame's index (to tell which frames a strip took)."""
    frames = np.zeros((num_frames, H, W, 3), dtype=np.uint8)
    frames[..., channel] = 10 * np.arange(num_frames)[:, None, None]
    return frames


def drawn(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3]


def pixel_at(fig, pixels: np.ndarray, ax, x_fraction: float, y_fraction: float) -> np.ndarray:
    """The drawn pixel at a fraction of `ax`'s box (x from its left, y from its top)."""
    box = ax.get_window_extent()
    x = round(box.x0 + x_fraction * box.width)
    y = pixels.shape[0] - round(box.y1 - y_fraction * box.height)
    return pixels[y, x].astype(int)


def rgb255(color: str) -> np.ndarray:
    from matplotlib.colors import to_rgb

    return np.round(255 * np.array(to_rgb(color))).astype(int)


@pytest.fixture
def ranked() -> tuple[list[viz.RankedTracklet], list[list[viz.RankedTracklet]]]:
    """Query 1 (identity 3): the same person, another one, an unreadable tracklet, an unknown one. Query 2 (no
    identity): one match."""
    queries = [viz.RankedTracklet(numbered_clip(8, 0), identity=3, name="/footage/cam1/suspect.mp4"),
               viz.RankedTracklet(numbered_clip(5, 1), name="q2")]  # fmt: skip
    matches = [
        [viz.RankedTracklet(numbered_clip(8, 1), 3, 1, 0.0123), viz.RankedTracklet(numbered_clip(6, 2), 5, 2, 0.4),
         viz.RankedTracklet(None, 3, 2, 0.5, unreadable="no such file or folder"),
         viz.RankedTracklet(numbered_clip(2, 2), None, None, 0.8)],
        [viz.RankedTracklet(numbered_clip(8, 1), 7, 1, 0.2)],
    ]  # fmt: skip
    return queries, matches


def test_ranked_results_figure_layout_and_text(tmp_path, ranked):
    queries, matches = ranked
    fig = viz.ranked_results_figure(queries, matches)
    assert len(fig.axes) == 2 + 4 + 1  # a query and its matches per row
    row1 = fig.axes[:5]
    assert [ax.get_title() for ax in row1] == ["query", "#1", "#2", "#3", "#4"]
    assert [ax.texts[-1].get_text() for ax in row1] == [
        "/footage/cam1/suspect.mp4\nid 3",
        "0.012\nid 3 · cam 1", "0.400\nid 5 · cam 2", "0.500\nid 3 · cam 2", "0.800\nid ? · cam ?",
    ]  # fmt: skip
    assert fig.axes[5].texts[-1].get_text() == "q2\nid ?"
    long_name = viz.RankedTracklet(queries[0].frames, name="/a" * 40 + "/suspect.mp4")  # keeps the path's end
    name = viz.ranked_results_figure([long_name], [[]]).axes[0].texts[-1].get_text().split("\n")[0]
    assert name.startswith("…") and name.endswith("/a/a/suspect.mp4") and len(name) < 50
    # The query: 4 of its 8 frames, the middles of 4 chunks (1, 3, 5, 7), a white gap between them. The matches:
    # 12 frames shared by a row of 4, so 3 each; a 2-frame tracklet shows both.
    gap = max(1, W // 16)
    query_strip = row1[0].images[0].get_array()
    assert query_strip.shape == (H, 4 * W + 3 * gap, 3)
    firsts = [query_strip[0, i * (W + gap), 0] for i in range(4)]
    np.testing.assert_allclose(np.array(firsts) * 255, [10, 30, 50, 70], atol=1e-6)
    assert row1[1].images[0].get_array().shape == (H, 3 * W + 2 * gap, 3)
    assert row1[4].images[0].get_array().shape == (H, 2 * W + gap, 3)
    pixels = drawn(fig)
    assert pixels.shape[:2] == tuple(np.round(fig.get_size_inches()[::-1] * fig.dpi).astype(int))
    check_png(viz.save_figure(fig, tmp_path / "ranks.png"), fig, dpi=100)
    # One row fewer: the figure is one row shorter and as wide.
    one_row = viz.ranked_results_figure(queries[:1], matches[:1])
    row_height = fig.get_size_inches()[1] - one_row.get_size_inches()[1]
    assert one_row.get_size_inches()[0] == fig.get_size_inches()[0] and row_height > H / W * viz.RANK_FRAME_WIDTH_IN


def test_ranked_results_borders_say_whether_the_identity_is_the_querys(ranked):
    queries, matches = ranked
    fig = viz.ranked_results_figure(queries, matches)
    pixels = drawn(fig)
    green, red, grey = rgb255(viz.MATCH_COLOR), rgb255(viz.MISMATCH_COLOR), rgb255(viz.UNKNOWN_COLOR)
    # Row 1 (query identity 3): id 3, id 5, id 3 (unreadable), unknown; row 2 (query unknown): id 7.
    expected = [green, red, green, grey, grey]
    for ax, color in zip([*fig.axes[1:5], fig.axes[6]], expected, strict=True):
        for x, y in [(0, 0.5), (1, 0.5), (0.5, 0), (0.5, 1)]:  # the middle of each side
            np.testing.assert_allclose(pixel_at(fig, pixels, ax, x, y), color, atol=3)
    assert viz.match_color(3, 3) == viz.MATCH_COLOR and viz.match_color(3, 4) == viz.MISMATCH_COLOR
    assert viz.match_color(None, 3) == viz.match_color(3, None) == viz.UNKNOWN_COLOR
    assert viz.match_color(0, 0) == viz.MATCH_COLOR  # identity 0 is an identity


def test_ranked_results_unreadable_tracklet_is_a_placeholder_saying_why(ranked):
    queries, matches = ranked
    fig = viz.ranked_results_figure(queries, matches)
    placeholder = fig.axes[3]
    assert placeholder.texts[0].get_text().startswith("cannot read\n")
    assert "no such file" in placeholder.texts[0].get_text()
    pixels = drawn(fig)
    np.testing.assert_allclose(pixel_at(fig, pixels, placeholder, 0.5, 0.1), [round(255 * viz.PLACEHOLDER_GRAY)] * 3,
                               atol=2)  # fmt: skip
    # Nothing readable at all: still a figure, laid out for 2:1 crops.
    nothing = viz.RankedTracklet(None, unreadable="x")
    fig = viz.ranked_results_figure([nothing], [[nothing, nothing]])
    assert len(fig.axes) == 3 and all(ax.texts[0].get_text() == "cannot read\nx" for ax in fig.axes)


def test_ranked_results_frames_per_match_follow_the_row_length():
    clip = numbered_clip(8, 0)
    query = viz.RankedTracklet(clip)
    gap = max(1, W // 16)
    for top_k, shown in [(1, 4), (3, 4), (4, 3), (6, 2), (10, 1), (20, 1)]:
        fig = viz.ranked_results_figure([query], [[viz.RankedTracklet(clip, distance=0.1)] * top_k])
        assert fig.axes[1].images[0].get_array().shape[1] == shown * W + (shown - 1) * gap, top_k
    fig = viz.ranked_results_figure([query], [[viz.RankedTracklet(clip, distance=0.1)]], 2, 1)
    middle = fig.axes[1].images[0].get_array()
    assert fig.axes[0].images[0].get_array().shape[1] == 2 * W + gap and middle.shape[1] == W
    assert middle[0, 0, 0] * 255 == pytest.approx(40)  # one frame: the middle one (index 4 of 8)
    fig = viz.ranked_results_figure([query], [[]])  # no matches: the query alone
    assert len(fig.axes) == 1


@pytest.mark.parametrize(
    ("names", "call"),
    [
        ("queries", lambda q: viz.ranked_results_figure([], [])),
        ("one list per query", lambda q: viz.ranked_results_figure([q], [[], []])),
        ("frames", lambda q: viz.ranked_results_figure([viz.RankedTracklet(q.frames[0])], [[]])),
        ("max_query_frames", lambda q: viz.ranked_results_figure([q], [[q]], max_query_frames=0)),
    ],
)
def test_ranked_results_bad_input_raises_naming_it(frames, names, call):
    with pytest.raises(ValueError, match=names):
        call(viz.RankedTracklet(frames))


def shown_tick_labels(ax) -> list:
    """The x tick labels drawn: with text, and at a tick inside the axes' limits."""
    low, high = sorted(ax.get_xlim())
    return [t for t in ax.get_xticklabels() if t.get_text() and low <= t.get_position()[0] <= high]


SWEEP_PARAMS = {
    "model.num_attention_models": [1, 2, 4, 8, 2],
    "model.sigma": [0.5, 1.0, 2.0, 1.5, 0.75],
    "loss.diversity_weight": [0.001, 0.01, 0.1, 1.0, 10.0],
    "variant": ["drsta", "tp_baseline", "spatial_attention_reg", "drsta", "drsta_fixed_w"],
}
SWEEP_SCORES = [0.5, 0.6, None, 0.7, 0.65]  # trial 3 has no score (errored before its first evaluation)


def test_sweep_figure_one_readable_subplot_per_parameter(tmp_path):
    fig = viz.sweep_figure(SWEEP_PARAMS, SWEEP_SCORES, best=3)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == list(SWEEP_PARAMS)
    assert all(ax.get_ylabel() == "best val mAP" for ax in axes)
    scored = [0, 1, 3, 4]
    for ax, values in zip(axes, SWEEP_PARAMS.values(), strict=True):
        trials, star = ax.collections
        np.testing.assert_allclose(trials.get_offsets()[:, 1], [SWEEP_SCORES[t] for t in scored])
        np.testing.assert_allclose(star.get_offsets(), trials.get_offsets()[[2]])  # trial 3: the best
        if not isinstance(values[0], str):
            np.testing.assert_allclose(trials.get_offsets()[:, 0], [values[t] for t in scored])
    k, sigma, weight, variant = axes
    assert weight.get_xscale() == "log"  # 0.001 … 10: decades
    assert k.get_xscale() == sigma.get_xscale() == variant.get_xscale() == "linear"  # 0.5 … 2: not a decade
    # Bundles are categories, in sorted order (the errored trial's spatial_attention_reg is not one).
    assert [t.get_text() for t in variant.get_xticklabels()] == ["drsta", "drsta_fixed_w", "tp_baseline"]
    np.testing.assert_allclose(variant.collections[0].get_offsets()[:, 0], [0, 2, 0, 1])
    pixels = drawn(fig)
    renderer = fig.canvas.get_renderer()
    for ax in axes:  # no two tick labels of an axis overlap, and none leaves the figure
        boxes = [t.get_window_extent(renderer) for t in shown_tick_labels(ax)]
        assert len(boxes) >= 2, ax.get_title()
        for a, b in itertools.pairwise(boxes):
            assert not a.overlaps(b), (ax.get_title(), a, b)
        assert all(box.x0 >= 0 and box.x1 <= pixels.shape[1] and box.y0 >= 0 for box in boxes), ax.get_title()
    assert {"0.001", "0.1", "10"} <= {t.get_text() for t in shown_tick_labels(weight)}  # plain numbers
    check_png(viz.save_figure(fig, tmp_path / "sweep.png"), fig, dpi=100)


def test_sweep_figure_symlog_with_zero_and_no_best():
    fig = viz.sweep_figure({"loss.diversity_weight": [0.0, 0.01, 0.1, 1.0]}, [0.4, 0.5, 0.6, 0.55])
    (ax,) = fig.axes
    assert ax.get_xscale() == "symlog" and len(ax.collections) == 1 and not fig.legends
    fig = viz.sweep_figure({"model.sigma": [1.0, 2.0]}, [None, None])  # nothing scored: empty axes, no error
    assert len(fig.axes[0].collections[0].get_offsets()) == 0


@pytest.mark.parametrize(
    ("names", "call"),
    [
        ("params", lambda: viz.sweep_figure({}, [])),
        ("one value per trial", lambda: viz.sweep_figure({"a": [1, 2]}, [0.5])),
        ("best", lambda: viz.sweep_figure({"a": [1, 2]}, [0.5, None], best=1)),
    ],
)
def test_sweep_figure_bad_input_raises_naming_it(names, call):
    with pytest.raises(ValueError, match=names):
        call()
