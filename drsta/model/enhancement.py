"""Feature enhancement across frames (supplementary Sec. 3.2.1, Eq. 1–4)."""

from __future__ import annotations

import torch
from torch import nn

from drsta.model import functional


class FeatureEnhancement(nn.Module):
    """Pools each component's feature over the clip's frames, weighted by appearance and temporal similarity.

    W (N×N, initialised to ones) and b (N, zeros) of Eq. 2 and the FCN of Eq. 4 (one Linear D→D) are shared by
    the K components. Because W is N×N, the module is tied to the clip length N.
    """

    def __init__(self, dim: int, num_frames: int, sigma: float) -> None:
        super().__init__()
        if num_frames < 1:
            raise ValueError(f"num_frames (N) must be >= 1, got {num_frames}")
        if sigma <= 0:
            raise ValueError(f"sigma must be > 0 (a temporal scale in frames), got {sigma}")
        self.sigma = float(sigma)
        self.w = nn.Parameter(torch.ones(num_frames, num_frames))
        self.b = nn.Parameter(torch.zeros(num_frames))
        self.fcn = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, N, K, D) -> x̂ (B, N, K, D)."""
        return functional.enhance_features(x, self.w, self.b, self.sigma, self.fcn)
