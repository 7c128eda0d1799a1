"""Ray Train's throughput against a plain single-process PyTorch loop, same model, same data, same decoding.

    python benchmarks/train.py [--manifest DIR] [--epochs 3] [--config synthetic_cpu]

Without --manifest a synthetic set is generated and ingested first. Each figure is the clips/s of the last
epoch (steady state: processes up, imports done); the ratio column compares with the plain loop, which
decodes in one DataLoader worker (as Ray Train's stream runs beside each worker) and computes with all cores;
Ray Train workers get cores // workers CPUs each (torch uses as many threads).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import ray
import torch

from drsta.config import ExperimentConfig
from drsta.data.augment import AugmentSpec
from drsta.data.clips import decode_requests
from drsta.data.manifest import read_manifest
from drsta.data.plan import ClipRequest, epoch_plan, train_labels
from drsta.data.synthetic import SyntheticSpec, generate
from drsta.engine import build_optimizer, clips_to_input, train_step
from drsta.losses import build_objective
from drsta.model import build_model
from pipelines.ingest import ingest
from pipelines.ray_runtime import init_ray
from pipelines.train import train


class PlanDataset(torch.utils.data.Dataset):
    def __init__(self, plan: list[ClipRequest], cfg: ExperimentConfig) -> None:
        self.plan, self.cfg = plan, cfg
        self.augment = AugmentSpec(flip_p=cfg.data.flip_p, crop_p=cfg.data.crop_p, erase_p=cfg.data.erase_p)

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        batch = {k: np.array([self.plan[i][k], None], dtype=object)[:1] for k in self.plan[i]}
        out = decode_requests(batch, (self.cfg.input.height, self.cfg.input.width), self.cfg.model.num_frames,
                              self.augment)  # fmt: skip
        return out["clip"][0], int(out["label"][0])


def plain_loop(cfg: ExperimentConfig, epochs: int) -> float:
    """clips/s of the last epoch of a single-process loop with a one-worker DataLoader."""
    tracklets = read_manifest(cfg.data.manifest)
    num_classes = len(train_labels(tracklets))
    torch.manual_seed(cfg.train.model_seed)
    model = build_model(cfg.model)
    objective = build_objective(cfg.loss, model.embedding_dim, num_classes, num_frames=cfg.model.num_frames)
    optimizer = build_optimizer(model, cfg.optim)
    rate = 0.0
    for epoch in range(epochs):
        plan = epoch_plan(tracklets, cfg.model.num_frames, cfg.data.seed, epoch, cfg.data.batch_size_per_worker,
                          cfg.data.sampler, cfg.data.tracklets_per_id)  # fmt: skip
        loader = torch.utils.data.DataLoader(PlanDataset(plan, cfg), batch_size=cfg.data.batch_size_per_worker,
                                             num_workers=1)  # fmt: skip
        model.train()
        start, clips = time.perf_counter(), 0
        for batch_clips, labels in loader:
            train_step(model, objective, optimizer, clips_to_input(batch_clips, torch.device("cpu")), labels)
            clips += len(labels)
        rate = clips / (time.perf_counter() - start)
    return rate


def ray_train(cfg: ExperimentConfig, workers: int, epochs: int, root: Path) -> float:
    # Each worker gets its share of the cores (Ray sets its torch threads to it), as the plain loop has them all.
    cpus = max(1, (os.cpu_count() or 1) // workers)
    cfg = cfg.with_overrides({"train.num_workers": workers, "train.cpus_per_worker": cpus, "optim.epochs": epochs,
                              "train.eval_every": 1000,
                              "train.name": f"bench-{workers}", "train.storage_path": str(root / "ray_results"),
                              "train.tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
                              "train.registered_model": None})  # fmt: skip
    init_ray(None, cfg)
    try:
        return train(cfg)["metrics"]["data/clips_per_s"]
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, help="an ingested manifest (default: generate a synthetic one)")
    parser.add_argument("--config", type=Path, default=Path("synthetic_cpu"), help="a path or a built-in config's name")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest = args.manifest
        if manifest is None:
            generate(SyntheticSpec(num_train_ids=24, num_test_ids=4, num_cameras=2), root / "synth")
            ray.init(include_dashboard=False)
            ingest("videos", root / "synth", root / "ingest")
            ray.shutdown()
            manifest = root / "ingest"
        cfg = ExperimentConfig.from_yaml(args.config).with_overrides({"data.manifest": str(manifest.resolve())})
        plain = plain_loop(cfg, args.epochs)
        rows = [("plain PyTorch loop, 1 process", plain)]
        for workers in (1, 2):
            rows.append(
                (f"Ray Train, {workers} worker{'s' * (workers > 1)}", ray_train(cfg, workers, args.epochs, root))
            )
    shape = f"K={cfg.model.num_attention_models}, N={cfg.model.num_frames}, {cfg.input.height}×{cfg.input.width}"
    print(f"\n{cfg.model.backbone}, {shape}, {cfg.data.batch_size_per_worker} clips per worker step, CPU")
    print("| setup | clips/s (last epoch) | ratio |\n|---|---|---|")
    for name, rate in rows:
        print(f"| {name} | {rate:.1f} | {rate / plain:.2f}× |")


if __name__ == "__main__":
    main()
