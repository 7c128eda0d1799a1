"""Restricted random sampling and the deterministic test-time clips."""

import numpy as np
import pytest

from drsta.data.sampling import evaluation_indices, restricted_random_indices


@pytest.mark.parametrize(("num_frames", "n"), [(6, 6), (7, 6), (100, 6), (13, 4), (1000, 8), (5, 1)])
def test_one_frame_from_each_equal_chunk_in_order(num_frames, n, rng):
    edges = np.floor(np.arange(n + 1) * num_frames / n).astype(int)
    for _ in range(50):
        indices = restricted_random_indices(num_frames, n, rng)
        assert indices.shape == (n,) and indices.dtype == np.int64
        assert np.all(np.diff(indices) > 0)
        assert np.all((edges[:-1] <= indices) & (indices < edges[1:]))


def test_every_frame_of_a_chunk_can_be_drawn_about_equally(rng):
    draws = np.stack([restricted_random_indices(40, 4, rng) for _ in range(4000)])
    for chunk in range(4):
        counts = np.bincount(draws[:, chunk] - 10 * chunk, minlength=10)
        assert counts.min() > 300 and counts.max() < 500  # 400 expected per frame


@pytest.mark.parametrize(("num_frames", "want"), [(3, [0, 0, 1, 1, 2, 2]), (1, [0] * 6), (4, [0, 0, 1, 2, 2, 3])])
def test_short_tracklets_repeat_frames_in_order(num_frames, want, rng):
    np.testing.assert_array_equal(restricted_random_indices(num_frames, 6, rng), want)
    np.testing.assert_array_equal(evaluation_indices(num_frames, 6)[0], want)


def test_same_seed_same_indices():
    first = [restricted_random_indices(57, 6, np.random.default_rng(7)) for _ in range(2)]
    np.testing.assert_array_equal(*first)
    other = restricted_random_indices(57, 6, np.random.default_rng(8))
    assert not np.array_equal(first[0], other)


def test_evaluation_takes_chunk_middles():
    np.testing.assert_array_equal(evaluation_indices(60, 6), [[5, 15, 25, 35, 45, 55]])
    np.testing.assert_array_equal(evaluation_indices(60, 6), evaluation_indices(60, 6))


def test_several_evaluation_clips_spread_over_each_chunk():
    clips = evaluation_indices(60, 6, num_clips=2)
    np.testing.assert_array_equal(clips, [[2, 12, 22, 32, 42, 52], [7, 17, 27, 37, 47, 57]])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: restricted_random_indices(0, 6, np.random.default_rng()), "no frames"),
        (lambda: restricted_random_indices(10, 0, np.random.default_rng()), "n "),
        (lambda: evaluation_indices(10, 4, num_clips=0), "num_clips"),
    ],
)
def test_bad_input_is_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()
