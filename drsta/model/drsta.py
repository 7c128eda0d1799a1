"""The assembled DRSTA model: trunk -> spatial attention -> feature enhancement -> temporal attention -> head.

Every stage has the paper's form by default and the alternatives an ablation or the authors' public code needs:
spatial attention with per-model or shared hidden layers, or a global average (K = 1); an optional per-component
projection (authors' code); feature enhancement on or off; temporal attention or the average over frames.

Shape legend: B clips, N frames per clip, K attention models, L = h·w cells, D trunk channels, C component
feature size (D, or component_dim with the projection), E embedding.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import nn

from drsta.model import functional
from drsta.model.enhancement import FeatureEnhancement
from drsta.model.functional import EnhancementSimilarity
from drsta.model.projection import ComponentProjection
from drsta.model.spatial_attention import SharedSpatialAttention, SpatialAttention, SpatialAveragePooling
from drsta.model.temporal_attention import TemporalAttention, TemporalAveragePooling

SpatialPooling = Literal["attention", "average"]
AttentionHead = Literal["per_model", "shared"]
TemporalPooling = Literal["attention", "average"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DRSTAOutput(NamedTuple):
    """What `DRSTA.forward` returns.

    Attributes:
        embedding: (B, E) the clip descriptor used for retrieval (E = K·C without an embedding layer).
        logits: (B, num_classes) identity logits in training mode when the model has a classifier, else None.
        diversity: (B,) the diversity penalty r_n of the paper, averaged over each clip's frames (exactly 0 when
            K = 1: one map has nothing to differ from).
        spatial_maps: (B, N, K, h, w) the K spatial attention maps of every frame; with spatial average pooling
            K = 1 and the map is the uniform 1/(h·w) it used.
        temporal_weights: (B, N, K) the temporal attention weight of every frame and component; with temporal
            average pooling the uniform 1/N it used.
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

    Args:
        trunk: frames (F, 3, H, W) -> cells (F, D, h, w).
        trunk_dim: D.
        num_frames: N, frames per clip.
        num_models: K, spatial attention models; must be 1 with `spatial_pooling="average"`.
        attention_hidden_dim: hidden units of each attention model ("per_model") or of the shared layer ("shared").
        sigma: σ of the temporal similarity (supplementary Eq. 2), in frames.
        feature_enhancement: apply supplementary Eq. 1–4 between spatial and temporal pooling.
        embedding_dim: a Linear (no bias: the BN cancels it) + BatchNorm1d reducing the K·C descriptor to this
            size; None keeps K·C.
        num_classes: adds an identity classifier (for cross-entropy).
        spatial_pooling: "attention", the K spatial attention models; "average", the mean of the cells (K = 1).
        attention_head: "per_model", each model its own hidden layer (paper); "shared", the authors' code.
        temporal_pooling: "attention", the paper's temporal attention; "average", the mean over the N frames.
        component_dim: the authors' per-component Linear D -> C + L2 normalisation after spatial pooling;
            None keeps C = D (the paper's K·D descriptor).
        learn_temporal_weights: learn W of Eq. 2 (the supplementary); False fixes it at ones, so σ matters.
        enhancement_similarity: Φ of Eq. 1: "inner_product" (as printed), "scaled" (÷ √C) or "cosine".
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
        spatial_pooling: SpatialPooling = "attention",
        attention_head: AttentionHead = "per_model",
        temporal_pooling: TemporalPooling = "attention",
        component_dim: int | None = None,
        learn_temporal_weights: bool = True,
        enhancement_similarity: EnhancementSimilarity = "scaled",
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
        # The attribute names stay those of the paper's modules, so checkpoints keep their keys.
        self.spatial_attention = _spatial_pooling(
            spatial_pooling, attention_head, trunk_dim, num_models, attention_hidden_dim
        )
        self.projection = None if component_dim is None else ComponentProjection(trunk_dim, component_dim)
        feature_dim = trunk_dim if component_dim is None else component_dim
        self.enhancement = (
            FeatureEnhancement(feature_dim, num_frames, sigma, learn_temporal_weights, enhancement_similarity)
            if feature_enhancement
            else None
        )
        if temporal_pooling == "attention":
            self.temporal_attention: nn.Module = TemporalAttention(feature_dim, num_models)
        elif temporal_pooling == "average":
            self.temporal_attention = TemporalAveragePooling()
        else:
            raise ValueError(f"temporal_pooling must be 'attention' or 'average', got {temporal_pooling!r}")
        descriptor_dim = num_models * feature_dim
        if embedding_dim is None:
            self.neck: nn.Module = nn.Identity()
            self.embedding_dim = descriptor_dim
        else:
            # No bias on the Linear: the BatchNorm right after subtracts the batch mean, which cancels it.
            self.neck = nn.Sequential(
                nn.Linear(descriptor_dim, embedding_dim, bias=False), nn.BatchNorm1d(embedding_dim)
            )
            self.embedding_dim = embedding_dim
        self.classifier = nn.Linear(self.embedding_dim, num_classes, bias=False) if num_classes else None

    def forward_features(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """clips (B, N, 3, H, W) -> descriptor (B, K·C), maps (B, N, K, h, w), temporal weights (B, N, K)."""
        self._check_clips(clips)
        num_clips, num_frames = clips.shape[:2]
        frames = (clips.flatten(0, 1) - self.pixel_mean) / self.pixel_std
        cells = self.trunk(frames)  # (B·N, D, h, w)
        _, dim, height, width = cells.shape
        cells_BNLD = cells.flatten(2).transpose(1, 2).reshape(num_clips, num_frames, height * width, dim)
        gated_BNKD, maps_BNKL = self.spatial_attention(cells_BNLD)
        features_BNKC = gated_BNKD if self.projection is None else self.projection(gated_BNKD)
        enhanced_BNKC = features_BNKC if self.enhancement is None else self.enhancement(features_BNKC)
        pooled_BKC, weights_BNK = self.temporal_attention(enhanced_BNKC)
        return pooled_BKC.flatten(1), maps_BNKL.unflatten(-1, (height, width)), weights_BNK

    def forward_head(self, descriptor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """descriptor (B, K·C) -> embedding (B, E), and logits (B, num_classes) when training with a classifier."""
        embedding = self.neck(descriptor)
        logits = self.classifier(embedding) if self.training and self.classifier is not None else None
        return embedding, logits

    def forward(self, clips: torch.Tensor) -> DRSTAOutput:
        """clips (B, N, 3, H, W), RGB in [0, 1] -> DRSTAOutput."""
        descriptor, maps_BNKhw, weights_BNK = self.forward_features(clips)
        embedding, logits = self.forward_head(descriptor)
        if self.num_models == 1:
            # One map: ‖QQᵀ − I‖²_F = (Σ_l s_l − 1)² = 0 for every distribution s; exact zeros, not rounding noise.
            diversity_B = maps_BNKhw.new_zeros(maps_BNKhw.shape[0])
        else:
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


def _spatial_pooling(
    spatial_pooling: SpatialPooling, attention_head: AttentionHead, dim: int, num_models: int, hidden_dim: int
) -> nn.Module:
    """The spatial stage the arguments name (see `DRSTA`)."""
    if spatial_pooling == "average":
        if num_models != 1:
            raise ValueError(
                f"spatial_pooling='average' pools one global feature per frame (K = 1), got num_models={num_models}: "
                "set num_attention_models to 1"
            )
        return SpatialAveragePooling()
    if spatial_pooling != "attention":
        raise ValueError(f"spatial_pooling must be 'attention' or 'average', got {spatial_pooling!r}")
    if attention_head == "per_model":
        return SpatialAttention(dim, num_models, hidden_dim)
    if attention_head == "shared":
        return SharedSpatialAttention(dim, num_models, hidden_dim)
    raise ValueError(f"attention_head must be 'per_model' or 'shared', got {attention_head!r}")
