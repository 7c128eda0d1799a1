"""The paper's equations against direct transcriptions (explicit loops, float64)."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from drsta.model import functional


def random_maps(*shape: int) -> torch.Tensor:
    return torch.softmax(torch.randn(*shape, dtype=torch.float64) * 2, dim=-1)


def naive_diversity(maps: np.ndarray) -> float:
    """r = ‖Q Qᵀ − I‖²_F with Q = [√s_1; …; √s_K], element by element."""
    k_models, cells = maps.shape
    total = 0.0
    for a in range(k_models):
        for b in range(k_models):
            inner = sum(math.sqrt(maps[a, cell]) * math.sqrt(maps[b, cell]) for cell in range(cells))
            total += (inner - (1.0 if a == b else 0.0)) ** 2
    return total


class TestDiversityPenalty:
    def test_matches_transcription(self):
        maps = random_maps(2, 3, 5, 8)
        got = functional.diversity_penalty(maps)
        assert got.shape == (2, 3)
        for i in range(2):
            for j in range(3):
                assert got[i, j].item() == pytest.approx(naive_diversity(maps[i, j].numpy()), abs=1e-9)

    @pytest.mark.parametrize("k_models", [1, 2, 4, 6])
    def test_disjoint_one_hot_maps_give_zero(self, k_models):
        maps = torch.eye(k_models, 8, dtype=torch.float64)
        assert functional.diversity_penalty(maps).item() == pytest.approx(0.0, abs=1e-9)

    @pytest.mark.parametrize("k_models", [1, 2, 4, 6])
    def test_identical_maps_give_k_times_k_minus_one(self, k_models):
        maps = random_maps(1, 8).expand(k_models, 8)
        assert functional.diversity_penalty(maps).item() == pytest.approx(k_models * (k_models - 1), abs=1e-9)

    def test_gradient_is_finite_for_one_hot_maps(self):
        maps = torch.eye(3, 6, dtype=torch.float64).requires_grad_()
        functional.diversity_penalty(maps).backward()
        assert torch.isfinite(maps.grad).all()

    def test_wrong_rank_is_refused(self):
        with pytest.raises(ValueError, match="maps"):
            functional.diversity_penalty(torch.rand(5))


def test_mean_pairwise_hellinger_matches_transcription():
    maps = random_maps(4, 8)
    distances = [
        math.sqrt(max(0.0, 1 - sum(math.sqrt(maps[a, cell] * maps[b, cell]) for cell in range(8))))
        for a in range(4)
        for b in range(a + 1, 4)
    ]
    assert functional.mean_pairwise_hellinger(maps).item() == pytest.approx(np.mean(distances), abs=1e-9)
    assert functional.mean_pairwise_hellinger(torch.eye(3, 5)).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="K >= 2"):
        functional.mean_pairwise_hellinger(random_maps(1, 8))


def naive_enhance(x: np.ndarray, w: np.ndarray, b: np.ndarray, sigma: float, fcn_w, fcn_b) -> np.ndarray:
    """Eq. 1–4 per clip and component, with the text's reading of Eq. 4 (row i pools into frame i)."""
    batch, frames, k_models, _ = x.shape
    out = np.zeros_like(x)
    for clip in range(batch):
        for k in range(k_models):
            xk = x[clip, :, k, :].T  # X_k: D × N
            phi = xk.T @ xk  # Eq. 1
            psi = np.empty((frames, frames))
            for i in range(frames):
                for j in range(frames):
                    psi[i, j] = w[i, j] * math.exp(-abs(i - j) / sigma) + b[j]  # Eq. 2, b on column j
            scores = phi + psi
            c = np.exp(scores - scores.max(axis=1, keepdims=True))
            c /= c.sum(axis=1, keepdims=True)  # Eq. 3, softmax over each row
            for i in range(frames):
                pooled = sum(c[i, j] * xk[:, j] for j in range(frames))
                out[clip, i, k] = fcn_w @ pooled + fcn_b + xk[:, i]  # Eq. 4
    return out


class TestEnhanceFeatures:
    def test_matches_transcription(self):
        x = torch.randn(2, 5, 3, 7, dtype=torch.float64) * 0.5
        w = torch.randn(5, 5, dtype=torch.float64)
        b = torch.randn(5, dtype=torch.float64)
        fcn = nn.Linear(7, 7).double()
        got = functional.enhance_features(x, w, b, 1.7, fcn)
        want = naive_enhance(
            x.numpy(), w.numpy(), b.numpy(), 1.7, fcn.weight.detach().numpy(), fcn.bias.detach().numpy()
        )
        np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-10, atol=1e-10)

    def test_rows_of_c_pool_into_their_frame(self):
        # With orthogonal frame features and a huge Ψ only on (i, 0), every frame copies frame 0's feature.
        x = torch.eye(4, dtype=torch.float64).reshape(1, 4, 1, 4)
        w = torch.zeros(4, 4, dtype=torch.float64)
        b = torch.tensor([100.0, 0, 0, 0], dtype=torch.float64)
        fcn = nn.Identity()
        got = functional.enhance_features(x, w, b, 1.0, fcn)
        np.testing.assert_allclose(got[0, :, 0].numpy(), np.eye(4) + np.eye(4)[0], atol=1e-12)

    def test_n_mismatch_is_refused(self):
        with pytest.raises(ValueError, match="N=5"):
            functional.enhance_features(torch.rand(1, 5, 2, 3), torch.ones(4, 4), torch.zeros(4), 1.0, nn.Identity())

    @pytest.mark.parametrize("sigma", [0.0, -1.0])
    def test_non_positive_sigma_is_refused(self, sigma):
        with pytest.raises(ValueError, match="sigma"):
            functional.enhance_features(torch.rand(1, 4, 2, 3), torch.ones(4, 4), torch.zeros(4), sigma, nn.Identity())

    def test_wrong_rank_is_refused(self):
        with pytest.raises(ValueError, match=r"\(B, N, K, D\)"):
            functional.enhance_features(torch.rand(4, 2, 3), torch.ones(4, 4), torch.zeros(4), 1.0, nn.Identity())


def test_spatial_attention_maps_match_transcription_with_the_cancelled_bias():
    cells = torch.randn(2, 6, 5, dtype=torch.float64)  # (B, L, D)
    k_models, hidden = 3, 4
    big_w = torch.randn(k_models, hidden, 5, dtype=torch.float64)
    small_b = torch.randn(k_models, hidden, dtype=torch.float64)
    score_w = torch.randn(k_models, hidden, dtype=torch.float64)
    b_prime = torch.randn(k_models, dtype=torch.float64)  # the paper's b′_k: must not change the maps
    got = functional.spatial_attention_maps(cells, big_w, small_b, score_w)
    assert got.shape == (2, k_models, 6)
    for clip in range(2):
        for k in range(k_models):
            e = [
                float(score_w[k] @ torch.relu(big_w[k] @ cells[clip, cell] + small_b[k]) + b_prime[k])
                for cell in range(6)
            ]
            s = np.exp(np.array(e) - max(e))
            np.testing.assert_allclose(got[clip, k].numpy(), s / s.sum(), rtol=1e-10)


def test_temporal_attention_matches_transcription_with_the_cancelled_bias():
    feats = torch.randn(2, 5, 3, 4, dtype=torch.float64)  # (B, N, K, D)
    weight = torch.randn(3, 4, dtype=torch.float64)
    bias = torch.randn(3, dtype=torch.float64)
    pooled, weights = functional.temporal_attention(feats, weight)
    for clip in range(2):
        for k in range(3):
            e = np.array([float(weight[k] @ feats[clip, n, k] + bias[k]) for n in range(5)])
            t = np.exp(e - e.max())
            t /= t.sum()
            np.testing.assert_allclose(weights[clip, :, k].numpy(), t, rtol=1e-10)
            want = sum(t[n] * feats[clip, n, k].numpy() for n in range(5))
            np.testing.assert_allclose(pooled[clip, k].numpy(), want, rtol=1e-10)
