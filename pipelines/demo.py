"""End-to-end smoke run of what exists so far: build the model from a config, one forward/backward pass.

python -m pipelines.demo [--config configs/default.yaml] [--batch-size 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from drsta.config import ExperimentConfig
from drsta.losses import build_objective
from drsta.model import build_model
from drsta.model.functional import mean_pairwise_hellinger


def run_demo(cfg: ExperimentConfig, batch_size: int = 2, num_identities: int = 4, seed: int = 0) -> dict[str, float]:
    """One training step of the configured model on random clips; prints shapes and losses, returns the losses."""
    torch.manual_seed(seed)
    model_cfg, size = cfg.model, cfg.input
    needs_classifier = cfg.loss.xent_weight > 0
    model = build_model(model_cfg, num_classes=num_identities if needs_classifier else None).train()
    objective = build_objective(cfg.loss, model.embedding_dim, num_identities).train()
    num_params = sum(p.numel() for p in model.parameters())
    print(
        f"model: {model_cfg.backbone} trunk, K={model_cfg.num_attention_models}, N={model_cfg.num_frames}, "
        f"σ={model_cfg.sigma}, enhancement={'on' if model_cfg.feature_enhancement else 'off'}, "
        f"{num_params / 1e6:.1f}M parameters"
    )

    clips = torch.rand(batch_size, model_cfg.num_frames, 3, size.height, size.width)
    pids = torch.arange(batch_size) % num_identities
    start = time.perf_counter()
    out = model(clips)
    loss, parts = objective(out.embedding, out.logits, out.diversity, pids)
    loss.backward()
    elapsed = time.perf_counter() - start

    print(f"clips            {tuple(clips.shape)}  (B, N, 3, H, W)")
    print(f"embedding        {tuple(out.embedding.shape)}  (B, E)")
    print(f"spatial maps     {tuple(out.spatial_maps.shape)}  (B, N, K, h, w)")
    print(f"temporal weights {tuple(out.temporal_weights.shape)}  (B, N, K)")
    if out.logits is not None:
        print(f"logits           {tuple(out.logits.shape)}  (B, identities)")
    hellinger = mean_pairwise_hellinger(out.spatial_maps.flatten(-2)) if model_cfg.num_attention_models > 1 else None
    print(
        f"diversity penalty {out.diversity.mean():.4f}  (0 = disjoint maps, K(K−1) = "
        f"{model_cfg.num_attention_models * (model_cfg.num_attention_models - 1)} identical)"
    )
    if hellinger is not None:
        print(f"mean pairwise Hellinger distance {hellinger:.4f}")
    print("loss " + ", ".join(f"{name}={value:.4f}" for name, value in parts.items()) + f", total={loss:.4f}")
    print(f"forward+backward on the CPU: {elapsed:.2f} s")
    return {"total": loss.item(), **{name: value.item() for name, value in parts.items()}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="experiment YAML (default: the built-in defaults)")
    parser.add_argument("--batch-size", type=int, default=2, help="clips in the batch (global)")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> None:
    cfg = ExperimentConfig.from_yaml(args.config) if args.config else ExperimentConfig()
    if args.batch_size < 2:
        raise SystemExit("--batch-size must be >= 2 (batch norm and the triplet loss need two clips)")
    run_demo(cfg, batch_size=args.batch_size, seed=args.seed)


if __name__ == "__main__":
    from pipelines.cli import main

    main(["demo", *sys.argv[1:]])
