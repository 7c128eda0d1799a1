"""Train DRSTA with Ray Train (V2): DDP workers over their shards of each epoch's stream, a checkpoint every
epoch, evaluation every few epochs, MLflow tracking from rank 0, the final model registered.

A run is identified by (train.storage_path, train.name) (`pipelines.run`): re-running with --resume continues it
from its latest checkpoint; a lost worker or node restarts the workers from the latest checkpoint
(train.max_failures). `drsta train` is `pipelines.train_command`.
"""

from __future__ import annotations

import functools
import logging
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
from ray.train import (
    CheckpointConfig,
    CheckpointUploadMode,
    FailureConfig,
    LoggingConfig,
    RunConfig,
    ScalingConfig,
)
from ray.train.torch import TorchTrainer

from drsta import viz
from drsta.claims import degraded_frames
from drsta.config import ExperimentConfig
from drsta.data.annotations import Annotations, FrameAnnotations
from drsta.data.decode import read_clip
from drsta.data.manifest import fingerprint, read_manifest, read_manifest_annotations
from drsta.data.plan import train_labels
from drsta.data.sampling import evaluation_indices
from drsta.data.tracklet import Tracklet
from drsta.engine import (
    EvaluationClaims,
    TrackletEmbeddings,
    build_optimizer,
    build_scheduler,
    clip_truth,
    clips_to_input,
    embed,
    load_state,
    probe,
    probe_rows,
    probe_tracklets,
    rng_states,
    set_rng_states,
    train_batch,
)
from drsta.losses import build_objective
from drsta.model import build_model
from drsta.model.drsta import DRSTA
from drsta.ray.stream import ValidBatches, evaluation_stream, train_stream
from pipelines.console import epoch_line, quiet_ray_loggers, ray_logging_level
from pipelines.run import TrainingRun, open_run, resolve_paths
from pipelines.tracking import RunTracker, log_model, monitor_system

SCORE = "val/mAP"
EPOCHS_DONE = "epochs_done"  # reported with every epoch: Tune's time axis, unchanged when a run resumes
TRACKING_FAILURES = "tracking/failures"  # rank 0's tracking calls lost so far, reported with every epoch
CHECKPOINT_TIME = "time/checkpoint_s"  # rank 0's checkpoint save and report of each epoch (uploads in the background)
FIRST_STEP = "time/first_step_s"  # driver's fit → the worker group's first step (each start: restarts count from fit)
CHECKPOINT_PATH = "checkpoint_path"  # where a Tune result's checkpoint is (the key Ray Tune's TuneReportCallback adds)
FIGURE_CANDIDATES = 50  # query clips searched for degraded frames to draw (their ground truth is looked up)


class TrainLoop:
    """One worker's side of a run: symmetric train_epoch / validate, save_checkpoint / load_checkpoint."""

    def __init__(self, cfg: ExperimentConfig, mlflow_run_id: str | None, fit_started: float | None = None) -> None:
        quiet_ray_loggers()  # Ray Train's and Ray Data's INFO lines in this worker, unless drsta --verbose
        self.cfg = cfg
        self.fit_started = fit_started  # time.time() on the driver, when it started this run's trainer
        context = ray.train.get_context()
        self.rank, self.world_size = context.get_world_rank(), context.get_world_size()
        self.device = ray.train.torch.get_device()
        self.size = (cfg.input.height, cfg.input.width)
        self.tracklets = read_manifest(cfg.data.manifest)
        self.roles = {t.id: t.role for t in self.tracklets}
        num_classes = len(train_labels(self.tracklets))
        torch.manual_seed(cfg.train.model_seed)
        model = build_model(cfg.model, num_classes if cfg.loss.xent_weight > 0 else None).to(self.device)
        objective = build_objective(cfg.loss, model.embedding_dim, num_classes, num_frames=cfg.model.num_frames)
        self.objective = objective.to(self.device)
        self.optimizer = build_optimizer(model, cfg.optim)
        self.scheduler = build_scheduler(self.optimizer, cfg.optim)
        self.start_epoch = 0
        self.last_report: dict[str, Any] | None = None  # the resumed checkpoint's report, with its path
        checkpoint = ray.train.get_checkpoint()
        if checkpoint:
            with checkpoint.as_directory() as directory:
                self.load_checkpoint(Path(directory), model)
            if self.last_report is not None:
                self.last_report[CHECKPOINT_PATH] = checkpoint.path
        self.model = ray.train.torch.prepare_model(model)  # DDP when world_size > 1
        self.amp = cfg.train.amp and self.device.type == "cuda"
        self.tracker = None
        if self.rank == 0:
            self.tracker = RunTracker(
                cfg.train.tracking_uri, cfg.train.experiment, cfg.train.name, run_id=mlflow_run_id
            )
            self.tracker.start()
        self.system_monitor = self._monitor_system(context, self.tracker.run_id if self.tracker else mlflow_run_id)
        # Epochs already in MLflow: a run resumed from a checkpoint older than its last logged epoch (the driver
        # died between MLflow and the checkpoint) re-runs those epochs from the same state without logging twice.
        self.logged_epochs = self.tracker.logged_steps("train/loss") if self.tracker else set()

    def _monitor_system(self, context: Any, run_id: str | None) -> SystemMetricsMonitor | None:
        """One system metrics thread per node (its local rank 0), named by the node when the run spans several."""
        interval = self.cfg.train.system_metrics_s
        if interval is None or run_id is None or context.get_local_rank() != 0:
            return None
        several_nodes = context.get_local_world_size() < self.world_size
        node = f"node{context.get_node_rank()}" if several_nodes else None
        return monitor_system(run_id, self.cfg.train.tracking_uri, interval, node)

    @property
    def module(self) -> DRSTA:
        return self.model.module if hasattr(self.model, "module") else self.model

    def run(self) -> None:
        try:
            self._run_epochs()
        finally:
            if self.system_monitor:
                self.system_monitor.finish()

    def _run_epochs(self) -> None:
        epochs = self.cfg.optim.epochs
        if self.start_epoch >= epochs and self.last_report is not None:
            # Resumed from the last epoch's checkpoint (a sweep's driver died after it was stored, before its
            # report reached Tune): report it again, so that Tune's result holds every epoch and the best.
            ray.train.report(self.last_report)
        run_start = time.perf_counter()
        for epoch in range(self.start_epoch, epochs):
            start = time.perf_counter()
            metrics = self.train_epoch(epoch)
            final = epoch == epochs - 1
            if self.rank == 0 and ((epoch + 1) % self.cfg.train.eval_every == 0 or final):
                metrics |= self.validate(final)
            metrics["time/epoch_s"] = time.perf_counter() - start  # training and evaluation, before checkpointing
            if self.tracker and epoch not in self.logged_epochs:
                self.tracker.log_metrics(metrics, step=epoch)
            self.scheduler.step()
            # Ray keeps the best checkpoints by val/mAP (and always the latest): a checkpoint of an epoch without
            # evaluation scores -1, so it never passes for the best one.
            failures = self.tracker.failures if self.tracker else 0  # rank 0's tracking health, for the driver
            reported = {SCORE: -1.0} | metrics | {"epoch": epoch, EPOCHS_DONE: epoch + 1, TRACKING_FAILURES: failures}
            if self.rank == 0:
                per_epoch = (time.perf_counter() - run_start) / (epoch + 1 - self.start_epoch)
                # Written, not printed: Ray Train turns a worker's print into a log record and, where something
                # wrapped sys.stdout (MLflow does), prints it as well, so every line came out twice.
                sys.stdout.write(epoch_line(epoch, epochs, reported, per_epoch * (epochs - epoch - 1)) + "\n")
                sys.stdout.flush()
            start = time.perf_counter()
            checkpoint = None
            if self.rank == 0:
                directory = tempfile.mkdtemp(prefix="drsta-checkpoint-")  # Ray deletes it once uploaded
                self.save_checkpoint(Path(directory), epoch, reported)
                checkpoint = ray.train.Checkpoint.from_directory(directory)
            # Uploaded in the background while the next epoch trains, and handed to the controller in order (its
            # poll every 2 s no longer holds up training); a worker lost before the upload ends resumes from the
            # checkpoint before, and Ray waits for the last upload before the run ends.
            ray.train.report(reported, checkpoint=checkpoint, checkpoint_upload_mode=CheckpointUploadMode.ASYNC)
            if self.tracker and epoch not in self.logged_epochs:
                self.tracker.log_metrics({CHECKPOINT_TIME: time.perf_counter() - start}, step=epoch)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        self.objective.train()
        stream = train_stream(self.tracklets, self.cfg.data, self.size, self.cfg.model.num_frames, epoch,
                              self.rank, self.world_size)  # fmt: skip
        batches = ValidBatches(stream, self.cfg.data.batch_size_per_worker, fill=True)
        sums: dict[str, float] = defaultdict(float)
        steps, clips, start, first_step = 0, 0, time.perf_counter(), None
        for batch in batches:
            inputs = clips_to_input(batch["clip"], self.device)
            labels = torch.as_tensor(batch["label"], device=self.device)
            # A batch with nothing decodable still steps in lockstep with the other workers, learning nothing.
            parts = train_batch(self.model, self.objective, self.optimizer, inputs, labels,
                                bool(batch["valid"].any()), self.amp)  # fmt: skip
            if parts is None:
                continue
            for name, value in parts.items():
                sums[name] += float(value)
            steps, clips = steps + 1, clips + len(labels)
            if self.fit_started is not None:
                first_step, self.fit_started = time.time() - self.fit_started, None
        elapsed = time.perf_counter() - start
        totals = self._sum_over_workers([*sums.values(), steps, clips, len(batches.skipped)])
        *values, steps, clips, skipped = totals
        metrics = {f"train/{name}": value / max(steps, 1) for name, value in zip(sums, values, strict=True)}
        metrics["train/lr"] = self.optimizer.param_groups[-1]["lr"]
        metrics["data/clips_per_s"] = clips / elapsed
        metrics["data/skipped_clips"] = skipped
        if first_step is not None:
            metrics[FIRST_STEP] = first_step
        return metrics

    def validate(self, final: bool) -> dict[str, float]:
        """Rank 0: embed every query and gallery tracklet, CMC and mAP, the paper's claims (drsta.claims: spatial
        and temporal where the manifest has ground truth, the corruption probe always) and, at the end, figures."""
        model = self.module
        num_frames = self.cfg.model.num_frames
        stream = evaluation_stream(self.tracklets, self.cfg.data, self.size, num_frames)
        collected = TrackletEmbeddings()
        claims = EvaluationClaims(self.tracklets, self.annotations, num_frames, self.cfg.data.eval_clips_per_tracklet)
        probed = probe_tracklets(self.tracklets)
        for batch in ValidBatches(stream, batch_size=16):
            emb, maps, weights = embed(model, clips_to_input(batch["clip"], self.device), self.amp)
            collected.add(batch["id"], emb.cpu().numpy(), batch["pid"], batch["camid"])
            claims.add_attention(batch["id"], batch["clip_index"], maps, weights)
            rows = probe_rows(batch, probed)
            claims.add_probes(probe(self._temporal_weights, batch["clip"][rows], batch["id"][rows], self.device))
        result = collected.score(self.roles)
        cmc = result.cmc
        metrics = {SCORE: result.mAP, "val/rank1": cmc[0], "val/rank5": cmc[4], "val/rank10": cmc[9],
                   "val/rank20": cmc[19], "val/skipped_queries": result.num_skipped_queries}  # fmt: skip
        metrics |= claims.metrics()  # only what could be measured: no NaN reaches Tune or MLflow
        if final and self.tracker:
            self._log_figures(model, result)
        model.train()
        return {k: float(v) for k, v in metrics.items()}

    @functools.cached_property
    def annotations(self) -> Annotations | None:
        """The manifest's ground truth (read once, by rank 0 when it first evaluates), None without one."""
        return read_manifest_annotations(self.cfg.data.manifest)

    def _temporal_weights(self, clips: torch.Tensor) -> torch.Tensor:
        return embed(self.module, clips, self.amp)[2]

    def _log_figures(self, model: DRSTA, result: Any) -> None:
        """The CMC curve, and Fig. 1 and 2 of three query clips: with ground truth, clips that have degraded frames
        where there are such, their part boxes and degraded frames drawn in."""
        self.tracker.log_figure(viz.cmc_figure(result.cmc, label="val", mAP=result.mAP), "cmc.png")
        for tracklet, indices, truth in self._figure_clips(num_clips=3):
            frames = read_clip(tracklet.source, tracklet.uri, tracklet.frames, indices, self.size)
            _, maps, weights = embed(model, clips_to_input(frames[None], self.device), self.amp)
            name = tracklet.id.replace("/", "_")
            maps, weights = maps[0].cpu().numpy(), weights[0].cpu().numpy()
            self.tracker.log_figure(viz.receptive_fields_figure(frames, maps, truth=truth),
                                    f"receptive_fields_{name}.png")  # fmt: skip
            self.tracker.log_figure(viz.temporal_weights_figure(frames, weights, truth=truth),
                                    f"temporal_weights_{name}.png")  # fmt: skip

    def _figure_clips(self, num_clips: int) -> list[tuple[Tracklet, np.ndarray, FrameAnnotations | None]]:
        """Query tracklets to draw, each with its evaluation clip's frame indices and ground truth (or None):
        the first `num_clips`, or with ground truth the first ones whose clip has a degraded frame (among the
        first FIGURE_CANDIDATES queries), then others."""
        queries = [t for t in self.tracklets if t.role == "query"]
        annotations = self.annotations
        degraded, others = [], []
        for tracklet in queries[: FIGURE_CANDIDATES if annotations is not None else num_clips]:
            indices = evaluation_indices(tracklet.num_frames, self.cfg.model.num_frames)[0]
            truth = clip_truth(annotations, tracklet, indices, self.size)
            has_degraded = truth is not None and bool(degraded_frames(truth.occlusion, truth.bad).any())
            (degraded if has_degraded else others).append((tracklet, indices, truth))
        return (degraded + others)[:num_clips]

    def save_checkpoint(self, directory: Path, epoch: int, reported: dict[str, Any]) -> None:
        torch.save(
            {
                "model": self.module.state_dict(),
                "objective": self.objective.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "epoch": epoch,
                # plain numbers: the file loads with weights_only (numpy scalars would not)
                "reported": {
                    key: int(v) if isinstance(v, int | np.integer) else float(v) for key, v in reported.items()
                },
                "rng": rng_states(),
                "config": self.cfg.to_dict(),
            },
            directory / "state.pt",
        )

    def load_checkpoint(self, directory: Path, model: DRSTA) -> None:
        state = load_state(directory / "state.pt", map_location=self.device)
        model.load_state_dict(state["model"])
        self.objective.load_state_dict(state["objective"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.start_epoch = state["epoch"] + 1
        self.last_report = state.get("reported")  # (checkpoints of earlier releases lack it)
        set_rng_states(state["rng"])

    def _sum_over_workers(self, values: list[float]) -> list[float]:
        tensor = torch.tensor(values, dtype=torch.float64)
        if self.world_size > 1 and dist.is_initialized():
            backend_device = self.device if dist.get_backend() == "nccl" else torch.device("cpu")
            tensor = tensor.to(backend_device)
            dist.all_reduce(tensor)
        return tensor.cpu().tolist()


def train_fn_per_worker(config: dict[str, Any]) -> None:
    """Ray Train's per-worker entry point: the only place a raw dict becomes a typed config."""
    cfg = ExperimentConfig.from_dict(config["config"])
    TrainLoop(cfg, config.get("mlflow_run_id"), config.get("fit_started")).run()


def build_trainer(cfg: ExperimentConfig, mlflow_run_id: str | None, callbacks: list | None = None) -> TorchTrainer:
    """The TorchTrainer of a run; `pipelines.tune` wraps the same trainer."""
    run = TrainingRun.from_config(cfg)
    resources = {"CPU": cfg.train.cpus_per_worker} | ({"GPU": 1} if cfg.train.use_gpu else {})
    return TorchTrainer(
        train_fn_per_worker,
        train_loop_config={"config": cfg.to_dict(), "mlflow_run_id": mlflow_run_id, "fit_started": time.time()},
        scaling_config=ScalingConfig(
            num_workers=cfg.train.num_workers,
            use_gpu=cfg.train.use_gpu,
            resources_per_worker=resources,
            label_selector=cfg.train.worker_node_labels or None,
        ),
        run_config=RunConfig(
            name=run.name,
            storage_path=run.storage_path,
            failure_config=FailureConfig(max_failures=cfg.train.max_failures),
            checkpoint_config=CheckpointConfig(
                num_to_keep=cfg.train.checkpoints_to_keep,
                checkpoint_score_attribute=SCORE,
                checkpoint_score_order="max",
            ),
            callbacks=callbacks,
            # Ray Train's own INFO lines (each report's metrics, the worker group's start) only with --verbose.
            logging_config=LoggingConfig(log_level=logging.getLevelName(ray_logging_level())),
        ),
    )


def train(
    cfg: ExperimentConfig, resume: bool = False, callbacks: list | None = None, parent_run_id: str | None = None
) -> dict[str, Any]:
    """Run (or resume) a training run on the connected Ray cluster; returns its final metrics and model version.

    `callbacks` go to Ray Train (Tune passes its report callback); `parent_run_id` nests the MLflow run. Tracking
    failures never stop training, but they are not hidden either: the outcome's "not_recorded" lists what the run
    failed to record (calls lost on the driver or on rank 0, epochs missing in MLflow, a model not registered),
    and the MLflow run then ends FAILED.
    """
    cfg = resolve_paths(cfg)
    data_fingerprint = fingerprint(read_manifest(cfg.data.manifest))
    tracker, run_id = open_run(cfg, resume, parent_run_id, data_fingerprint)
    try:
        result = build_trainer(cfg, run_id, callbacks).fit()
    except Exception:
        tracker.end("FAILED")
        raise
    best = result.get_best_checkpoint(metric=SCORE, mode="max") or result.checkpoint
    metrics = {k: v for k, v in result.metrics.items() if isinstance(v, int | float)}
    version = None
    if cfg.train.registered_model and best is not None:
        model = load_trained_model(best, cfg)
        example = torch.rand(1, cfg.model.num_frames, 3, cfg.input.height, cfg.input.width)
        # The registered model is the best checkpoint's: so are the metrics it carries (the epoch they are from).
        scored = next((m for c, m in result.best_checkpoints or [] if c.path == best.path), result.metrics)
        best_metrics = {k: v for k, v in scored.items() if isinstance(v, int | float)}
        step = int(best_metrics.get("epoch", 0))
        version = log_model(tracker, model, example, cfg.to_dict(), best_metrics, data_fingerprint,
                            registered_name=cfg.train.registered_model, step=step)  # fmt: skip
    logged = tracker.logged_steps("train/loss") if tracker.healthy else set(range(cfg.optim.epochs))
    missing = len(set(range(cfg.optim.epochs)) - logged)
    lost = tracker.failures + int(metrics.get(TRACKING_FAILURES, 0))
    problems = not_recorded(lost, missing, cfg.optim.epochs, bool(cfg.train.registered_model) and version is None)
    tracker.end("FAILED" if problems else "FINISHED")  # an MLflow run with holes is no finished run
    problems = problems or not_recorded(tracker.failures, 0, cfg.optim.epochs, False)  # the end itself was lost
    return {"metrics": metrics, "mlflow_run_id": run_id, "model_version": version, "path": result.path,
            "best_checkpoint": best, "not_recorded": problems}  # fmt: skip


def not_recorded(lost_calls: int, missing_epochs: int, epochs: int, model_missing: bool) -> list[str]:
    """What a finished run failed to record, as phrases for its last line; empty when everything was recorded.

    Args:
        lost_calls: tracking calls that did not reach MLflow, on the driver and on rank 0.
        missing_epochs: epochs without `train/loss` in the MLflow run (e.g. lost by a rank 0 that was restarted).
        epochs: the run's epochs.
        model_missing: a model was to be registered and was not.
    """
    problems = []
    if lost_calls:
        problems.append(f"tracking failed: {lost_calls} calls lost")
    if missing_epochs:
        problems.append(f"{missing_epochs} of {epochs} epochs have no metrics in MLflow")
    if model_missing:
        problems.append("no model registered")
    return problems


def load_trained_model(checkpoint: ray.train.Checkpoint, cfg: ExperimentConfig) -> DRSTA:
    """The model of a training checkpoint, in eval mode on the CPU."""
    with checkpoint.as_directory() as directory:
        state = load_state(Path(directory) / "state.pt")
    num_classes = len(train_labels(read_manifest(cfg.data.manifest))) if cfg.loss.xent_weight > 0 else None
    model = build_model(cfg.model, num_classes)
    model.load_state_dict(state["model"])
    return model.eval()
