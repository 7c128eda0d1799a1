"""The paper's equations as plain functions, so tests and users can call them directly.

Shape legend: B batch (clips), N frames per clip, K spatial attention models, L = h·w trunk cells,
D feature channels per cell.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

# sqrt has an infinite slope at 0; clamping keeps the regularizer's gradient finite where a softmax
# probability underflows. It moves the value of a one-hot map by ~1e-6, far below anything training sees.
_SQRT_FLOOR = 1e-12


def diversity_penalty(maps: torch.Tensor) -> torch.Tensor:
    """Hellinger diversity regularizer of the paper: r = ‖Q Qᵀ − I‖²_F with Q = [√s₁; …; √s_K].

    (Q Qᵀ)[k, k'] is the Bhattacharyya coefficient of maps k and k', i.e. 1 − H²(s_k, s_k'), so driving it
    to the identity pushes the K attention maps apart (disjoint maps give 0, K identical maps K(K−1)).

    Args:
        maps: (..., K, L) attention maps, each row a distribution over the L cells (sums to 1).

    Returns:
        (...) the penalty of each set of K maps.
    """
    if maps.dim() < 2:
        raise ValueError(f"diversity_penalty: maps must have shape (..., K, L), got {tuple(maps.shape)}")
    q = maps.clamp_min(_SQRT_FLOOR).sqrt()  # (..., K, L)
    gram = q @ q.transpose(-1, -2)  # (..., K, K)
    eye = torch.eye(maps.shape[-2], dtype=maps.dtype, device=maps.device)
    return (gram - eye).pow(2).sum(dim=(-1, -2))


def mean_pairwise_hellinger(maps: torch.Tensor) -> torch.Tensor:
    """Mean Hellinger distance between the K(K−1)/2 pairs of attention maps, averaged over the leading dims.

    A diagnostic of diversity: 0 when the K maps coincide, 1 when they are disjoint. Needs K ≥ 2.

    Args:
        maps: (..., K, L) attention maps whose rows sum to 1.
    """
    num_models = maps.shape[-2]
    if num_models < 2:
        raise ValueError(f"mean_pairwise_hellinger needs K >= 2 attention maps, got K={num_models}")
    q = maps.clamp_min(0).sqrt()
    bhattacharyya = (q @ q.transpose(-1, -2)).clamp(0, 1)  # (..., K, K)
    distance = (1 - bhattacharyya).sqrt()
    pairs = torch.triu_indices(num_models, num_models, offset=1, device=maps.device)
    return distance[..., pairs[0], pairs[1]].mean()


def temporal_similarity(w: torch.Tensor, b: torch.Tensor, sigma: float) -> torch.Tensor:
    """Supplementary Eq. 2: Ψ = W ⊙ exp(−|i − j| / σ) + b, with b[j] added to column j.

    Args:
        w: (N, N) weights W (learned, or fixed at ones: see `FeatureEnhancement`).
        b: (N,) learned per-frame offsets b.
        sigma: temporal scale σ > 0, in frames.

    Returns:
        (N, N) Ψ.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0 (a temporal scale in frames), got {sigma}")
    num_frames = w.shape[-1]
    if w.shape != (num_frames, num_frames) or b.shape != (num_frames,):
        raise ValueError(f"w must be (N, N) and b (N,), got w {tuple(w.shape)} and b {tuple(b.shape)}")
    frame = torch.arange(num_frames, device=w.device, dtype=w.dtype)
    distance_NN = (frame[:, None] - frame[None, :]).abs()
    return w * torch.exp(-distance_NN / sigma) + b[None, :]


EnhancementSimilarity = Literal["inner_product", "scaled", "cosine"]
ENHANCEMENT_SIMILARITIES: tuple[str, ...] = get_args(EnhancementSimilarity)


def feature_similarity(x: torch.Tensor, similarity: EnhancementSimilarity = "inner_product") -> torch.Tensor:
    """Supplementary Eq. 1, Φ_k = X_kᵀ X_k, per component, in one of three scales.

    "inner_product" is Eq. 1 as printed. Its entries grow with D and with the features' magnitude: with a ResNet
    trunk's D = 512 or 2048 ReLU features they reach 10²–10³ and Eq. 3's softmax is one-hot (see
    `drsta.model.enhancement.FeatureEnhancement`). "scaled" divides by √D, as scaled dot-product attention does
    (Vaswani et al. 2017): a sum of D independent zero-mean unit-variance products then has unit variance whatever
    D is. ReLU features are not zero-mean, so Φ / √D itself still reaches 20–160 at initialisation, but the
    differences between frames that the row softmax sees are then of order 1 (measured). "cosine" takes the inner
    product of the L2-normalised features, so Φ lies in [−1, 1] (in [0, 1] for ReLU features), the range Ψ of
    Eq. 2 starts in; a feature that is exactly zero has similarity 0 to every frame.

    Args:
        x: (B, N, K, D) spatially gated features x_{n,k}.
        similarity: "inner_product", "scaled" or "cosine".

    Returns:
        (B, K, N, N) Φ_k[i, j], the similarity of frames i and j of component k.
    """
    if similarity not in ENHANCEMENT_SIMILARITIES:
        raise ValueError(f"similarity must be one of {', '.join(ENHANCEMENT_SIMILARITIES)}, got {similarity!r}")
    if similarity == "cosine":
        x = F.normalize(x, dim=-1)
    phi_BKNN = torch.einsum("bikd,bjkd->bkij", x, x)
    if similarity == "scaled":
        phi_BKNN = phi_BKNN / math.sqrt(x.shape[-1])
    return phi_BKNN


def enhance_features(
    x: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor,
    sigma: float,
    fcn: nn.Module,
    similarity: EnhancementSimilarity = "inner_product",
) -> torch.Tensor:
    """Feature enhancement, supplementary Eq. 1–4, for all K components at once.

    Φ_k = X_kᵀ X_k (Eq. 1, scaled as `similarity` says: `feature_similarity`), Ψ (Eq. 2),
    C_k = row-softmax(Φ_k + Ψ) (Eq. 3), and x̂_{i,k} = FCN(Σ_j C_k[i, j] x_{j,k}) + x_{i,k} (Eq. 4). Only Φ is
    rescaled: Eq. 4 pools the features themselves, whatever the similarity.

    Eq. 4 is printed as X_k C_k, which with X_k = [x_1 … x_N] (D × N) would mix frames by the *columns* of C_k;
    the text says row i of C_k holds the contributions of all frames to frame i, so we follow the text and
    pool with the rows: (C_k X_kᵀ)ᵀ.

    Args:
        x: (B, N, K, D) spatially gated features x_{n,k}.
        w: (N, N) temporal-similarity weights W of Eq. 2.
        b: (N,) temporal-similarity offsets b of Eq. 2.
        sigma: temporal scale σ > 0 of Eq. 2, in frames.
        fcn: the linear D → D map of Eq. 4, shared by the K components.
        similarity: the scale of Φ: "inner_product" (Eq. 1 as printed), "scaled" (÷ √D) or "cosine".

    Returns:
        (B, N, K, D) enhanced features x̂_{n,k}.
    """
    if x.dim() != 4:
        raise ValueError(f"enhance_features: x must have shape (B, N, K, D), got {tuple(x.shape)}")
    if w.shape[-1] != x.shape[1]:
        raise ValueError(
            f"enhance_features: x has N={x.shape[1]} frames but W is {tuple(w.shape)}; the temporal "
            "similarity is tied to the clip length N"
        )
    psi_NN = temporal_similarity(w, b, sigma)
    phi_BKNN = feature_similarity(x, similarity)  # Eq. 1, per component
    contribution_BKNN = F.softmax(phi_BKNN + psi_NN, dim=-1)  # Eq. 3, row i -> frame i
    pooled_BNKD = torch.einsum("bkij,bjkd->bikd", contribution_BKNN, x)
    return fcn(pooled_BNKD) + x  # Eq. 4, residual


def spatial_attention_maps(
    cells: torch.Tensor,
    hidden_weight: torch.Tensor,
    hidden_bias: torch.Tensor,
    score_weight: torch.Tensor,
) -> torch.Tensor:
    """K spatial attention models: e_{k,l} = w_kᵀ ReLU(W_k l + b_k) (+ b′_k), softmax over the L cells.

    b′_k shifts every cell's score of model k equally, so the softmax over cells cancels it: it has no
    effect on the maps (and would never receive a gradient), so it is left out.

    Args:
        cells: (..., L, D) trunk features l of each cell.
        hidden_weight: (K, H, D) the K hidden layers W_k.
        hidden_bias: (K, H) their biases b_k.
        score_weight: (K, H) the K scoring vectors w_k.

    Returns:
        (..., K, L) attention maps s_k, each a distribution over the cells.
    """
    num_models, hidden_dim, dim = hidden_weight.shape
    if cells.shape[-1] != dim:
        raise ValueError(f"cells have D={cells.shape[-1]} channels but the attention models expect D={dim}")
    # One matmul for all K hidden layers: (..., L, D) @ (D, K·H) -> (..., L, K, H).
    hidden = cells @ hidden_weight.reshape(num_models * hidden_dim, dim).T + hidden_bias.reshape(-1)
    hidden = F.relu(hidden).unflatten(-1, (num_models, hidden_dim))
    scores_LK = (hidden * score_weight).sum(dim=-1)  # (..., L, K)
    return F.softmax(scores_LK.transpose(-1, -2), dim=-1)  # (..., K, L)


def temporal_attention(features: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Temporal attention: e_{n,k} = w_{t,k}ᵀ x̂_{n,k} (+ b_{t,k}), t_{n,k} = softmax over n, x_k = Σ_n t x̂.

    b_{t,k} is constant over the frames n, so the softmax over n cancels it; it is left out.

    Args:
        features: (B, N, K, D) enhanced features x̂_{n,k}.
        weight: (K, D) the scoring vectors w_{t,k}.

    Returns:
        pooled (B, K, D) x_k, and weights (B, N, K) t_{n,k} (summing to 1 over N).
    """
    scores_BNK = (features * weight).sum(dim=-1)
    weights_BNK = F.softmax(scores_BNK, dim=1)
    pooled_BKD = (weights_BNK.unsqueeze(-1) * features).sum(dim=1)
    return pooled_BKD, weights_BNK
