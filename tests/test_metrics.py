"""CMC and mAP against a per-query transcription of the standard protocol."""

import numpy as np
import pytest

from drsta import metrics
from drsta.metrics import evaluate, evaluate_detailed, mean_over_splits


def naive_evaluate(dist, q_pids, g_pids, q_camids, g_camids, max_rank):
    """One query at a time, as the protocol is usually written (torchreid's eval_market1501 in Python)."""
    all_cmc, all_ap = [], []
    for q in range(len(q_pids)):
        order = np.argsort(dist[q], kind="stable")
        keep = ~((g_pids[order] == q_pids[q]) & (g_camids[order] == q_camids[q]))
        matches = (g_pids[order] == q_pids[q])[keep].astype(int)
        if not matches.any():
            continue
        cmc = matches.cumsum()
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        precision = [matches[: i + 1].sum() / (i + 1) for i in range(len(matches)) if matches[i]]
        all_ap.append(np.mean(precision))
    cmc = np.stack([np.pad(c, (0, max_rank - len(c)), mode="edge") for c in all_cmc]).mean(axis=0)
    return cmc, float(np.mean(all_ap)), len(all_ap)


def random_problem(rng, num_query=60, num_gallery=300, num_ids=40, num_cams=3, integer=False):
    g_pids = rng.integers(0, num_ids, num_gallery)
    g_camids = rng.integers(0, num_cams, num_gallery)
    q_pids = rng.integers(0, num_ids + 5, num_query)  # some queries have no match at all
    q_camids = rng.integers(0, num_cams, num_query)
    dist = (
        rng.integers(0, 20, (num_query, num_gallery)).astype(np.float32)
        if integer
        else rng.random((num_query, num_gallery))
    )
    return dist, q_pids, g_pids, q_camids, g_camids


@pytest.mark.parametrize("integer", [False, True], ids=["continuous", "many-ties"])
@pytest.mark.parametrize("max_rank", [1, 5, 20])
def test_matches_the_per_query_transcription(rng, integer, max_rank):
    problem = random_problem(rng, integer=integer)
    result = evaluate_detailed(*problem, max_rank=max_rank)
    want_cmc, want_map, num_valid = naive_evaluate(*problem, max_rank)
    np.testing.assert_allclose(result.cmc, want_cmc, rtol=1e-12)
    assert result.mAP == pytest.approx(want_map, rel=1e-12)
    assert result.num_valid_queries == num_valid
    assert result.num_skipped_queries == len(problem[1]) - num_valid > 0


def test_chunk_boundaries_do_not_change_the_result(rng, monkeypatch):
    problem = random_problem(rng, num_query=50)
    whole = evaluate(*problem)
    monkeypatch.setattr(metrics, "QUERY_CHUNK", 7)
    chunked = evaluate(*problem)
    np.testing.assert_array_equal(whole[0], chunked[0])
    assert whole[1] == chunked[1]


def test_same_camera_matches_are_ignored():
    # Query of id 1 in camera 0; the closest item is id 1 in camera 0 (ignored), then id 2, then id 1 in camera 1.
    dist = np.array([[0.1, 0.2, 0.3]])
    cmc, mean_ap = evaluate(dist, np.array([1]), np.array([1, 2, 1]), np.array([0]), np.array([0, 0, 1]), max_rank=3)
    np.testing.assert_array_equal(cmc, [0, 1, 1])
    assert mean_ap == pytest.approx(0.5)


def test_perfect_ranking_scores_one(rng):
    g_pids = np.repeat(np.arange(10), 3)
    dist = (g_pids[None, :] != np.arange(10)[:, None]).astype(float) + rng.random((10, 30)) * 0.1
    cmc, mean_ap = evaluate(dist, np.arange(10), g_pids, np.zeros(10), np.ones(30))
    assert cmc[0] == 1.0 and mean_ap == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((np.zeros((2, 0)), [1, 2], [], [0, 0], []), "gallery is empty"),
        ((np.zeros((0, 3)), [], [1, 2, 3], [], [0, 0, 0]), "no queries"),
        ((np.zeros((2, 3)), [1], [1, 2, 3], [0, 0], [0, 0, 0]), "q_pids"),
        ((np.zeros((2, 3)), [1, 2], [1, 2], [0, 0], [0, 0, 0]), "g_pids"),
        ((np.zeros(3), [1], [1, 2, 3], [0], [0, 0, 0]), "matrix"),
        ((np.full((1, 2), np.nan), [1], [1, 2], [0], [1, 1]), "NaN"),
        ((np.zeros((1, 2)), [1], [1, 2], [0], [0, 0]), "no query has a true match"),
    ],
)
def test_bad_input_is_refused(args, match):
    with pytest.raises(ValueError, match=match):
        evaluate(*(np.asarray(a) for a in args))


def test_max_rank_must_be_positive(rng):
    with pytest.raises(ValueError, match="max_rank"):
        evaluate(*random_problem(rng), max_rank=0)


def test_mean_over_splits():
    cmc, mean_ap = mean_over_splits([(np.array([0.5, 1.0]), 0.4), (np.array([0.7, 0.8]), 0.6)])
    np.testing.assert_allclose(cmc, [0.6, 0.9])
    assert mean_ap == pytest.approx(0.5)
    with pytest.raises(ValueError, match="at least one"):
        mean_over_splits([])
    with pytest.raises(ValueError, match="max_rank"):
        mean_over_splits([(np.ones(2), 0.1), (np.ones(3), 0.1)])
