"""Evaluate a training checkpoint or a registered model: CMC and mAP on a manifest's query and gallery, and the
paper's claims about its attention (drsta.claims).

Clips are decoded by the Ray Data stream and embedded by an actor pool holding the exported model (on GPU when
asked), every query and gallery tracklet once, with the deterministic test-time frames. The claims: the spatial
and temporal ones where the manifest carries ground truth (a synthetic set's), the corruption probe on a fixed
sample of up to 32 query clips for any manifest.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from drsta.config import ExperimentConfig
from drsta.data.manifest import read_manifest, read_manifest_annotations
from drsta.engine import EvaluationClaims, TrackletEmbeddings, load_state, probe_tracklets
from drsta.metrics import RetrievalResult
from drsta.model import build_model
from drsta.model.export import export_model
from drsta.ray.embed import embed_dataset
from drsta.ray.stream import evaluation_stream
from pipelines.commands import parse_settings
from pipelines.console import progress_bar
from pipelines.model_files import read_model_dir
from pipelines.ray_runtime import connect, disconnect
from pipelines.tracking import download_registered, existing_tracking_uri

# What each claim metric measures (drsta.claims has the definitions), for the printed report and the demo's table.
CLAIMS = {
    "val/attn_foreground": "spatial attention on the person / the person's area (Fig. 1; 1 = no preference)",
    "val/attn_part_specificity": "share of each map's mass on body parts that lies on its dominant part",
    "val/attn_distinct_parts": "distinct dominant body parts among the K spatial attention models",
    "val/temporal_bad_ratio": "mean temporal weight of occluded/bad frames / clean frames' (Fig. 2; 1 = none)",
    "val/temporal_bad_auc": "P(a clean frame outweighs a degraded frame of its clip) (0.5 = chance)",
    "val/probe_noise_ratio": "weight of a frame replaced by noise / the clean frames' (1 = not noticed)",
    "val/probe_black_ratio": "weight of a frame replaced by black / the clean frames' (1 = not noticed)",
    "val/probe_shift_ratio": "weight of a frame shifted half out of the crop / the clean frames' (1 = not noticed)",
}


def evaluate_program(
    program_bytes: bytes, cfg: ExperimentConfig, manifest: Path, actors: int = 1, use_gpu: bool = False
) -> RetrievalResult:
    """CMC/mAP of an exported model (`.pt2` bytes) whose config is `cfg`, on `manifest`'s query and gallery."""
    return _evaluate(program_bytes, cfg, manifest, actors, use_gpu, claims=False)[0]


def evaluate_with_claims(
    program_bytes: bytes, cfg: ExperimentConfig, manifest: Path, actors: int = 1, use_gpu: bool = False
) -> tuple[RetrievalResult, dict[str, float]]:
    """CMC/mAP as `evaluate_program`, and the paper's claims measured in the same pass (drsta.claims): the
    attention's spatial and temporal claims where the manifest has ground truth, the corruption probe on a fixed
    sample of query clips always. The claims' `val/*` keys as training logs them; those that could not be measured
    are left out (`drsta.engine.EvaluationClaims.metrics`)."""
    return _evaluate(program_bytes, cfg, manifest, actors, use_gpu, claims=True)


def _evaluate(
    program_bytes: bytes, cfg: ExperimentConfig, manifest: Path, actors: int, use_gpu: bool, claims: bool
) -> tuple[RetrievalResult, dict[str, float]]:
    tracklets = read_manifest(manifest)
    roles = {t.id: t.role for t in tracklets}
    size = (cfg.input.height, cfg.input.width)
    annotations = read_manifest_annotations(manifest) if claims else None
    measured = EvaluationClaims(tracklets, annotations, cfg.model.num_frames, cfg.data.eval_clips_per_tracklet)
    probed = probe_tracklets(tracklets) if claims else frozenset()
    clips = evaluation_stream(tracklets, cfg.data, size, cfg.model.num_frames)
    embedded = embed_dataset(clips, program_bytes, actors, use_gpu, attention=annotations is not None, probed=probed)
    collected = TrackletEmbeddings()
    evaluated = sum(t.role in ("query", "gallery") for t in tracklets)
    seen: set[str] = set()
    with progress_bar("evaluate", total=evaluated, unit="tracklets") as bar:
        for batch in embedded.iter_batches(batch_format="numpy"):
            valid = batch["valid"]
            collected.add(batch["id"][valid], batch["embedding"][valid], batch["pid"][valid], batch["camid"][valid])
            if annotations is not None:
                measured.add_attention(batch["id"][valid], batch["clip_index"][valid], batch["spatial_maps"][valid],
                                       batch["temporal_weights"][valid])  # fmt: skip
            if probed:
                measured.add_probes(batch["probe_ratios"])
            bar.update(len(set(batch["id"]) - seen))
            seen.update(batch["id"])
    return collected.score(roles), measured.metrics()


def print_claims(claims: dict[str, float]) -> None:
    """The claims' metrics, one a line, each with what it measures (keys as in MLflow)."""
    if not claims:
        return
    print("  the paper's claims (drsta.claims):")
    for key, value in claims.items():
        print(f"    {key:28s} {value:7.3f}  {CLAIMS.get(key, '')}")
    if "val/attn_foreground" not in claims:
        print("    (no spatial or temporal claims: they need a manifest with ground truth, e.g. a synthetic set's)")


def checkpoint_program(checkpoint_dir: Path) -> tuple[bytes, ExperimentConfig]:
    """Export a training checkpoint's model; returns the `.pt2` bytes and the run's config."""
    state_path = Path(checkpoint_dir) / "state.pt"
    state = load_state(state_path)  # weights_only: a planted checkpoint cannot run code
    cfg = ExperimentConfig.from_dict(state["config"], source=f"config in {state_path}")
    classifier = state["model"].get("classifier.weight")
    model = build_model(cfg.model, None if classifier is None else classifier.shape[0])
    model.load_state_dict(state["model"])
    return model_program(model, cfg), cfg


def model_program(model: torch.nn.Module, cfg: ExperimentConfig) -> bytes:
    """`model` exported for `cfg`'s clips (`drsta.model.export`), as the `.pt2` bytes evaluation runs."""
    example = torch.rand(1, cfg.model.num_frames, 3, cfg.input.height, cfg.input.width)
    buffer = io.BytesIO()
    torch.export.save(export_model(model, example), buffer)
    return buffer.getvalue()


def registered_program(model_uri: str, tracking_uri: str | None) -> tuple[bytes, ExperimentConfig]:
    """Pull a registered model; returns its checked `.pt2` bytes and config."""
    with tempfile.TemporaryDirectory() as directory:
        local, _ = download_registered(model_uri, tracking_uri, directory)
        program, metadata = read_model_dir(local, model_uri)
    return program, ExperimentConfig.from_dict(metadata["config"], source=f"config of {model_uri}")


def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = parse_settings(args.set)
    if args.checkpoint:
        program, cfg = checkpoint_program(args.checkpoint)
    else:
        program, cfg = registered_program(args.model, existing_tracking_uri(args.tracking_uri))
    cfg = cfg.with_overrides(settings)
    connect(args.address, "evaluate")
    try:
        result, claims = evaluate_with_claims(program, cfg, args.manifest, args.actors, args.use_gpu)
    finally:
        disconnect()
    cmc = result.cmc
    print(f"evaluate: {result.num_valid_queries} queries ({result.num_skipped_queries} without a match, skipped)")
    print(f"  mAP {result.mAP:.1%}  rank-1 {cmc[0]:.1%}  rank-5 {cmc[4]:.1%}  rank-10 {cmc[9]:.1%}  "
          f"rank-20 {cmc[19]:.1%}")  # fmt: skip
    print_claims(claims)
    return {"mAP": result.mAP, "cmc": cmc.tolist(), "claims": claims}


if __name__ == "__main__":
    from pipelines.cli import main

    main(["evaluate", *sys.argv[1:]])
