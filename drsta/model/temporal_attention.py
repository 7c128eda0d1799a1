"""Temporal attention: one softmax over the frames per spatial component (paper Sec. 3.3)."""

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
