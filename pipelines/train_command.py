"""`drsta train`: the config from the command line, one training run (`pipelines.train.train`) on Ray, and its
outcome in a line or two (exit status 1 if it trained but failed to record everything).

    drsta train --config synthetic_cpu --manifest data/synth-ingest
    python -m pipelines.train_command --config synthetic_cpu --manifest data/synth-ingest
"""

from __future__ import annotations

import argparse
import sys

from drsta.config import ExperimentConfig
from pipelines.commands import parse_settings
from pipelines.ray_runtime import disconnect, init_ray
from pipelines.tracking import default_tracking_uri
from pipelines.train import SCORE, train


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    """The YAML config (or the defaults), then --set overrides, then the named flags that were given."""
    cfg = ExperimentConfig.from_yaml(args.config) if args.config else ExperimentConfig()
    cfg = cfg.with_overrides(parse_settings(args.set))
    flags = {
        "data.manifest": str(args.manifest) if args.manifest else None,
        "train.num_workers": args.num_workers,
        "train.use_gpu": args.use_gpu,
        "optim.epochs": args.epochs,
        "train.name": args.name,
        "train.storage_path": args.storage_path,
        "train.tracking_uri": args.tracking_uri,
    }
    return cfg.with_overrides({key: value for key, value in flags.items() if value is not None})


def run(args: argparse.Namespace) -> None:
    cfg = config_from_args(args)
    # Before Ray starts: credentials in the URI move to the environment, which a local Ray's workers inherit.
    cfg = cfg.with_overrides({"train.tracking_uri": default_tracking_uri(cfg.train.tracking_uri)})
    init_ray(args.address, cfg)
    try:
        outcome = train(cfg, resume=args.resume)
    finally:
        disconnect()
    metrics = outcome["metrics"]
    print(f"train: finished {cfg.train.name}: mAP {metrics.get(SCORE, float('nan')):.3f}, "
          f"rank-1 {metrics.get('val/rank1', float('nan')):.3f}; checkpoints in {outcome['path']}")  # fmt: skip
    if outcome["model_version"] is not None:
        print(f"train: registered models:/{cfg.train.registered_model}/{outcome['model_version'].version}")
    if outcome["not_recorded"]:  # trained, but a quiet success would hide what is missing: exit status 1
        sys.exit(f"drsta train: error: {cfg.train.name} trained, but {'; '.join(outcome['not_recorded'])}")


if __name__ == "__main__":
    from pipelines.cli import main

    main(["train", *sys.argv[1:]])
