"""What a training run is and where it lives.

A run is (train.storage_path, train.name): Ray Train keeps its checkpoints in `<storage_path>/<name>`, and its
record `<storage_path>/.drsta-runs/<name>.json` holds its MLflow run id, so that a resumed run (`drsta train
--resume`, a restored Tune trial, a benchmark split run again) logs into the same MLflow run. `open_run` is the
driver's side of starting or resuming one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from drsta.config import ExperimentConfig
from pipelines.cluster import release_leaked_placement_groups
from pipelines.tracking import RunTracker, default_tracking_uri

RUN_RECORD = ".drsta-runs"  # under storage_path: the MLflow run id of each Ray Train run, for resuming


@dataclass(frozen=True)
class TrainingRun:
    """A run's storage and name: its Ray Train directory and its record live under `storage_path`.

    Attributes:
        storage_path: an absolute local path (Ray needs one) or a URI such as s3://bucket/drsta.
        name: the run's name (train.name): its Ray Train directory's, its record's and its MLflow run's.
    """

    storage_path: str
    name: str

    @classmethod
    def from_config(cls, cfg: ExperimentConfig) -> TrainingRun:
        """The run `cfg` names; a relative local storage_path is taken from the working directory."""
        path = cfg.train.storage_path
        return cls(path if "://" in path else str(Path(path).resolve()), cfg.train.name)

    @property
    def filesystem(self) -> tuple[pafs.FileSystem, str]:
        """The filesystem of storage_path, and the path on it: local, or a URI's (s3://, gs://, file://)."""
        return storage_filesystem(self.storage_path)

    def started(self) -> bool:
        """Whether the run was started before: by its record or its Ray Train directory."""
        return bool(self.read_record()) or self.has_directory()

    def has_directory(self) -> bool:
        """Whether Ray Train made the run's directory (its checkpoints and results)."""
        return storage_exists(f"{self.storage_path}/{self.name}")

    def read_record(self) -> dict[str, Any]:
        """What the run keeps beside its checkpoints (its MLflow run id); empty if it has none yet."""
        filesystem, root = self.filesystem
        record = f"{root}/{RUN_RECORD}/{self.name}.json"
        if not _exists(filesystem, record):
            return {}
        with filesystem.open_input_stream(record) as stream:
            text = stream.read()
        try:
            return json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(
                f"the run record {record} is damaged ({err}): it holds the run's MLflow run id; fix or "
                f"delete it, then pass --resume again (a deleted record starts a new MLflow run)"
            ) from None

    def write_record(self, record: dict[str, Any]) -> None:
        """Written before Ray Train creates the run's directory, so a resume always finds the MLflow run;
        atomically (a temporary file moved into place), so a resume never reads half a record."""
        filesystem, root = self.filesystem
        directory = f"{root}/{RUN_RECORD}"
        filesystem.create_dir(directory, recursive=True)
        partial = f"{directory}/.{self.name}.json.{os.getpid()}.partial"
        with filesystem.open_output_stream(partial) as stream:
            stream.write(json.dumps(record).encode())
        filesystem.move(partial, f"{directory}/{self.name}.json")

    def mlflow_run_id(self) -> str | None:
        """The MLflow run id in the run's record; None before the run was first started."""
        return self.read_record().get("mlflow_run_id")


def storage_filesystem(location: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem of a storage location (a local path or a URI: s3://, gs://, file://), and the path on it."""
    return pafs.FileSystem.from_uri(location) if "://" in location else (pafs.LocalFileSystem(), location)


def storage_exists(location: str) -> bool:
    """Whether a file or directory is at a storage location (a local path or a URI), asked of its own filesystem."""
    return _exists(*storage_filesystem(location))


def _exists(filesystem: pafs.FileSystem, path: str) -> bool:
    return filesystem.get_file_info(path).type != pafs.FileType.NotFound


def resolve_paths(cfg: ExperimentConfig) -> ExperimentConfig:
    """Make every local path absolute, so workers in other directories (and nodes) read the same ones."""
    if cfg.data.manifest is None:
        raise ValueError("data.manifest is not set: pass --manifest DIR (the output of drsta ingest)")
    uri = default_tracking_uri(cfg.train.tracking_uri)
    return cfg.with_overrides({"data.manifest": str(Path(cfg.data.manifest).resolve()),
                               "train.storage_path": TrainingRun.from_config(cfg).storage_path,
                               "train.tracking_uri": uri})  # fmt: skip


def artifact_location(tracking_uri: str) -> str | None:
    """Beside a SQLite store, `mlartifacts/` (MLflow would use ./mlruns of whichever process creates the
    experiment); a tracking server decides for itself (None)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return (Path(tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()


def open_run(
    cfg: ExperimentConfig, resume: bool, parent_run_id: str | None, data_fingerprint: str
) -> tuple[RunTracker, str | None]:
    """Start the MLflow run of a new training run, or reopen a resumed one's; record its id beside the run.

    Args:
        cfg: the run's config, its paths resolved (`resolve_paths`).
        resume: continue the run (it must exist); without it, the run must not exist yet.
        parent_run_id: nests the MLflow run under this one (a sweep's or a benchmark's).
        data_fingerprint: the manifest's fingerprint, tagged on the MLflow run.

    Returns:
        The started tracker (its params and config.yaml logged), and the run id the workers log into: None if
        tracking failed to start (rank 0 then creates a run of its own, if MLflow is reachable by then).
    """
    run = TrainingRun.from_config(cfg)
    record = run.read_record()
    started = bool(record) or run.has_directory()
    if started and not resume:
        raise ValueError(f"run {run.name!r} already exists in {run.storage_path}: pass --resume to continue "
                         "it, or choose another --name")  # fmt: skip
    if resume and not started:
        raise ValueError(f"nothing to resume: no run {run.name!r} in {run.storage_path}")
    if resume:
        release_leaked_placement_groups()  # what a killed driver may have left reserved
    tracker = RunTracker(cfg.train.tracking_uri, cfg.train.experiment, run.name, run_id=record.get("mlflow_run_id"),
                         tags={"data_fingerprint": data_fingerprint}, parent_run_id=parent_run_id,
                         artifact_location=artifact_location(cfg.train.tracking_uri))  # fmt: skip
    run_id = tracker.start()
    tracker.log_params(cfg.to_dict())
    tracker.log_dict(cfg.to_dict(), "config.yaml")
    run.write_record({"mlflow_run_id": run_id})
    return tracker, run_id
