"""Per-component projection of the authors' public code: each gated feature -> a short L2-normalised vector.

Shape legend: B clips, N frames, K attention models, D trunk channels, C the projected size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ComponentProjection(nn.Module):
    """x_{n,k} -> Linear(x_{n,k}) / ‖Linear(x_{n,k})‖₂, one Linear D → C shared by the K components.

    `SattentionNet.feat` (nn.Linear(2048, num_features), with bias) followed by its `norm=True` division of each
    component's vector by its L2 norm; the authors use C = num_features = 128, so their descriptor is K × 128.
    It runs per frame, right after spatial attention, so what follows (enhancement, temporal attention) works
    on C-dimensional features. The normalisation clamps the norm at 1e-12 (the code divides by it as is).
    """

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        if out_dim < 1:
            raise ValueError(f"component_dim must be >= 1, got {out_dim}")
        self.linear = nn.Linear(dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, N, K, D) -> (B, N, K, C), every (n, k) vector of unit L2 norm."""
        return F.normalize(self.linear(x), dim=-1)
