"""The DRSTA model: one module per part of the paper, assembled in `drsta.model.drsta`."""

from __future__ import annotations

from drsta.config import ModelConfig
from drsta.model.backbone import build_trunk
from drsta.model.drsta import DRSTA, DRSTAOutput

__all__ = [
    "DRSTA",
    "VARIANTS",
    "DRSTAOutput",
    "build_model",
    "drsta_authors",
    "drsta_resnet50",
    "drsta_small",
    "drsta_tiny",
]


def build_model(cfg: ModelConfig, num_classes: int | None = None) -> DRSTA:
    """The model a ModelConfig describes; `num_classes` adds an identity classifier (for cross-entropy)."""
    trunk = build_trunk(cfg.backbone, cfg.last_stride, cfg.pretrained_weights, cfg.tiny_trunk_dim)
    return DRSTA(
        trunk,
        trunk.out_dim,
        num_frames=cfg.num_frames,
        num_models=cfg.num_attention_models,
        attention_hidden_dim=cfg.attention_hidden_dim,
        sigma=cfg.sigma,
        feature_enhancement=cfg.feature_enhancement,
        embedding_dim=cfg.embedding_dim,
        num_classes=num_classes,
        spatial_pooling=cfg.spatial_pooling,
        attention_head=cfg.attention_head,
        temporal_pooling=cfg.temporal_pooling,
        component_dim=cfg.component_dim,
        learn_temporal_weights=cfg.learn_temporal_weights,
        enhancement_similarity=cfg.enhancement_similarity,
    )


def drsta_resnet50(num_classes: int | None = None, **overrides: object) -> DRSTA:
    """The paper's model: ResNet-50 trunk (D = 2048), K = 6, N = 6, the K·D descriptor."""
    return build_model(ModelConfig(backbone="resnet50", **overrides), num_classes)


def drsta_authors(num_classes: int | None = None, **overrides: object) -> DRSTA:
    """The authors' public code: ResNet-50, K = 3 models sharing a 64-unit hidden layer, N = 6, and a 128-d
    L2-normalised feature per component (the K × 128 descriptor)."""
    defaults = {
        "backbone": "resnet50",
        "num_frames": 6,
        "num_attention_models": 3,
        "attention_head": "shared",
        "attention_hidden_dim": 64,
        "component_dim": 128,
    }
    return build_model(ModelConfig(**(defaults | overrides)), num_classes)


def drsta_small(num_classes: int | None = None, **overrides: object) -> DRSTA:
    """ResNet-18 trunk (D = 512) and a 256-d embedding: the CPU-friendly configuration."""
    defaults = {"backbone": "resnet18", "attention_hidden_dim": 128, "embedding_dim": 256}
    return build_model(ModelConfig(**(defaults | overrides)), num_classes)


def drsta_tiny(num_classes: int | None = None, **overrides: object) -> DRSTA:
    """A tiny CNN trunk (D = 64) for unit tests: every code path, a few thousand parameters."""
    defaults = {"backbone": "tiny", "attention_hidden_dim": 16, "num_attention_models": 3, "num_frames": 4}
    return build_model(ModelConfig(**(defaults | overrides)), num_classes)


VARIANTS = {"resnet50": drsta_resnet50, "authors": drsta_authors, "small": drsta_small, "tiny": drsta_tiny}
