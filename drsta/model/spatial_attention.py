"""K spatial attention models over the trunk's cells (paper Sec. 3.1), computed for all K at once."""

from __future__ import annotations

import math

import torch
from torch import nn

from drsta.model import functional


class SpatialAttention(nn.Module):
    """e_{n,k,l} = w_kᵀ ReLU(W_k l_{n,l} + b_k), s_{n,k} = softmax_l(e), x_{n,k} = Σ_l s_{n,k,l} l_{n,l}.

    Each of the K models has its own hidden layer (the paper's form); they are stored stacked so one
    matmul evaluates all K.
    """

    def __init__(self, dim: int, num_models: int, hidden_dim: int) -> None:
        super().__init__()
        if num_models < 1:
            raise ValueError(f"num_models (K) must be >= 1, got {num_models}")
        if hidden_dim < 1:
            raise ValueError(f"attention hidden_dim must be >= 1, got {hidden_dim}")
        bound = 1 / math.sqrt(dim)
        self.hidden_weight = nn.Parameter(torch.empty(num_models, hidden_dim, dim).uniform_(-bound, bound))
        self.hidden_bias = nn.Parameter(torch.zeros(num_models, hidden_dim))
        self.score_weight = nn.Parameter(torch.empty(num_models, hidden_dim).normal_(0, 1 / math.sqrt(hidden_dim)))

    def forward(self, cells: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cells (B, N, L, D) -> gated features x (B, N, K, D) and maps s (B, N, K, L)."""
        maps_BNKL = functional.spatial_attention_maps(cells, self.hidden_weight, self.hidden_bias, self.score_weight)
        gated_BNKD = maps_BNKL @ cells  # Σ_l s_{n,k,l} l_{n,l}: a sum, not a mean
        return gated_BNKD, maps_BNKL
