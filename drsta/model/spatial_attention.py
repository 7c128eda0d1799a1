"""Spatial pooling: the trunk's L cells of each frame -> K gated features (paper Sec. 3.1), in three forms.

- `SpatialAttention`: the paper's K attention models, each with its own hidden layer (the default).
- `SharedSpatialAttention`: the authors' public code, one hidden layer shared by the K models, with BatchNorm.
- `SpatialAveragePooling`: no attention, one global average over the cells (the ablation's baseline, K = 1).

Each maps cells (B, N, L, D) to gated features (B, N, K, D) and the maps it used (B, N, K, L), every map a
distribution over the L cells, so the maps and the diversity penalty mean the same thing for all three.
Shape legend: B clips, N frames, L = h·w cells, D channels, K attention models, H hidden units.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
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


class SharedSpatialAttention(nn.Module):
    """The authors' head: 1×1 conv D→H + BN + ReLU, then 1×1 conv H→K + BN, softmax over the cells.

    Transcribes `SattentionNet` of the authors' public code (conv1 2048→64, bn1, relu1, conv2 64→K, bn2, both
    convs without bias). A 1×1 convolution is a Linear over each cell's D channels, and BatchNorm2d's statistics
    over (frames, h, w) are BatchNorm1d's over every cell of every frame, so both are written that way here.

    bn2's shift β_k adds the same amount to every cell's score of model k, which the softmax over cells cancels:
    it never gets a gradient. So bn2 is kept without its affine part plus a learned gain γ_k (bn2's weight),
    which gives the authors' maps for any β. Like any BatchNorm, the maps depend on the batch in training mode
    and on the running statistics in eval mode.
    """

    def __init__(self, dim: int, num_models: int, hidden_dim: int) -> None:
        super().__init__()
        if num_models < 1:
            raise ValueError(f"num_models (K) must be >= 1, got {num_models}")
        if hidden_dim < 1:
            raise ValueError(f"attention hidden_dim must be >= 1, got {hidden_dim}")
        self.hidden = nn.Linear(dim, hidden_dim, bias=False)  # conv1; bn1 would cancel a bias
        self.hidden_norm = nn.BatchNorm1d(hidden_dim)  # bn1
        self.score = nn.Linear(hidden_dim, num_models, bias=False)  # conv2
        self.score_norm = nn.BatchNorm1d(num_models, affine=False)  # bn2 without β (cancelled) ...
        self.score_gain = nn.Parameter(torch.ones(num_models))  # ... and its γ

    def forward(self, cells: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cells (B, N, L, D) -> gated features x (B, N, K, D) and maps s (B, N, K, L)."""
        hidden_BNLH = F.relu(_per_cell(self.hidden_norm, self.hidden(cells)))
        scores_BNLK = _per_cell(self.score_norm, self.score(hidden_BNLH)) * self.score_gain
        maps_BNKL = F.softmax(scores_BNLK.transpose(-1, -2), dim=-1)
        gated_BNKD = maps_BNKL @ cells  # Σ_l s_{n,k,l} l_{n,l}, as the code's avg_pool2d × h·w
        return gated_BNKD, maps_BNKL


class SpatialAveragePooling(nn.Module):
    """No attention: each frame's one feature is the mean of its L cells (global average pooling), so K = 1.

    The map returned is the uniform 1/L actually used, (B, N, 1, L), so figures and the diversity penalty
    (0 for a single map) work unchanged.
    """

    num_models = 1

    def forward(self, cells: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cells (B, N, L, D) -> the cells' mean (B, N, 1, D) and the uniform maps (B, N, 1, L)."""
        num_clips, num_frames, num_cells, _ = cells.shape
        maps_BN1L = cells.new_full((num_clips, num_frames, 1, num_cells), 1.0 / num_cells)
        return maps_BN1L @ cells, maps_BN1L


def _per_cell(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A BatchNorm1d applied to every cell's channel vector: x (..., C) -> (..., C), statistics over all cells."""
    return norm(x.flatten(0, -2)).view_as(x)
