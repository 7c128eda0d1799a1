"""What Ray Train and Ray Tune add per trial on top of the bare training time.

    python benchmarks/tune.py [--manifest DIR] [--space smoke] [--trials 3] [--epochs 3]

Without --manifest a small synthetic set is generated and ingested first. "Bare" is the time the workers
spend inside epochs (training and evaluation: the `time/epoch_s` every run logs); everything else in a run's
wall time is overhead: worker processes and their imports, the process group, data-stream set-up,
checkpoints, reports, MLflow, and for Tune the trial actor, the searcher and the scheduler. "First step" is the
time from the driver's `fit` to the workers' first training step (`time/first_step_s`), "checkpoint" rank 0's
checkpoint save and report per epoch (`time/checkpoint_s`). A plain
`drsta train` run and a sequential sweep (one trial at a time, no early stopping) of the same base config are
measured on one local Ray started once (its start-up is not counted).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np
import ray

from drsta.data.synthetic import SyntheticSpec, generate
from pipelines.ingest import ingest
from pipelines.ray_runtime import init_ray
from pipelines.train import CHECKPOINT_TIME, FIRST_STEP, train
from pipelines.tune import load_space, sweep

EPOCH_TIME = "time/epoch_s"


def run_seconds(client: mlflow.MlflowClient, run_id: str) -> tuple[float, float, float]:
    """A run's seconds in epochs (bare), to its first step, and of checkpointing per epoch, from its metrics."""
    history = {key: [m.value for m in client.get_metric_history(run_id, key)]
               for key in (EPOCH_TIME, FIRST_STEP, CHECKPOINT_TIME)}  # fmt: skip
    return sum(history[EPOCH_TIME]), history[FIRST_STEP][0], float(np.mean(history[CHECKPOINT_TIME]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, help="an ingested manifest (default: generate a small one)")
    parser.add_argument("--space", type=Path, default=Path("smoke"), help="a path or a built-in space's name")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        uri = f"sqlite:///{root / 'mlflow.db'}"
        overrides = {"optim.epochs": args.epochs, "train.registered_model": None, "train.tracking_uri": uri,
                     "train.storage_path": str(root / "ray_results")}  # fmt: skip
        settings = {"num_samples": args.trials, "max_concurrent": 1, "searcher": "random",
                    "scheduler": {"grace_period": args.epochs}}  # fmt: skip
        _, base = load_space(args.space, settings)
        init_ray(None, base.with_overrides(overrides))
        try:
            manifest = args.manifest
            if manifest is None:
                spec = SyntheticSpec(seed=5, num_train_ids=8, num_test_ids=6, num_cameras=2, min_frames=8,
                                     max_frames=16, height=64, width=40, gop=4)  # fmt: skip
                generate(spec, root / "synth")
                ingest("videos", root / "synth", root / "ingest")
                manifest = root / "ingest"
            cfg = base.with_overrides(overrides | {"data.manifest": str(manifest), "train.name": "bare"})
            start = time.perf_counter()
            run = train(cfg)
            train_wall = time.perf_counter() - start

            start = time.perf_counter()
            sweep(args.space, manifest, "bench", overrides=overrides, settings=settings)
            sweep_wall = time.perf_counter() - start
        finally:
            ray.shutdown()
        client = mlflow.MlflowClient(uri)
        train_bare, train_first, train_checkpoint = run_seconds(client, run["mlflow_run_id"])
        experiment = client.get_experiment_by_name(base.train.experiment).experiment_id
        parent = client.search_runs([experiment], "tags.drsta_sweep = 'bench'")[0]
        trials = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
        trial_wall = sweep_wall / len(trials)
        trial_bare, trial_first, trial_checkpoint = np.mean([run_seconds(client, t.info.run_id) for t in trials], 0)

    print(
        f"\n{args.space}: {base.model.backbone} trunk, {base.input.height}×{base.input.width}, "
        f"{base.train.num_workers} workers, {args.epochs} epochs per run, {len(trials)} trials, CPU"
    )
    print("| per run | wall (s) | bare epochs (s) | overhead (s) | wall / bare | first step (s) | checkpoint (s/ep) |")
    print("|---|---|---|---|---|---|---|")
    rows = (("Ray Train run (drsta train)", train_wall, train_bare, train_first, train_checkpoint),
            ("Tune trial (sequential sweep)", trial_wall, trial_bare, trial_first, trial_checkpoint))  # fmt: skip
    for name, wall, bare, first, checkpoint in rows:
        print(
            f"| {name} | {wall:.1f} | {bare:.1f} | {wall - bare:.1f} | {wall / bare:.2f}× | {first:.1f} "
            f"| {checkpoint:.2f} |"
        )
    print(
        f"Tune's own share per trial: {trial_wall - trial_bare - (train_wall - train_bare):.1f} s "
        f"(the sweep's wall includes its MLflow parent run and the figure at the end)"
    )


if __name__ == "__main__":
    main()
