"""The assembled DRSTA model: trunk -> K spatial attention models -> feature enhancement -> temporal attention.

Shape legend: B clips, N frames per clip, K attention models, L = h·w cells, D trunk channels, E embedding.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from drsta.model import functional
from drsta.model.enhancement import FeatureEnhancement
from drsta.model.spatial_attention import SpatialAttention
from drsta.model.temporal_attention import TemporalAttention

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DRSTAOutput(NamedTuple):
    """What `DRSTA.forward` returns.

    Attributes:
        embedding: (B, E) the clip descriptor used for retrieval (E = K·D without an embedding layer).
        logits: (B, num_classes) identity logits in training mode when the model has a classifier, else None.
        diversity: (B,) the diversity penalty r_n of the paper, averaged over each clip's frames.
        spatial_maps: (B, N, K, h, w) the K spatial attention maps of every frame.
        temporal_weights: (B, N, K) the temporal attention weight of every frame and component.
    """

    embedding: torch.Tensor
    logits: torch.Tensor | None
    diversity: torch.Tensor
    spatial_maps: torch.Tensor
    temporal_weights: torch.Tensor


class DRSTA(nn.Module):
    """Diversity Regularized Spatiotemporal Attention (Li et al., CVPR 2018).

    The model takes RGB clips in [0, 1] and applies the ImageNet normalisation itself, so an exported program
    needs no preprocessing code. It is tied to its clip length N (feature enhancement's W is N×N).
    """

    def __init__(
        self,
        trunk: nn.Module,
        trunk_dim: int,
        num_frames: int,
        num_models: int,
        attention_hidden_dim: int = 256,
        sigma: float = 1.0,
        feature_enhancement: bool = True,
        embedding_dim: int | None = None,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        if num_frames < 1:
            raise ValueError(f"num_frames (N) must be >= 1, got {num_frames}")
        if num_models < 1:
            raise ValueError(f"num_models (K) must be >= 1, got {num_models}")
        self.num_frames = num_frames
        self.num_models = num_models
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.trunk = trunk
        self.spatial_attention = SpatialAttention(trunk_dim, num_models, attention_hidden_dim)
        self.enhancement = FeatureEnhancement(trunk_dim, num_frames, sigma) if feature_enhancement else None
        self.temporal_attention = TemporalAttention(trunk_dim, num_models)
        descriptor_dim = num_models * trunk_dim
        if embedding_dim is None:
            self.neck: nn.Module = nn.Identity()
            self.embedding_dim = descriptor_dim
        else:
            self.neck = nn.Sequential(
                nn.Linear(descriptor_dim, embedding_dim, bias=False), nn.BatchNorm1d(embedding_dim)
            )
            self.embedding_dim = embedding_dim
        self.classifier = nn.Linear(self.embedding_dim, num_classes, bias=False) if num_classes else None

    def forward_features(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """clips (B, N, 3, H, W) -> descriptor (B, K·D), maps (B, N, K, h, w), temporal weights (B, N, K)."""
        self._check_clips(clips)
        num_clips, num_frames = clips.shape[:2]
        frames = (clips.flatten(0, 1) - self.pixel_mean) / self.pixel_std
        cells = self.trunk(frames)  # (B·N, D, h, w)
        _, dim, height, width = cells.shape
        cells_BNLD = cells.flatten(2).transpose(1, 2).reshape(num_clips, num_frames, height * width, dim)
        gated_BNKD, maps_BNKL = self.spatial_attention(cells_BNLD)
        enhanced_BNKD = gated_BNKD if self.enhancement is None else self.enhancement(gated_BNKD)
        pooled_BKD, weights_BNK = self.temporal_attention(enhanced_BNKD)
        return pooled_BKD.flatten(1), maps_BNKL.unflatten(-1, (height, width)), weights_BNK

    def forward_head(self, descriptor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """descriptor (B, K·D) -> embedding (B, E), and logits (B, C) when training with a classifier."""
        embedding = self.neck(descriptor)
        logits = self.classifier(embedding) if self.training and self.classifier is not None else None
        return embedding, logits

    def forward(self, clips: torch.Tensor) -> DRSTAOutput:
        """clips (B, N, 3, H, W), RGB in [0, 1] -> DRSTAOutput."""
        descriptor, maps_BNKhw, weights_BNK = self.forward_features(clips)
        embedding, logits = self.forward_head(descriptor)
        diversity_B = functional.diversity_penalty(maps_BNKhw.flatten(-2)).mean(dim=1)
        return DRSTAOutput(embedding, logits, diversity_B, maps_BNKhw, weights_BNK)

    def _check_clips(self, clips: torch.Tensor) -> None:
        if clips.dim() != 5 or clips.shape[2] != 3:
            raise ValueError(f"clips must have shape (B, N, 3, H, W), got {tuple(clips.shape)}")
        if clips.shape[1] != self.num_frames:
            raise ValueError(
                f"clips have N={clips.shape[1]} frames but this model was built for N={self.num_frames} "
                f"(feature enhancement's W is N×N): sample exactly {self.num_frames} frames per tracklet"
            )
        if not clips.is_floating_point():
            raise ValueError(f"clips must be float RGB in [0, 1], got dtype {clips.dtype}")
