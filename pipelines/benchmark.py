"""Evaluate by the iLIDS-VID / PRID2011 protocol in one command: mean ± std over the splits, each split a run.

The protocol (Wang et al. 2014; Li et al. 2018): 10 random half/half splits of the identities; train on one half
(both cameras), query the other half's first-camera tracklets against its second-camera ones; report the mean over
the splits. Each split S is ingested into OUT/ingest/split-S (as `drsta ingest --split S`), trained as run
`<dataset>-splitS` under OUT/runs (the `train()` that `drsta train` and `drsta tune` run) and scored by its
final epoch's evaluation. The splits train in parallel on the Ray cluster, as one Ray Tune grid over the split
index (--max-concurrent at once). MLflow gets a parent run for the benchmark with a child run per split, and the
parent gets `benchmark/rank1_mean`, `benchmark/rank1_std`, ... `benchmark/mAP_std`; OUT/results.md (and
results.json) hold the table. No model is registered: each split's model has seen only half the identities.

Resumable: OUT/benchmark.json records the dataset, root, resolved config and parent run. Re-running the same
command skips finished ingest chunks and every split whose final-epoch evaluation is in MLflow, continues a split
that started from its latest checkpoint, and trains the rest; another dataset, root or config in the same OUT is
refused (its results could not be averaged with the earlier ones). On a multi-node cluster OUT, like --root,
must be on storage that every node reads (the manifests, and by default the runs, live there).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import ray
import ray.tune
import scipy.io
from ray.tune.integration.ray_train import TuneReportCallback

from drsta.config import ExperimentConfig, TrainConfig
from drsta.data.datasets import READERS, prid2011
from drsta.data.tracklet import Tracklet
from drsta.io import read_json, write_atomic
from drsta.metrics import mean_over_splits
from pipelines import ingest
from pipelines.cluster import ReleaseLeakedPlacementGroups
from pipelines.commands import parse_settings
from pipelines.ray_runtime import disconnect, init_ray
from pipelines.run import TrainingRun, artifact_location
from pipelines.tracking import default_tracking_uri, flatten_params, get_or_create_experiment
from pipelines.train import SCORE, train
from pipelines.tune import TRIAL_DRIVER

DATASETS = {"ilidsvid": "iLIDS-VID", "prid2011": "PRID2011"}
CAMERAS = {"ilidsvid": ("cam1", "cam2"), "prid2011": ("cam_a", "cam_b")}  # (query, gallery), as the readers use
ILIDS_SPLITS = Path("train-test people splits") / "train_test_splits_ilidsvid.mat"  # as drsta.data.datasets.ilidsvid
RECORD = "benchmark.json"
INGEST_DIR = "ingest"
RUNS_DIR = "runs"
TUNE_DIR = "benchmark-trials"  # under train.storage_path: one Tune experiment per invocation that trains
RANKS = (1, 5, 10, 20)
METRICS = {**{f"rank{r}": f"val/rank{r}" for r in RANKS}, "mAP": SCORE}  # table column -> the runs' metric key


@dataclass(frozen=True)
class Benchmark:
    """A benchmark whose inputs were checked and whose output directories were claimed; running it needs Ray."""

    dataset: str
    root: Path
    out: Path
    splits: list[int]
    base: ExperimentConfig  # every split's config, but for data.manifest and train.name (`split_config`)
    tracklets: dict[int, list[Tracklet]]  # each split's, for its ingest
    parent_run_id: str | None  # the MLflow parent run of an earlier invocation


def prepare(dataset: str, root: Path, out: Path, splits: str, cfg: ExperimentConfig) -> Benchmark:
    """Check every input, then claim OUT and each split's ingest directory: nothing here needs Ray.

    Raises:
        ValueError, FileNotFoundError, FileExistsError: a bad dataset, root, --splits, --out or config.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}: the split protocol is for {', '.join(sorted(DATASETS))}")
    root, out = Path(root), Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file: give a new directory (or an earlier benchmark's, to resume)")
    READERS[dataset](root, split=0)  # the root and its layout (a scan only lists paths)
    chosen = parse_splits(splits, num_splits(dataset, root), DATASETS[dataset])
    base = benchmark_config(cfg, dataset, out)
    record = claim_output(out, {"dataset": dataset, "root": str(root.resolve()), "config": base.to_dict()})
    tracklets = {split: ingest.prepare(dataset, root, ingest_dir(out, split), split=split) for split in chosen}
    return Benchmark(dataset, root, out, chosen, base, tracklets, record.get("parent_run_id"))


def parse_splits(text: str, num_splits: int, dataset: str = "the dataset") -> list[int]:
    """`all` or comma-separated split indices (`0,3,5`), checked against `num_splits`; sorted."""
    if text.strip() == "all":
        return list(range(num_splits))
    splits: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not re.fullmatch(r"[+-]?\d+", part):
            raise ValueError(f"--splits {text!r}: {part!r} is not a split index; give 'all' or indices like 0,3,5")
        split = int(part)
        if not 0 <= split < num_splits:
            raise ValueError(f"--splits {text!r}: split {split} is out of range; {dataset} has {num_splits} "
                             f"split(s) here, 0..{num_splits - 1}")  # fmt: skip
        if split in splits:
            raise ValueError(f"--splits {text!r}: split {split} is listed twice")
        splits.append(split)
    return sorted(splits)


def num_splits(dataset: str, root: Path) -> int:
    """How many splits the dataset has (iLIDS-VID: the rows of its split file, which a scan has checked)."""
    if dataset == "prid2011":
        return prid2011.NUM_SPLITS
    return len(scipy.io.loadmat(Path(root) / ILIDS_SPLITS)["ls_set"])


def benchmark_config(cfg: ExperimentConfig, dataset: str, out: Path) -> ExperimentConfig:
    """The splits' shared config: runs under OUT/runs (unless train.storage_path was set), no model registered."""
    storage = cfg.train.storage_path
    if storage == TrainConfig.model_fields["storage_path"].default:
        storage = str(out / RUNS_DIR)
    cfg = cfg.with_overrides({"train.storage_path": storage, "train.name": f"{dataset}-benchmark"})
    return cfg.with_overrides({"train.storage_path": TrainingRun.from_config(cfg).storage_path,
                               "train.registered_model": None, "data.manifest": None,
                               "train.tracking_uri": default_tracking_uri(cfg.train.tracking_uri)})  # fmt: skip


def split_config(base: ExperimentConfig, out: Path, dataset: str, split: int) -> ExperimentConfig:
    """Split `split`'s run: its ingested manifest, the run name `<dataset>-split<split>`."""
    manifest = str(ingest_dir(out, split).resolve())
    return base.with_overrides({"data.manifest": manifest, "train.name": f"{dataset}-split{split}"})


def ingest_dir(out: Path, split: int) -> Path:
    return Path(out) / INGEST_DIR / f"split-{split}"


def claim_output(out: Path, record: dict[str, Any]) -> dict[str, Any]:
    """OUT's record: written for a new (or empty) OUT; an earlier one is returned if it describes the same
    benchmark, so that re-running continues it. Refuses to mix two benchmarks in one OUT."""
    path = out / RECORD
    if path.exists():
        remedy = f"use another --out, or delete {out} to start over"
        previous = read_json(path, remedy)
        if not isinstance(previous, dict) or not isinstance(previous.get("config"), dict):
            raise ValueError(f"{path} is damaged (not a benchmark record); {remedy}")
        flat_old = flatten_params({k: previous.get(k) for k in ("dataset", "root")} | previous["config"])
        flat_new = flatten_params({k: record[k] for k in ("dataset", "root")} | record["config"])
        changed = sorted(key for key in flat_old.keys() | flat_new.keys() if flat_old.get(key) != flat_new.get(key))
        if changed:
            raise ValueError(f"{out} holds a benchmark with other settings ({', '.join(changed)} differ): its "
                             f"results would not average with these; {remedy}")  # fmt: skip
        return previous
    if out.is_dir() and any(out.iterdir()):
        raise FileExistsError(f"--out {out} is not empty and holds no {RECORD} (it is not an earlier benchmark): "
                              "nothing there is overwritten; give a new or empty directory")  # fmt: skip
    write_atomic(path, json.dumps(record, indent=2))
    return record


def split_trial(config: dict[str, Any]) -> None:
    """A Tune trial: one split's training run on its own Ray Train workers (as `pipelines.tune.trial`, but named by
    the split, so that a later invocation finds the run again)."""
    base = ExperimentConfig.from_dict(config["base"])
    cfg = split_config(base, Path(config["out"]), config["dataset"], config["split"])
    resume = TrainingRun.from_config(cfg).started()
    train(cfg, resume=resume, callbacks=[TuneReportCallback()], parent_run_id=config["parent_run_id"])


def run_benchmark(bench: Benchmark, max_concurrent: int = 2) -> dict[str, Any]:
    """Ingest, train and evaluate every split of `bench` on the connected Ray cluster; write OUT/results.md.

    Returns:
        per_split (split -> metrics, for the splits evaluated), failed (split -> reason), summary (metric ->
        (mean, std); empty unless every split was evaluated), parent_run_id, report (the results text).
    """
    client = mlflow.MlflowClient(bench.base.train.tracking_uri)
    parent_run_id = parent_run(client, bench)
    try:
        for split in bench.splits:
            print(f"benchmark: split {split}: ingest into {ingest_dir(bench.out, split)}")
            ingest.process(bench.tracklets[split], ingest_dir(bench.out, split))
        done = evaluated_splits(client, bench)
        pending = [split for split in bench.splits if split not in done]
        if done:
            print(f"benchmark: split(s) {_listed(done)} already evaluated (MLflow): not trained again")
        failed = train_splits(bench, pending, parent_run_id, max_concurrent) if pending else {}
        done = evaluated_splits(client, bench)
        close_split_runs(client, bench, set(done))
        failed = {split: failed.get(split, "no final-epoch evaluation in MLflow")
                  for split in bench.splits if split not in done}  # fmt: skip
        outcome = {"per_split": done, "failed": failed, "summary": {}, "parent_run_id": parent_run_id, "report": ""}
        if failed:
            client.set_terminated(parent_run_id, "FAILED")
            return outcome
        outcome["summary"] = summarize(done)
        outcome["report"] = write_results(bench, done, outcome["summary"], parent_run_id)
        log_summary(client, parent_run_id, outcome["summary"], bench)
    except BaseException:
        client.set_terminated(parent_run_id, "FAILED")
        raise
    client.set_terminated(parent_run_id, "FINISHED")
    return outcome


def parent_run(client: mlflow.MlflowClient, bench: Benchmark) -> str:
    """The benchmark's MLflow run: the recorded one (running again), or a new one, recorded in OUT."""
    if bench.parent_run_id is not None:
        client.update_run(bench.parent_run_id, status="RUNNING")
        return bench.parent_run_id
    cfg = bench.base
    experiment_id = get_or_create_experiment(client, cfg.train.experiment, artifact_location(cfg.train.tracking_uri))
    run = client.create_run(experiment_id, run_name=cfg.train.name, tags={"drsta_benchmark": bench.dataset})
    client.log_param(run.info.run_id, "dataset", bench.dataset)
    client.log_param(run.info.run_id, "root", str(bench.root.resolve()))
    client.log_dict(run.info.run_id, cfg.to_dict(), "config.yaml")
    record = read_json(bench.out / RECORD, f"delete {bench.out} to start over") | {"parent_run_id": run.info.run_id}
    write_atomic(bench.out / RECORD, json.dumps(record, indent=2))
    return run.info.run_id


def train_splits(bench: Benchmark, splits: list[int], parent_run_id: str, max_concurrent: int) -> dict[int, str]:
    """Train `splits` as one Ray Tune grid over the split index; returns why each failed split failed."""
    print(f"benchmark: training split(s) {_listed(splits)}, {max_concurrent} at once")
    param_space = {"split": ray.tune.grid_search(splits), "base": bench.base.to_dict(), "dataset": bench.dataset,
                   "out": str(bench.out.resolve()), "parent_run_id": parent_run_id}  # fmt: skip
    run_config = ray.tune.RunConfig(name=f"{bench.dataset}-{time.strftime('%Y%m%d-%H%M%S')}",
                                    storage_path=f"{bench.base.train.storage_path}/{TUNE_DIR}",
                                    callbacks=[ReleaseLeakedPlacementGroups()])  # fmt: skip
    tuner = ray.tune.Tuner(
        ray.tune.with_resources(split_trial, TRIAL_DRIVER),
        param_space=param_space,
        tune_config=ray.tune.TuneConfig(max_concurrent_trials=max_concurrent),
        run_config=run_config,
    )
    results = tuner.fit()
    return {result.config["split"]: _last_line(result.error) for result in results if result.error is not None}


def evaluated_splits(client: mlflow.MlflowClient, bench: Benchmark) -> dict[int, dict[str, float]]:
    """The final-epoch metrics (table column -> value) of every split whose run has them in MLflow."""
    done = {}
    for split in bench.splits:
        metrics = final_evaluation(client, split_config(bench.base, bench.out, bench.dataset, split))
        if metrics is not None:
            done[split] = metrics
    return done


def final_evaluation(client: mlflow.MlflowClient, cfg: ExperimentConfig) -> dict[str, float] | None:
    """A run's evaluation at its last epoch (which always evaluates), or None if it has none (yet)."""
    run_id = TrainingRun.from_config(cfg).mlflow_run_id()
    if run_id is None:
        return None
    last = cfg.optim.epochs - 1
    metrics = {}
    for column, key in METRICS.items():
        values = [m.value for m in client.get_metric_history(run_id, key) if m.step == last]
        if not values:
            return None
        metrics[column] = float(values[-1])
    return metrics


def close_split_runs(client: mlflow.MlflowClient, bench: Benchmark, done: set[int]) -> None:
    """End a split's MLflow run that its trial left running: FINISHED if it was evaluated, else FAILED."""
    for split in bench.splits:
        run_id = TrainingRun.from_config(split_config(bench.base, bench.out, bench.dataset, split)).mlflow_run_id()
        if run_id is not None and client.get_run(run_id).info.status == "RUNNING":
            client.set_terminated(run_id, "FINISHED" if split in done else "FAILED")


def summarize(per_split: Mapping[int, Mapping[str, float]]) -> dict[str, tuple[float, float]]:
    """Mean and (population, numpy's ddof=0) standard deviation over the splits of each table column."""
    # Each run logs its CMC at RANKS only: those values stand for its CMC curve in mean_over_splits.
    results = [(np.array([metrics[f"rank{r}"] for r in RANKS]), metrics["mAP"]) for metrics in per_split.values()]
    mean_cmc, mean_map = mean_over_splits(results)
    std_cmc = np.stack([cmc for cmc, _ in results]).std(axis=0)
    std_map = float(np.std([m for _, m in results]))
    summary = {f"rank{r}": (float(mean_cmc[i]), float(std_cmc[i])) for i, r in enumerate(RANKS)}
    return summary | {"mAP": (mean_map, std_map)}


def format_table(per_split: Mapping[int, Mapping[str, float]], summary: Mapping[str, tuple[float, float]]) -> str:
    """A Markdown table in %: one row per split, then `mean ± std`."""
    header = ["split", *(f"rank-{r}" for r in RANKS), "mAP"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" for _ in header) + "|"]
    for split, metrics in sorted(per_split.items()):
        lines.append(f"| {split} | " + " | ".join(f"{100 * metrics[c]:.1f}" for c in METRICS) + " |")
    if summary:
        cells = (f"{100 * summary[c][0]:.1f} ± {100 * summary[c][1]:.1f}" for c in METRICS)
        lines.append("| mean ± std | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def descriptor_protocol(num_frames: int, num_clips: int) -> str:
    """How a tracklet's test-time descriptor is made (`drsta.data.sampling.evaluation_indices`)."""
    if num_clips == 1:
        return (f"one clip per tracklet: the middle frame of each of N = {num_frames} equal chunks of the tracklet "
                "(the model is tied to its N)")  # fmt: skip
    return (f"{num_clips} clips per tracklet, each taking one frame from each of N = {num_frames} equal chunks "
            f"(clip c at fraction (c + ½) / {num_clips} of every chunk); their descriptors are averaged")  # fmt: skip


def write_results(
    bench: Benchmark,
    per_split: Mapping[int, Mapping[str, float]],
    summary: Mapping[str, tuple[float, float]],
    parent_run_id: str,
) -> str:
    """OUT/results.md (the text, also returned) and OUT/results.json."""
    cfg = bench.base
    query, gallery = CAMERAS[bench.dataset]
    descriptor = descriptor_protocol(cfg.model.num_frames, cfg.data.eval_clips_per_tracklet)
    text = (
        f"# {DATASETS[bench.dataset]}: {len(per_split)} split(s)\n\n"
        f"- Protocol: half/half identity splits {_listed(per_split)} of {bench.root.resolve()}; each trained on "
        f"its train half (both cameras), {query} of the test half queried against its {gallery}; CMC and mAP "
        f"(in %) of each split's final epoch (epoch {cfg.optim.epochs}); mean ± std over the splits "
        "(population std, ddof=0).\n"
        f"- Test-time descriptor: {descriptor}.\n"
        f"- MLflow: parent run {parent_run_id} in experiment {cfg.train.experiment!r} at {cfg.train.tracking_uri}; "
        f"runs under {cfg.train.storage_path}.\n\n" + format_table(per_split, summary)
    )
    write_atomic(bench.out / "results.md", text)
    results = {"dataset": bench.dataset, "per_split": {str(s): m for s, m in sorted(per_split.items())},
               "mean": {c: v[0] for c, v in summary.items()}, "std": {c: v[1] for c, v in summary.items()},
               "descriptor": descriptor, "parent_run_id": parent_run_id}  # fmt: skip
    write_atomic(bench.out / "results.json", json.dumps(results, indent=2))
    return text


def log_summary(
    client: mlflow.MlflowClient, run_id: str, summary: Mapping[str, tuple[float, float]], bench: Benchmark
) -> None:
    """`benchmark/<column>_mean` and `_std` (fractions, as val/*), the splits and the table, on the parent run."""
    for column, (mean, std) in summary.items():
        client.log_metric(run_id, f"benchmark/{column}_mean", mean)
        client.log_metric(run_id, f"benchmark/{column}_std", std)
    client.log_metric(run_id, "benchmark/num_splits", len(bench.splits))
    client.set_tag(run_id, "splits", ",".join(map(str, bench.splits)))  # a tag: a later invocation may differ
    client.log_artifact(run_id, str(bench.out / "results.md"))


def _listed(splits: Sequence[int] | Mapping[int, Any]) -> str:
    return ", ".join(str(split) for split in sorted(splits))


def _last_line(error: BaseException) -> str:
    """The last line of an error from a trial (Ray's carry the remote traceback before the message)."""
    return (str(error).strip().splitlines() or [type(error).__name__])[-1]


def run(args: argparse.Namespace) -> None:
    if args.max_concurrent < 1:
        raise ValueError(f"--max-concurrent must be >= 1 (splits trained at once), got {args.max_concurrent}")
    cfg = ExperimentConfig.from_yaml(args.config) if args.config else ExperimentConfig()
    cfg = cfg.with_overrides(parse_settings(args.set))
    # Before Ray starts: credentials in the URI move to the environment, which a local Ray's workers inherit.
    cfg = cfg.with_overrides({"train.tracking_uri": default_tracking_uri(args.tracking_uri or cfg.train.tracking_uri)})
    bench = prepare(args.dataset, args.root, args.out, args.splits, cfg)
    init_ray(args.address, bench.base, concurrent_runs=args.max_concurrent, command="benchmark")
    try:
        outcome = run_benchmark(bench, args.max_concurrent)
    finally:
        disconnect()
    if outcome["failed"]:
        reasons = "; ".join(f"split {split}: {reason}" for split, reason in sorted(outcome["failed"].items()))
        sys.exit(f"drsta benchmark: error: {len(outcome['failed'])} of {len(bench.splits)} split(s) not evaluated "
                 f"({reasons}); re-run the same command to continue them (evaluated splits are kept)")  # fmt: skip
    print(outcome["report"], end="")
    print(f"benchmark: written to {args.out / 'results.md'}; MLflow parent run {outcome['parent_run_id']}")


if __name__ == "__main__":
    from pipelines.cli import main

    main(["benchmark", *sys.argv[1:]])
