"""Temporal pooling of each component over the clip's frames: the paper's attention (Sec. 3.3) or the average.

Both map features (B, N, K, D) to pooled (B, K, D) and the weights they used (B, N, K), summing to 1 over N.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from drsta.model import functional


class TemporalAttention(nn.Module):
    """t_{n,k} = softmax_n(w_{t,k}ᵀ x̂_{n,k}); x_k = Σ_n t_{n,k} x̂_{n,k}."""

    def __init__(self, dim: int, num_models: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_models, dim).normal_(0, 1 / math.sqrt(dim)))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features (B, N, K, D) -> pooled (B, K, D) and weights (B, N, K)."""
        return functional.temporal_attention(features, self.weight)


class TemporalAveragePooling(nn.Module):
    """No attention: x_k = (1/N) Σ_n x̂_{n,k} (temporal average pooling, the video re-id baseline).

    The weights returned are the uniform 1/N actually used, so figures of temporal weights work unchanged.
    """

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features (B, N, K, D) -> pooled (B, K, D) and the uniform weights (B, N, K)."""
        num_clips, num_frames, num_models, _ = features.shape
        weights_BNK = features.new_full((num_clips, num_frames, num_models), 1.0 / num_frames)
        pooled_BKD = (weights_BNK.unsqueeze(-1) * features).sum(dim=1)
        return pooled_BKD, weights_BNK
