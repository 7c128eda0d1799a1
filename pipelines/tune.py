"""Sweep K, σ, λ (and whatever else a space names) with Ray Tune; every trial is a distributed training run.

Each trial is a Tune function trainable that drives its own TorchTrainer (`pipelines.train.build_trainer`)
and forwards the reports with `TuneReportCallback`; ASHA stops weak trials on val/mAP. MLflow gets one
parent run per sweep and a child run per trial. The best trial's model is registered and becomes the
`champion` alias only if it beats the current champion evaluated on the same data (the old one becomes
`previous`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import mlflow
import ray
import ray.train
import ray.tune
import torch
from matplotlib.figure import Figure
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from drsta import viz
from drsta.config import ExperimentConfig
from drsta.data.manifest import fingerprint, read_manifest
from drsta.search_space import Distribution, SearchSpace, expand_bundles
from pipelines.cluster import ReleaseLeakedPlacementGroups, release_leaked_placement_groups
from pipelines.commands import WorkFailed, parse_settings
from pipelines.console import trial_line, verbose
from pipelines.models import promote
from pipelines.ray_runtime import disconnect, init_ray
from pipelines.run import TrainingRun, artifact_location, resolve_paths, storage_exists
from pipelines.tracking import RunTracker, default_tracking_uri, get_or_create_experiment, log_model
from pipelines.train import CHECKPOINT_PATH, EPOCHS_DONE, SCORE, load_trained_model, train

TRIALS_DIR = "trials"
# A trial only drives its TorchTrainer (its workers hold the CPUs): a sliver of a CPU, so that concurrent
# trials' drivers never take the CPUs their own workers wait for (Tune needs some resource per trial).
TRIAL_DRIVER = {"CPU": 0.01}


def trial(config: dict[str, Any]) -> None:
    """A Tune trial: the base config with this trial's sampled values, trained on its own Ray Train workers."""
    params = expand_bundles(config["params"], config.get("bundles", {}))  # a bundle's name -> its overrides
    cfg = ExperimentConfig.from_dict(config["base"]).with_overrides(params)
    trial_id = ray.tune.get_context().get_trial_id()  # stable across Tuner.restore: names the Train run
    cfg = cfg.with_overrides({"train.name": f"{config['sweep']}-{trial_id}", "train.registered_model": None})
    # A restored sweep restarts its unfinished trials: each continues its own run (MLflow run, checkpoints).
    resume = TrainingRun.from_config(cfg).started()
    train(cfg, resume=resume, callbacks=[TuneReportCallback()], parent_run_id=config["parent_run_id"])


class TrialLines(ray.tune.Callback):
    """The sweep's progress on the driver: a line per trial result (`pipelines.console.trial_line`), and one per
    trial that ends or errors."""

    def __init__(self, keys: list[str], epochs: int) -> None:
        self.keys, self.epochs = keys, epochs

    def _params(self, trial: Any) -> dict[str, Any]:
        return {key: trial.config["params"][key] for key in self.keys}

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        print(trial_line(trial.trial_id, self._params(trial), self.epochs, result), flush=True)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        done = int(trial.last_result.get(EPOCHS_DONE, 0))
        ended = "finished" if done >= self.epochs else f"stopped early by ASHA after {done} epochs"
        print(f"trial {trial.trial_id} {ended}", flush=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        print(f"trial {trial.trial_id} errored: see {trial.path}", flush=True)


def tune_distribution(distribution: Distribution, grid: bool) -> Any:
    """The Ray Tune sampler of a validated distribution."""
    if distribution.choice is not None:
        return ray.tune.grid_search(distribution.choice) if grid else ray.tune.choice(distribution.choice)
    low, high = getattr(distribution, distribution.kind)
    return {"uniform": ray.tune.uniform, "loguniform": ray.tune.loguniform, "randint": ray.tune.randint}[
        distribution.kind
    ](low, high)


def trials_root(base: ExperimentConfig) -> str:
    """Where Tune keeps the sweeps of `base`'s storage path: a local path or a URI (s3://...), never a `Path`."""
    return f"{base.train.storage_path}/{TRIALS_DIR}"


def build_tuner(space: SearchSpace, base: ExperimentConfig, sweep: str, parent_run_id: str | None) -> ray.tune.Tuner:
    """The sweep's Tuner; `base` has its paths resolved (`pipelines.run.resolve_paths`)."""
    grid = space.searcher == "grid"
    param_space = {
        "base": base.to_dict(),
        "sweep": sweep,
        "parent_run_id": parent_run_id,
        "params": {key: tune_distribution(d, grid) for key, d in space.params.items()},
        "bundles": space.bundles,
    }
    callbacks = [ReleaseLeakedPlacementGroups(), TrialLines(list(space.params), base.optim.epochs)]
    # Tune's own status table only with drsta --verbose; otherwise a line per trial result (TrialLines).
    run_config = ray.tune.RunConfig(name=sweep, storage_path=trials_root(base), callbacks=callbacks,
                                    verbose=None if verbose() else 0)  # fmt: skip
    return ray.tune.Tuner(
        ray.tune.with_resources(trial, TRIAL_DRIVER),
        param_space=param_space,
        tune_config=tune_config(space, base),
        run_config=run_config,
    )


def tune_config(space: SearchSpace, base: ExperimentConfig) -> ray.tune.TuneConfig:
    # Epochs done, not Tune's training_iteration: that restarts from 1 when a restored trial continues its run.
    scheduler = ASHAScheduler(time_attr=EPOCHS_DONE, max_t=base.optim.epochs,
                              grace_period=space.scheduler.grace_period,
                              reduction_factor=space.scheduler.reduction_factor)  # fmt: skip
    searcher = OptunaSearch(seed=space.seed) if space.searcher == "optuna" else None
    return ray.tune.TuneConfig(
        metric=SCORE,
        mode="max",
        num_samples=1 if space.searcher == "grid" else space.num_samples,
        max_concurrent_trials=space.max_concurrent,
        scheduler=scheduler,
        search_alg=searcher,
    )


def load_space(space_path: Path, settings: dict[str, Any] | None = None) -> tuple[SearchSpace, ExperimentConfig]:
    """The space file, with command-line `settings` (num_samples, max_concurrent, searcher) over its own."""
    space, base = SearchSpace.from_yaml(space_path)
    if settings:
        space = SearchSpace.model_validate(space.model_dump() | settings)
    return space, base


def sweep(
    space_path: Path,
    manifest: Path,
    name: str,
    resume: bool = False,
    overrides: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run (or resume) a sweep on the connected Ray cluster; returns the best trial and the promotion outcome.

    `overrides` change the base experiment config (dotted keys), `settings` the space's own fields.
    """
    space, base = load_space(space_path, settings)
    base = resolve_paths(base.with_overrides({"data.manifest": str(manifest)} | (overrides or {})))
    trials_path = f"{trials_root(base)}/{name}"
    if storage_exists(trials_path) and not resume:
        raise ValueError(f"sweep {name!r} already exists in {trials_root(base)}: pass --resume or another --name")
    if resume and not ray.tune.Tuner.can_restore(trials_path):
        raise ValueError(f"nothing to resume: no sweep {name!r} in {trials_root(base)}")
    parent = parent_run(base, name, space_path, space)
    if resume:
        release_leaked_placement_groups()  # what a killed driver may have left reserved
        tuner = ray.tune.Tuner.restore(trials_path, ray.tune.with_resources(trial, TRIAL_DRIVER),
                                       resume_unfinished=True, resume_errored=True)  # fmt: skip
    else:
        tuner = build_tuner(space, base, name, parent.info.run_id)
    results = tuner.fit()
    client = mlflow.MlflowClient(base.train.tracking_uri)
    errored = [result.path for result in results if result.error]
    if len(errored) == len(results):
        close_trial_runs(client, parent.info.run_id, name, results, base.optim.epochs)
        client.set_terminated(parent.info.run_id, "FAILED")
        raise WorkFailed(f"every trial of sweep {name!r} errored; the first one's error is in {errored[0]}")
    best = results.get_best_result(metric=SCORE, mode="max", scope="all")
    summary = {"best_trial": best.path, "best_metrics": {k: v for k, v in best_epoch(best).items()
                                                         if isinstance(v, int | float)},
               "trials": trial_table(results, list(space.params), best), "errored": errored}  # fmt: skip
    for key, value in summary["best_metrics"].items():
        if key.startswith("val/"):
            client.log_metric(parent.info.run_id, f"best/{key}", value)
    client.log_figure(parent.info.run_id, sweep_figure(summary["trials"], list(space.params)), "figures/sweep.png")
    try:
        if base.train.registered_model:
            runs = trial_runs(client, parent.info.run_id, name)
            trained_by = runs.get(best.metrics.get("trial_id"), parent).info.run_id
            summary |= register_best(best, base, trained_by, manifest)
    finally:  # after the registration, which reopens the best trial's run to log its model
        close_trial_runs(client, parent.info.run_id, name, results, base.optim.epochs)
    client.set_terminated(parent.info.run_id, "FINISHED")
    return summary


def register_best(best: Any, base: ExperimentConfig, run_id: str, manifest: Path) -> dict[str, Any]:
    """Register the best trial's best epoch as a model of `run_id` (the trial's MLflow run), then promote it if it
    beats the champion."""
    params = expand_bundles(best.config["params"], best.config.get("bundles", {}))
    cfg = ExperimentConfig.from_dict(best.config["base"]).with_overrides(params)
    epoch = best_epoch(best)
    model = load_trained_model(ray.train.Checkpoint(epoch[CHECKPOINT_PATH]), cfg)
    tracker = RunTracker(base.train.tracking_uri, base.train.experiment, cfg.train.name, run_id=run_id)
    tracker.start()
    example = torch.rand(1, cfg.model.num_frames, 3, cfg.input.height, cfg.input.width)
    metrics = {k: v for k, v in epoch.items() if k.startswith("val/")}
    version = log_model(tracker, model, example, cfg.to_dict(), metrics, fingerprint(read_manifest(manifest)),
                        registered_name=base.train.registered_model, step=int(epoch["epoch"]))  # fmt: skip
    if version is None:
        return {"model_version": None, "promotion": None}
    promotion = promote(base.train.registered_model, int(version.version), manifest, base.train.tracking_uri)
    return {"model_version": int(version.version), "promotion": promotion}


def best_epoch(result: Any) -> dict[str, Any]:
    """The reported metrics of a trial's best-scoring epoch, its CHECKPOINT_PATH among them (Ray Train keeps the
    best checkpoints by score; the trial's last epoch need not be its best)."""
    history = result.metrics_dataframe
    return history.loc[history[SCORE].idxmax()].to_dict()


def trial_runs(client: mlflow.MlflowClient, parent_run_id: str, sweep: str) -> dict[str, Any]:
    """The MLflow runs of a sweep's trials (children of its parent run, named `<sweep>-<trial id>`), by trial id."""
    parent = client.get_run(parent_run_id)
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}'")
    prefix = f"{sweep}-"
    return {child.info.run_name.removeprefix(prefix): child for child in children
            if child.info.run_name.startswith(prefix)}  # fmt: skip


def close_trial_runs(client: mlflow.MlflowClient, parent_run_id: str, sweep: str, results: Any, epochs: int) -> None:
    """Give every trial's MLflow run its final status: FINISHED (all epochs), KILLED (stopped early) or FAILED.

    Tune ends a trial by stopping its driver, also when ASHA sees its last epoch (t = max_t), so a trial's own
    training run never gets to close its MLflow run: the sweep does, from Tune's results.
    """
    runs = trial_runs(client, parent_run_id, sweep)
    for result in results:
        child = runs.get(result.metrics.get("trial_id"))
        if child is None:
            continue
        if result.error is not None:
            status = "FAILED"
        else:
            status = "FINISHED" if result.metrics.get(EPOCHS_DONE, 0) >= epochs else "KILLED"
        if child.info.status != status:
            client.set_terminated(child.info.run_id, status)


def trial_table(results: Any, keys: list[str], best: Any) -> list[dict[str, Any]]:
    """One row per trial: its id, searched values, epochs run, best val mAP and rank-1, whether it won."""
    rows = []
    for result in results:
        history = result.metrics_dataframe
        scored = history[history[SCORE] >= 0] if history is not None and SCORE in history else None
        top = scored.loc[scored[SCORE].idxmax()] if scored is not None and len(scored) else None
        rows.append({"trial": result.metrics.get("trial_id"), **{key: result.config["params"][key] for key in keys},
                     "epochs": int(result.metrics.get(EPOCHS_DONE, 0)),
                     "mAP": None if top is None else float(top[SCORE]),
                     "rank1": None if top is None else float(top["val/rank1"]),
                     "error": result.error is not None, "best": result.path == best.path})  # fmt: skip
    return rows


def sweep_figure(rows: list[dict[str, Any]], keys: list[str]) -> Figure:
    """Each trial's best val mAP against each searched value: the numbers of the sweep's table (`trial_table`
    rows), its best-scoring epoch's, not its last epoch's (ASHA and overfitting make them differ)."""
    best = [i for i, row in enumerate(rows) if row["best"] and row["mAP"] is not None]
    return viz.sweep_figure({key: [row[key] for row in rows] for key in keys}, [row["mAP"] for row in rows],
                            best=best[0] if best else None, score_label="best val mAP")  # fmt: skip


def parent_run(base: ExperimentConfig, name: str, space_path: Path, space: SearchSpace) -> Any:
    """The sweep's MLflow run (found again by its name when the sweep resumes)."""
    client = mlflow.MlflowClient(base.train.tracking_uri)
    experiment_id = get_or_create_experiment(client, base.train.experiment, artifact_location(base.train.tracking_uri))
    found = client.search_runs([experiment_id], f"tags.drsta_sweep = '{name}'")
    if found:
        client.update_run(found[0].info.run_id, status="RUNNING")
        return found[0]
    run = client.create_run(experiment_id, run_name=name, tags={"drsta_sweep": name,
                            "data_fingerprint": fingerprint(read_manifest(base.data.manifest))})  # fmt: skip
    client.log_param(run.info.run_id, "space", str(space_path))
    client.log_param(run.info.run_id, "searcher", space.searcher)
    client.log_param(run.info.run_id, "scheduler", f"asha(grace={space.scheduler.grace_period}, "
                     f"eta={space.scheduler.reduction_factor}, max_t={base.optim.epochs})")  # fmt: skip
    client.log_dict(run.info.run_id, space.model_dump(mode="json"), "space.yaml")
    return run


def run(args: argparse.Namespace) -> None:
    flags = {"train.tracking_uri": args.tracking_uri, "train.storage_path": args.storage_path}
    overrides = parse_settings(args.set) | {key: value for key, value in flags.items() if value}
    settings = {key: value for key, value in {"num_samples": args.num_samples, "max_concurrent": args.max_concurrent,
                                              "searcher": args.searcher}.items() if value is not None}  # fmt: skip
    space, base = load_space(args.space, settings)
    base = base.with_overrides(overrides)  # a bad --set is named before Ray starts
    # Before Ray starts: credentials in the URI move to the environment, which a local Ray's workers inherit.
    overrides["train.tracking_uri"] = default_tracking_uri(args.tracking_uri or base.train.tracking_uri)
    # The workers' output (an epoch line each) only with --verbose: TrialLines shows every trial's epochs here.
    init_ray(args.address, base, concurrent_runs=space.max_concurrent, log_to_driver=verbose(), command="tune")
    try:
        summary = sweep(args.space, args.manifest, args.name, args.resume, overrides, settings)
    finally:
        disconnect()
    print(f"tune: best trial {summary['best_trial']}: mAP {summary['best_metrics'].get(SCORE, float('nan')):.3f}")
    if summary["errored"]:
        raise WorkFailed(
            f"{len(summary['errored'])} of {len(summary['trials'])} trials errored (their errors: "
            f"{', '.join(summary['errored'])}); the others are recorded, and --resume retries them"
        )


if __name__ == "__main__":
    from pipelines.cli import main

    main(["tune", *sys.argv[1:]])
