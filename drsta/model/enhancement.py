"""Feature enhancement across frames (supplementary Sec. 3.2.1, Eq. 1–4)."""

from __future__ import annotations

import torch
from torch import nn

from drsta.model import functional


class FeatureEnhancement(nn.Module):
    """Pools each component's feature over the clip's frames, weighted by appearance and temporal similarity.

    W (N×N, initialised to ones) and b (N, zeros) of Eq. 2 and the FCN of Eq. 4 (one Linear D→D) are shared by
    the K components. Because W is N×N, the module is tied to the clip length N.

    The FCN is "a linear transformation" (the supplementary), without bias: a bias would add one vector to every
    x̂_{n,k}, which temporal attention's softmax over frames cancels in the scores and passes on as a constant
    offset of the descriptor; the embedding neck's BatchNorm subtracts that again and Euclidean losses (triplet)
    ignore it, so it would never train.

    The supplementary says W and b "encode the positional information": model parameters, learned by default.
    A learned W is a free N×N matrix, so Ψ = W ⊙ exp(−|i−j|/σ) + b can become any N×N matrix whatever σ is:
    σ only sets Ψ's initial value and scales each entry's gradient by exp(−|i−j|/σ). With
    `learn_temporal_weights=False`, W stays at ones (a buffer, still in the state_dict) and Ψ = exp(−|i−j|/σ) + b,
    so σ really sets how fast the temporal similarity falls off; b is learned in both cases.

    Scale (`similarity`, see `functional.feature_similarity`): with "inner_product", Eq. 1 as printed, Φ_k = X_kᵀ X_k
    is an inner product of raw features. With a ResNet trunk's D = 512 or 2048 ReLU features its entries reach
    10²–10³ (measured on randomly initialised trunks) while Ψ starts in [0, 1], so Eq. 3's softmax is one-hot and
    W, b and σ get no gradient and have no effect; with the authors' unit-norm components (`component_dim`) Φ lies
    in [−1, 1] and they do. "scaled" divides Φ by √D and "cosine" normalises the features first; both keep C_k
    soft at ResNet scale. Measured at initialisation (randomly initialised ResNet-18 at 128×64 and 256×128,
    ResNet-50 at 256×128, synthetic frames), the mean largest entry of a row of C_k is 0.92–0.997 for
    "inner_product", 0.59–0.74 for "scaled" and 0.32–0.45 for "cosine"; but ReLU features of one component have
    cosines near 1 between frames, so with "cosine" C_k ≈ softmax(Ψ): appearance changes C_k by a total variation
    of 0.01–0.03 against 0.25–0.45 with "scaled". "scaled" is the default (our choice): the one where both
    appearance and frame distance shape C_k. Its Φ still follows the features' magnitude, which training may move.
    """

    def __init__(
        self,
        dim: int,
        num_frames: int,
        sigma: float,
        learn_temporal_weights: bool = True,
        similarity: functional.EnhancementSimilarity = "scaled",
    ) -> None:
        super().__init__()
        if similarity not in functional.ENHANCEMENT_SIMILARITIES:
            raise ValueError(
                f"similarity must be one of {', '.join(functional.ENHANCEMENT_SIMILARITIES)}, got {similarity!r}"
            )
        if num_frames < 1:
            raise ValueError(f"num_frames (N) must be >= 1, got {num_frames}")
        if sigma <= 0:
            raise ValueError(f"sigma must be > 0 (a temporal scale in frames), got {sigma}")
        self.sigma = float(sigma)
        self.similarity = similarity
        w_NN = torch.ones(num_frames, num_frames)
        if learn_temporal_weights:
            self.w = nn.Parameter(w_NN)
        else:
            self.register_buffer("w", w_NN)
        self.b = nn.Parameter(torch.zeros(num_frames))
        self.fcn = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, N, K, D) -> x̂ (B, N, K, D)."""
        return functional.enhance_features(x, self.w, self.b, self.sigma, self.fcn, self.similarity)
