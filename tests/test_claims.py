"""The claim metrics on hand-made attention maps and weights with known answers, and against float64 loops."""

import numpy as np
import pytest
import torch

from drsta.claims import (
    PROBE_KINDS,
    ProbeClaims,
    SpatialStats,
    TemporalStats,
    box_coverage,
    degraded_frames,
    mask_coverage,
    probe_clips,
    probe_ratio,
    spatial_stats,
    temporal_stats,
)

GRID = (8, 4)  # h, w: the trunk's grid for a 256×128 input
SIZE = (256, 128)  # H, W; one cell is 32×32 pixels


def map_on(cells: np.ndarray) -> np.ndarray:
    """A spatial map spread evenly over the True cells of an (h, w) bool array."""
    return cells / cells.sum()


def cells_of_box(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """(h, w) bool: the cells inside a box given in cells."""
    cells = np.zeros(GRID, dtype=bool)
    cells[y0:y1, x0:x1] = True
    return cells


def part_boxes_in_cells() -> np.ndarray:
    """(P, 4) disjoint part boxes in cells: head, torso, legs, accessory (a bag beside the torso)."""
    return np.array([[1, 0, 3, 1], [1, 1, 3, 4], [1, 4, 3, 8], [3, 3, 4, 5]], dtype=np.float64)


def in_pixels(boxes_in_cells: np.ndarray) -> np.ndarray:
    return boxes_in_cells * np.array([32, 32, 32, 32])


# ---------------------------------------------------------------------------------------------------------------
# Coverage


def test_box_coverage_is_the_covered_fraction_of_each_cell():
    coverage = box_coverage(np.array([32.0, 16.0, 80.0, 64.0]), SIZE, GRID)  # x 1..2.5 cells, y 0.5..2 cells
    expected = np.zeros(GRID)
    expected[0, 1], expected[0, 2] = 0.5, 0.25
    expected[1, 1], expected[1, 2] = 1.0, 0.5
    np.testing.assert_allclose(coverage, expected)
    assert coverage.sum() / coverage.size == pytest.approx(48 * 48 / (256 * 128))  # the area fraction
    np.testing.assert_array_equal(box_coverage(np.full(4, np.nan), SIZE, GRID), np.zeros(GRID))


def test_mask_coverage_of_a_box_shaped_mask_at_any_resolution_is_the_box_coverage():
    for mask_size in ((256, 128), (64, 32), (37, 23)):  # 37×23: pixels straddle cell edges
        mask = np.zeros(mask_size, dtype=bool)
        mask[5:30, 3:17] = True
        box = np.array([3.0, 5.0, 17.0, 30.0])
        np.testing.assert_allclose(mask_coverage(mask, GRID), box_coverage(box, mask_size, GRID), atol=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# Foreground ratio and part specificity


def test_a_map_entirely_on_the_person_scores_one_over_the_area_fraction_and_a_uniform_map_one():
    person_cells = cells_of_box(1, 1, 3, 7)  # 12 of 32 cells
    person = box_coverage(in_pixels(np.array([1.0, 1, 3, 7])), SIZE, GRID)
    maps = np.stack([map_on(person_cells), np.full(GRID, 1 / 32), map_on(~person_cells)])  # (K=3, h, w)
    maps_BNKhw = np.broadcast_to(maps, (2, 3, *maps.shape))
    person_BNhw = np.broadcast_to(person, (2, 3, *GRID))
    parts = np.zeros((2, 3, 4, *GRID))
    claims = spatial_stats(maps_BNKhw, person_BNhw, parts).result()
    np.testing.assert_allclose(claims.foreground_per_model, [32 / 12, 1.0, 0.0])
    assert claims.foreground == pytest.approx((32 / 12 + 1) / 3)
    assert claims.num_frames == 6


def test_foreground_is_a_ratio_of_sums_over_frames_and_only_valid_frames_count():
    small = box_coverage(in_pixels(np.array([1.0, 2, 2, 4])), SIZE, GRID)  # 2 cells
    large = box_coverage(in_pixels(np.array([0.0, 0, 4, 4])), SIZE, GRID)  # 16 cells
    maps = np.stack([map_on(small > 0), map_on(large > 0)])[:, None]  # (F=2, K=1, h, w): each frame on its person
    person = np.stack([small, large])
    claims = spatial_stats(maps, person, np.zeros((2, 4, *GRID))).result()
    assert claims.foreground == pytest.approx((1 + 1) / (2 / 32 + 16 / 32))  # Σ mass / Σ area, not a mean ratio
    only_small = spatial_stats(maps, person, np.zeros((2, 4, *GRID)), valid=np.array([True, False])).result()
    assert only_small.foreground == pytest.approx(16.0) and only_small.num_frames == 1


def test_k_maps_on_k_different_parts_are_fully_specific_and_distinct():
    boxes = part_boxes_in_cells()
    parts = np.stack([box_coverage(in_pixels(box), SIZE, GRID) for box in boxes])  # (P, h, w)
    maps = np.stack([map_on(parts[p] > 0) for p in range(4)])  # model k on part k
    person = parts.sum(axis=0)
    claims = spatial_stats(maps[None], person[None], parts[None]).result()
    assert claims.distinct_parts == 4 and claims.specificity == pytest.approx(1.0)
    assert claims.dominant_part.tolist() == [0, 1, 2, 3]
    assert claims.dominant_part_names == ["head", "torso", "legs", "accessory"]
    np.testing.assert_allclose(claims.part_share, np.eye(4))
    identical = spatial_stats(np.repeat(maps[1:2], 4, axis=0)[None], person[None], parts[None]).result()
    assert identical.distinct_parts == 1 and identical.dominant_part.tolist() == [1] * 4


def test_specificity_is_the_share_on_the_dominant_part_with_mass_summed_over_frames_first():
    boxes = part_boxes_in_cells()
    parts = np.stack([box_coverage(in_pixels(box), SIZE, GRID) for box in boxes])
    head, torso = parts[0] > 0, parts[1] > 0  # 2 and 6 cells
    frames = np.stack([map_on(head), 0.5 * map_on(head) + 0.5 * map_on(torso)])[:, None]  # (F=2, K=1, h, w)
    claims = spatial_stats(frames, np.broadcast_to(parts.sum(0), (2, *GRID)), np.broadcast_to(parts, (2, *parts.shape)))
    result = claims.result()
    assert result.dominant_part.tolist() == [0]  # head: 1.5 of the 2 frames' mass
    assert result.specificity == pytest.approx(0.75)
    on_background = spatial_stats(map_on(~(parts.sum(0) > 0))[None, None], parts.sum(0)[None], parts[None]).result()
    assert on_background.dominant_part.tolist() == [-1] and on_background.specificity == 0.0
    assert on_background.distinct_parts == 0 and on_background.dominant_part_names == ["none"]


def test_batches_add_up_to_the_whole():
    rng = np.random.default_rng(0)
    maps = softmax(rng.normal(size=(4, 3, 2, 32)), axis=-1).reshape(4, 3, 2, *GRID)
    person = rng.uniform(size=(4, 3, *GRID))
    parts = rng.uniform(size=(4, 3, 4, *GRID))
    whole = spatial_stats(maps, person, parts).result()
    halves = SpatialStats.empty(2)
    for batch in (slice(0, 2), slice(2, 4)):
        halves += spatial_stats(maps[batch], person[batch], parts[batch])
    halves = halves.result()
    np.testing.assert_allclose(halves.foreground_per_model, whole.foreground_per_model)
    np.testing.assert_allclose(halves.part_share, whole.part_share)
    on_torch = spatial_stats(torch.from_numpy(maps).float(), torch.from_numpy(person), torch.from_numpy(parts))
    np.testing.assert_allclose(on_torch.result().foreground_per_model, whole.foreground_per_model, rtol=1e-6)


def test_maps_that_are_not_softmaxes_are_refused():
    with pytest.raises(ValueError, match=r"each spatial map .* sum to 1"):
        spatial_stats(np.ones((1, 1, *GRID)), np.zeros((1, *GRID)), np.zeros((1, 4, *GRID)))
    with pytest.raises(ValueError, match="must agree on the leading dims"):
        spatial_stats(np.full((2, 1, *GRID), 1 / 32), np.zeros((3, *GRID)), np.zeros((2, 4, *GRID)))


def softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def reference_foreground(maps, boxes_or_masks, size, grid, masks: bool) -> np.ndarray:
    """Foreground ratio per model, transcribed from its definition with float64 loops over frames and cells."""
    num_frames, num_models = maps.shape[:2]
    h, w = grid
    height, width = size
    mass, area = np.zeros(num_models), 0.0
    for f in range(num_frames):
        for i in range(h):
            for j in range(w):
                cell = (j * width / w, i * height / h, (j + 1) * width / w, (i + 1) * height / h)  # pixels
                covered = 0.0
                if masks:
                    mask = boxes_or_masks[f]
                    sy, sx = height / mask.shape[0], width / mask.shape[1]  # mask pixel -> input pixels
                    for r in range(mask.shape[0]):
                        for c in range(mask.shape[1]):
                            if mask[r, c]:
                                covered += overlap((c * sx, r * sy, (c + 1) * sx, (r + 1) * sy), cell)
                else:
                    covered = overlap(tuple(boxes_or_masks[f]), cell)
                fraction = covered / ((width / w) * (height / h))
                area += fraction / (h * w)
                for k in range(num_models):
                    mass[k] += maps[f, k, i, j] * fraction
    return mass / area


def overlap(a: tuple, b: tuple) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def test_foreground_ratio_matches_a_float64_loop_transcription():
    rng = np.random.default_rng(1)
    size, grid = (250, 122), (7, 3)  # cells of non-integer pixel size
    maps = softmax(rng.normal(0, 2, (5, 3, 21)), axis=-1).reshape(5, 3, *grid)
    corners = rng.uniform([0, 0, 0, 0], [60, 120, 60, 120], (5, 4))
    boxes = np.concatenate([corners[:, :2], corners[:, :2] + corners[:, 2:] + 1], axis=1)  # x0, y0, x1, y1
    boxes[:, 2] = np.minimum(boxes[:, 2], size[1])
    person = box_coverage(boxes, size, grid)
    claims = spatial_stats(maps, person, np.zeros((5, 4, *grid))).result()
    np.testing.assert_allclose(claims.foreground_per_model, reference_foreground(maps, boxes, size, grid, False))
    masks = rng.random((5, 11, 9)) < 0.3  # a coarse mask of the whole frame
    claims = spatial_stats(maps, mask_coverage(masks, grid), np.zeros((5, 4, *grid))).result()
    np.testing.assert_allclose(claims.foreground_per_model, reference_foreground(maps, masks, size, grid, True))


def test_spatial_metrics_keys():
    maps = np.full((1, 2, *GRID), 1 / 32)
    metrics = spatial_stats(maps, np.ones((1, *GRID)), np.ones((1, 4, *GRID))).result().as_metrics()
    assert set(metrics) == {"val/attn_foreground", "val/attn_part_specificity", "val/attn_distinct_parts"}
    assert all(isinstance(value, float) for value in metrics.values())


# ---------------------------------------------------------------------------------------------------------------
# Temporal down-weighting


def test_a_degraded_frame_at_weight_zero_gives_ratio_zero_and_auc_one():
    weights = np.full((2, 6, 3), 1 / 5)
    weights[:, 2] = 0.0  # (B, N, K), frame 2 ignored by every model
    degraded = np.zeros((2, 6), dtype=bool)
    degraded[:, 2] = True
    claims = temporal_stats(weights, degraded).result()
    assert claims.bad_ratio == 0.0 and claims.bad_auc == 1.0
    assert (claims.num_clips, claims.num_pairs) == (2, 10)
    assert claims.as_metrics() == {"val/temporal_bad_ratio": 0.0, "val/temporal_bad_auc": 1.0}


def test_uniform_weights_give_ratio_one_and_auc_one_half():
    weights = torch.softmax(torch.zeros(3, 6, 2), dim=1)
    degraded = np.array([[1, 0, 0, 0, 0, 1], [0, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0]], dtype=bool)
    claims = temporal_stats(weights, degraded).result()
    assert claims.bad_ratio == pytest.approx(1.0) and claims.bad_auc == 0.5


def test_only_clips_with_both_kinds_count_and_pairs_stay_within_a_clip():
    # Clip 0: the degraded frame is low within its clip; clip 1 is all degraded with high weights, which a pooled
    # (cross-clip) comparison would count against clip 0's clean frames; clip 2 has no degraded frame.
    weights = np.array([[0.1, 0.3, 0.3, 0.3], [0.4, 0.3, 0.2, 0.1], [0.25] * 4])
    degraded = np.array([[1, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], dtype=bool)
    claims = temporal_stats(weights, degraded).result()
    assert claims.num_clips == 1 and claims.bad_auc == 1.0 and claims.bad_ratio == pytest.approx(1 / 3)
    halves = (
        TemporalStats() + temporal_stats(weights[:1], degraded[:1]) + temporal_stats(weights[1:], degraded[1:])
    ).result()
    assert halves == claims
    nothing = temporal_stats(weights[2:], degraded[2:]).result()
    assert np.isnan(nothing.bad_ratio) and np.isnan(nothing.bad_auc)


def test_weights_are_averaged_over_the_k_models():
    weights = np.zeros((1, 3, 2))
    weights[0, :, 0] = [0.0, 0.5, 0.5]  # model 0 ignores frame 0; model 1 weighs it like the others
    weights[0, :, 1] = [1 / 3] * 3
    claims = temporal_stats(weights, np.array([[True, False, False]])).result()
    assert claims.bad_ratio == pytest.approx((1 / 6) / (5 / 12))  # mean over K: [1/6, 5/12, 5/12]


def test_degraded_frames_are_occluded_past_the_threshold_or_bad():
    occlusion = np.array([[0.0, 0.29, 0.3, 0.9, 0.0]])
    bad = np.array([["none", "none", "none", "none", "garbage"]])
    assert degraded_frames(occlusion, bad).tolist() == [[False, False, True, True, True]]
    assert degraded_frames(occlusion, bad, occlusion_threshold=0.5).tolist() == [[False, False, False, True, True]]
    with pytest.raises(ValueError, match=r"sum to 1"):
        temporal_stats(np.ones((1, 4)), np.zeros((1, 4), dtype=bool))


# ---------------------------------------------------------------------------------------------------------------
# Corruption probe


def test_probe_replaces_the_same_single_frame_deterministically():
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (6, 16, 8, 3), dtype=np.uint8)
    probed = probe_clips(clip, np.random.default_rng(7))
    again = probe_clips(clip, np.random.default_rng(7))
    assert set(probed) == set(PROBE_KINDS)
    indices = {index for _, index in probed.values()}
    assert len(indices) == 1
    index = indices.pop()
    for kind, (corrupted, _) in probed.items():
        np.testing.assert_array_equal(corrupted, again[kind][0])
        np.testing.assert_array_equal(np.delete(corrupted, index, axis=0), np.delete(clip, index, axis=0))
        assert corrupted.dtype == np.uint8 and corrupted.shape == clip.shape
    assert not probed["black"][0][index].any()
    noise = probed["noise"][0][index]
    assert noise.std() > 60 and not np.array_equal(noise, clip[index])


def test_shift_moves_the_frame_by_half_its_width_repeating_the_border_column():
    clip = np.zeros((2, 4, 8, 3), dtype=np.uint8)
    clip[1] = np.arange(8, dtype=np.uint8)[None, :, None] * 10  # column x has value 10·x
    seen = set()
    for seed in range(8):
        shifted = probe_clips(clip, np.random.default_rng(seed), index=1)["shift"][0][1, 0, :, 0]
        seen.add(tuple(shifted))
    assert seen == {(0, 0, 0, 0, 0, 10, 20, 30), (40, 50, 60, 70, 70, 70, 70, 70)}  # right, left


def test_probe_ratio_is_the_frames_weight_over_the_other_frames_mean():
    assert probe_ratio(np.full(6, 1 / 6), 2) == pytest.approx(1.0)
    assert probe_ratio(np.array([0.0, 0.25, 0.25, 0.25, 0.25]), 0) == 0.0
    assert probe_ratio(np.array([[0.4, 0.0], [0.3, 0.5], [0.3, 0.5]]), 0) == pytest.approx(0.2 / 0.4)  # mean over K
    claims = ProbeClaims.from_ratios({"noise": [0.2, 0.4], "black": [1.0], "shift": []})
    assert claims.as_metrics() == {
        "val/probe_noise_ratio": pytest.approx(0.3),
        "val/probe_black_ratio": 1.0,
        "val/probe_shift_ratio": pytest.approx(float("nan"), nan_ok=True),
    }
    assert claims.std("noise") == pytest.approx(0.1)
    with pytest.raises(ValueError, match="unknown probe kind"):
        ProbeClaims.from_ratios({"blur": [1.0]})
