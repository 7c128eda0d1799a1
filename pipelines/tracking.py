"""MLflow tracking for training runs, and the model registry round trip: log a model, load it back without drsta.

The training side (driver or rank 0) logs through one `RunTracker`; tracking failures never stop training.
`log_model` registers the final model; `load_registered` gives serving code the exported program and its
metadata from `models:/drsta/3` or `models:/drsta@champion`, after checking that nothing in the files can run
code (`pipelines.model_files`); a plain `mlflow.pytorch.load_model` of the same URI works too.

    tracker = RunTracker(tracking_uri, "drsta", run_name, run_id=config.get("mlflow_run_id"))
    tracker.start()
    tracker.log_params(cfg.to_dict())
    tracker.log_metrics({"train/loss": 1.3}, step=epoch)
    log_model(tracker, model, clips, cfg.to_dict(), {"val/mAP": 0.8}, fingerprint)
    tracker.end("FINISHED")

Every call talks to MLflow through an explicit `MlflowClient`: no global tracking URI, experiment or active run,
so several trackers coexist in one process. Against a tracking server, set MLFLOW_HTTP_REQUEST_MAX_RETRIES and
MLFLOW_HTTP_REQUEST_TIMEOUT in the workers' environment: with MLflow's defaults (7 retries, exponential backoff)
one call to a dead server blocks for minutes before the tracker gives up on it.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import unquote, urlsplit

import mlflow
import numpy as np
import torch
import yaml
from mlflow import MlflowClient
from mlflow.entities import LoggedModelOutput, Metric, Param, RunStatus, RunTag
from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, RESOURCE_DOES_NOT_EXIST, ErrorCode
from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
from mlflow.types import Schema, TensorSpec
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from torch import nn

from pipelines.uris import has_credentials, redact_credentials

_logger = logging.getLogger(__name__)

MODEL_TYPE = "drsta"
"""The `model_type` of drsta's MLflow LoggedModels."""
KIND_TAG, MODEL_DEVELOPMENT = "mlflow.experimentKind", "custom_model_development"
"""The experiment tag that makes MLflow 3's UI open drsta's experiment on runs, charts and models (not GenAI)."""
# The hyper-parameters that tell two DRSTA models apart, shown on the LoggedModel and in the version description.
MODEL_PARAMS = {"K": ("model", "num_attention_models"), "sigma": ("model", "sigma"),
                "lambda": ("loss", "diversity_weight"), "N": ("model", "num_frames"), "backbone": ("model", "backbone"),
                "feature_enhancement": ("model", "feature_enhancement")}  # fmt: skip

_T = TypeVar("_T")
_END_STATUSES = ("FINISHED", "FAILED", "KILLED")
LOCK_SUFFIX = ".promotion-lock"
"""Registered models named NAME + this are promotion locks (`pipelines.models.promotion_lock`), not models."""
_MODEL_URI = re.compile(r"models:/(?P<name>[^/@]+)(?:/(?P<version>[^/@]+)|@(?P<alias>[^/@]+))")


class RunTracker:
    """Logs one training run to MLflow; a tracking failure disables the tracker instead of raising.

    The first failing call logs one error (method name, run, tracking URI, the exception) and turns every later
    call into a no-op that only counts itself (a debug line each), so a dead tracking server costs training one
    timeout, not one per step. `healthy` and `failures` say what happened.

    Args:
        tracking_uri: MLflow tracking URI (`http://host:5000`, `sqlite:///path/mlflow.db`); None uses MLflow's
            default resolution (MLFLOW_TRACKING_URI, else `sqlite:///mlflow.db` in the working directory).
        experiment: experiment name, created if missing.
        run_name: display name of a new run.
        run_id: resume this run instead of creating one — a restarted worker passes the id the first `start()`
            returned, so it keeps logging into the same run.
        tags: run tags, set on start (and again on resume).
        parent_run_id: makes this a nested run of that run (e.g. a Tune trial under its sweep).
        artifact_location: artifact root of the experiment when this tracker creates it; ignored for an
            existing experiment. None lets the tracking server (or MLflow's local default) choose.
    """

    def __init__(
        self,
        tracking_uri: str | None,
        experiment: str,
        run_name: str,
        run_id: str | None = None,
        tags: dict[str, str] | None = None,
        parent_run_id: str | None = None,
        artifact_location: str | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.run_name = run_name
        self.tags = dict(tags or {})
        self.parent_run_id = parent_run_id
        self.artifact_location = artifact_location
        self._run_id = run_id
        self._client: MlflowClient | None = None
        self._started = False
        self._healthy = True
        self._failures = 0

    @property
    def healthy(self) -> bool:
        """False once a tracking call failed; from then on every call is skipped."""
        return self._healthy

    @property
    def failures(self) -> int:
        """Calls whose data did not reach MLflow: the one that failed plus every call skipped after it."""
        return self._failures

    @property
    def run_id(self) -> str | None:
        """The run's id once started (or the id to resume, before `start()`)."""
        return self._run_id

    @property
    def client(self) -> MlflowClient:
        """The tracker's MLflow client; only valid after `start()`."""
        self._require_started()
        assert self._client is not None
        return self._client

    def start(self) -> str | None:
        """Create the run (or resume `run_id`) and return its id; None if tracking failed."""
        return self.guarded("start", self._start)

    def log_params(self, config: Mapping[str, Any]) -> None:
        """Log a (nested) config once: keys flattened to dots (`model.num_frames`), values stringified, None as
        "null". On resume, keys already logged with the same value are skipped; a key logged with a different
        value is kept as it was and reported in a warning (MLflow params are immutable)."""
        self._require_started()
        self.guarded("log_params", lambda: self._log_params(flatten_params(config)))

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Log metrics (namespaced keys such as `train/loss`, `val/mAP`) at `step`."""
        self._require_started()

        def log() -> None:
            timestamp_ms = int(time.time() * 1000)
            batch = [Metric(key, float(value), timestamp_ms, step) for key, value in metrics.items()]
            self.client.log_batch(self._run_id, metrics=batch)

        self.guarded("log_metrics", log)

    def logged_steps(self, key: str) -> set[int]:
        """The steps at which `key` was logged in this run (empty for a new run, or if tracking failed)."""
        self._require_started()
        history = self.guarded("logged_steps", lambda: self.client.get_metric_history(self._run_id, key))
        return {metric.step for metric in history or []}

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Upload a local file or directory into the run's artifacts (under `artifact_path` if given)."""
        self._require_started()
        path = Path(path)
        if path.is_dir():
            self.guarded("log_artifact", lambda: self.client.log_artifacts(self._run_id, str(path), artifact_path))
        else:
            self.guarded("log_artifact", lambda: self.client.log_artifact(self._run_id, str(path), artifact_path))

    def log_figure(self, fig: Any, name: str) -> None:
        """Save a matplotlib Figure as `figures/<name>` (".png" appended when `name` has no suffix)."""
        self._require_started()
        file_name = name if Path(name).suffix else f"{name}.png"
        # MlflowClient.log_figure writes the figure to a temporary file and uploads it.
        self.guarded("log_figure", lambda: self.client.log_figure(self._run_id, fig, f"figures/{file_name}"))

    def log_dict(self, data: Mapping[str, Any], name: str) -> None:
        """Log `data` as the artifact `name`: YAML for a .yaml/.yml name, JSON otherwise."""
        self._require_started()
        self.guarded("log_dict", lambda: self.client.log_dict(self._run_id, dict(data), name))

    def end(self, status: Literal["FINISHED", "FAILED", "KILLED"] = "FINISHED") -> None:
        """Mark the run terminated with `status`."""
        if status not in _END_STATUSES:
            raise ValueError(f"status must be one of {_END_STATUSES}, got {status!r}")
        self._require_started()
        self.guarded("end", lambda: self.client.set_terminated(self._run_id, status))

    def guarded(self, method: str, fn: Callable[[], _T]) -> _T | None:
        """Run `fn` (which talks to MLflow) under the tracker's failure policy; None if it failed or was skipped.

        For callers that log more than the methods above (`log_model`); `method` names the call in the log.
        """
        if not self._healthy:
            self._failures += 1
            _logger.debug(
                "RunTracker.%s skipped: tracking is disabled after an earlier failure (%d calls lost so far)",
                method,
                self._failures,
            )
            return None
        try:
            return fn()
        except Exception as err:  # tracking must never stop training: any MLflow/network/DB error lands here
            self._healthy = False
            self._failures += 1
            _logger.error(
                "MLflow tracking failed in RunTracker.%s (run %s, tracking URI %s); tracking is disabled for the "
                "rest of this run, training goes on: %s: %s",
                method,
                self._run_id,
                redact_credentials(str(self.tracking_uri)),
                type(err).__name__,
                err,
                exc_info=True,
            )
            return None

    def _require_started(self) -> None:
        # Calling before start() is a bug in the caller, not a tracking failure; after a failed start the
        # tracker is unhealthy and every call is silently skipped instead.
        if self._healthy and not self._started:
            raise RuntimeError("RunTracker.start() must be called before logging")

    def _start(self) -> str:
        client = MlflowClient(self.tracking_uri)
        tags = dict(self.tags)
        if self.parent_run_id is not None:
            tags[MLFLOW_PARENT_RUN_ID] = self.parent_run_id
        if self._run_id is None:
            experiment_id = get_or_create_experiment(client, self.experiment, self.artifact_location)
            run = client.create_run(experiment_id, tags=tags, run_name=self.run_name)
            self._run_id = run.info.run_id
        else:
            run = client.get_run(self._run_id)  # raises for an unknown id: no silent fresh run on resume
            if run.info.status != RunStatus.to_string(RunStatus.RUNNING):
                client.update_run(self._run_id, status="RUNNING")
            if tags:
                client.log_batch(self._run_id, tags=[RunTag(key, str(value)) for key, value in tags.items()])
        self._client = client
        self._started = True
        return self._run_id

    def _log_params(self, params: dict[str, str]) -> None:
        logged = self.client.get_run(self._run_id).data.params
        changed = sorted(key for key, value in params.items() if key in logged and logged[key] != value)
        if changed:
            _logger.warning(
                "params already logged to run %s with other values are kept as they were: %s",
                self._run_id,
                ", ".join(f"{key} (logged {logged[key]!r}, now {params[key]!r})" for key in changed),
            )
        new = [Param(key, value) for key, value in params.items() if key not in logged]
        if new:
            self.client.log_batch(self._run_id, params=new)


def monitor_system(
    run_id: str, tracking_uri: str | None, interval_s: float, node_id: str | None = None
) -> SystemMetricsMonitor | None:
    """Start MLflow's system metrics thread for `run_id` (CPU, memory, disk, network, and GPU where there is one):
    `system/<metric>`, or `system/<node_id>/<metric>`, every `interval_s`, continuing the steps of a resumed run;
    `finish()` stops it. None, with a warning, where it cannot start: monitoring never stops training.
    """
    try:
        monitor = SystemMetricsMonitor(run_id, sampling_interval=interval_s, resume_logging=True, node_id=node_id,
                                       tracking_uri=tracking_uri)  # fmt: skip
        monitor.start()
    except Exception as err:
        _logger.warning("no system metrics for run %s: %s: %s", run_id, type(err).__name__, err)
        return None
    return monitor


def flatten_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{"model": {"num_frames": 4}} -> {"model.num_frames": "4"}: strings as they are, other values as JSON."""
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, prefix=f"{name}."))
        else:
            flat[name] = value if isinstance(value, str) else json.dumps(value, default=str)
    return flat


def log_model(
    tracker: RunTracker,
    model: nn.Module,
    example_clips: torch.Tensor,
    config: Mapping[str, Any],
    metrics: Mapping[str, float],
    data_fingerprint: str,
    registered_name: str = "drsta",
    step: int = 0,
) -> ModelVersion | None:
    """Log the final model as an MLflow 3 LoggedModel of the tracker's run and register it.

    The LoggedModel (its own artifact location, so no model overwrites another) holds the MLflow pytorch flavour
    (`MLmodel`, `data/model.pt2`: the `torch.export` program, eval mode, CPU, any batch size, returning a dict of
    tensors) plus `config.yaml` (the resolved config), `state_dict.pt` (loads with
    `torch.load(weights_only=True)`) and `metadata.json`; its params are K, σ, λ, N, the trunk and whether
    features are enhanced. The `val/*` metrics are linked to the model (`_link_metric`: the run's points of epoch
    `step` where it logged them, so its history is unchanged), so MLflow's UI shows them on the model; the
    registered version carries all `metrics` and `data_fingerprint` as tags, and a description of what it is.

    Args:
        tracker: a started tracker; its failure policy applies (export errors included).
        model: the trained DRSTA (a DDP wrapper is unwrapped); not modified — a CPU copy is exported.
        example_clips: (B, N, 3, H, W) float clips in [0, 1]; fixes N, H and W of the program.
        config: the fully resolved config (`ExperimentConfig.to_dict()`).
        metrics: final metrics, e.g. {"val/mAP": 0.81, "val/rank1": 0.9}.
        data_fingerprint: identifies the training data (e.g. the manifest's hash).
        registered_name: registered model to add the version to (created if missing).

    Returns:
        The new ModelVersion, or None when tracking is (or became) unhealthy.
    """
    tracker._require_started()
    return tracker.guarded(
        "log_model",
        lambda: _log_model(tracker, model, example_clips, config, metrics, data_fingerprint, registered_name, step),
    )


def _log_model(
    tracker: RunTracker,
    model: nn.Module,
    example_clips: torch.Tensor,
    config: Mapping[str, Any],
    metrics: Mapping[str, float],
    data_fingerprint: str,
    registered_name: str,
    step: int,
) -> ModelVersion:
    # Imported here, not at the top: `load_registered` must run in a process that never imports drsta.
    from drsta.model.export import OUTPUT_KEYS, InferenceOutputs

    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module
    cpu_model = copy.deepcopy(model).cpu().eval()
    clips = example_clips.detach().float().cpu()  # (B, N, 3, H, W)
    if clips.shape[0] == 1:
        # MLflow exports with Dim.AUTO, which specializes a size-1 batch to a constant: keep B ≥ 2.
        clips = clips.expand(2, -1, -1, -1, -1).contiguous()
    _, num_frames, _, height, width = clips.shape
    # MLflow's pt2 flavour exports this itself (torch.export, the batch dynamic): exported once, not twice.
    serving = InferenceOutputs(cpu_model).eval()
    with torch.no_grad():
        outputs = serving(clips)

    client, run_id = tracker.client, tracker.run_id
    metadata = {
        "input": "clips (B, N, 3, H, W) float32 RGB in [0, 1], any batch size B; the model normalises itself",
        "num_frames": num_frames,
        "height": height,
        "width": width,
        "embedding_dim": outputs["embedding"].shape[-1],
        "output_keys": list(OUTPUT_KEYS),
        "output_shapes": {key: [-1, *outputs[key].shape[1:]] for key in OUTPUT_KEYS},
        "metrics": {key: float(value) for key, value in metrics.items()},
        "data_fingerprint": data_fingerprint,
        "torch_version": torch.__version__,
        "mlflow_version": mlflow.__version__,
        "run_id": run_id,
    }
    run = client.get_run(run_id)
    params = model_params(config)
    logged = client.create_logged_model(run.info.experiment_id, name=registered_name, source_run_id=run_id,
                                        params=params, tags={"data_fingerprint": data_fingerprint},
                                        model_type=MODEL_TYPE)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        _save_flavour(serving, clips, outputs, model_dir)
        (model_dir / "config.yaml").write_text(yaml.safe_dump(dict(config), sort_keys=False))
        torch.save(cpu_model.state_dict(), model_dir / "state_dict.pt")
        (model_dir / "metadata.json").write_text(json.dumps(metadata | {"model_id": logged.model_id}, indent=2))
        client.log_model_artifacts(logged.model_id, str(model_dir))
    client.finalize_logged_model(logged.model_id, "READY")
    client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step)])
    for key, value in metrics.items():
        if key.startswith("val/"):  # the evaluation the run logged at that epoch, now also the model's
            _link_metric(client, run_id, key, float(value), step, logged.model_id)

    try:
        client.create_registered_model(registered_name, description=REGISTERED_DESCRIPTION)
    except MlflowException as err:
        if err.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
    tags = {key: str(float(value)) for key, value in metrics.items()} | {"data_fingerprint": data_fingerprint}
    description = version_description(params, metrics, data_fingerprint, run.info.run_name, run_id)
    # The source is the LoggedModel's artifact location itself: a `models:/<model_id>` source would make
    # MLflow's SQL registry look the model up through the *global* tracking URI, not this client's.
    version = client.create_model_version(registered_name, logged.artifact_location, run_id=run_id, tags=tags,
                                          description=description, model_id=logged.model_id)  # fmt: skip
    # The link MLflow's UI follows from the LoggedModel to its registered versions (what `log_model` would set).
    client.set_logged_model_tags(logged.model_id, {"mlflow.modelVersions": json.dumps(
        [{"name": registered_name, "version": version.version}])})  # fmt: skip
    return version


def _link_metric(client: MlflowClient, run_id: str, key: str, value: float, step: int, model_id: str) -> None:
    """Log `key` to the run, linked to the model. Where the run logged that value at `step` already, it is logged
    with that point's timestamp: MLflow then keeps a single point (the run's history is unchanged)."""
    logged = [m for m in client.get_metric_history(run_id, key) if m.step == step and m.value == value]
    timestamp = max(m.timestamp for m in logged) if logged else None
    client.log_metric(run_id, key, value, timestamp=timestamp, step=step, model_id=model_id)


REGISTERED_DESCRIPTION = (
    "DRSTA (Li et al., CVPR 2018): video person re-identification by diversity-regularized spatiotemporal "
    "attention. Each version is a torch.export program (MLflow pytorch flavour, pt2) that maps clips "
    "(B, N, 3, H, W, RGB in [0, 1]) to K·D descriptors, with its config and state dict; `champion` is the "
    "version that won its last promotion (`drsta models history`)."
)


def model_params(config: Mapping[str, Any]) -> dict[str, str]:
    """K, σ, λ, N, the trunk and feature enhancement of a resolved config, as LoggedModel params."""
    return {name: str(config[section][key]) for name, (section, key) in MODEL_PARAMS.items()}


def version_description(
    params: Mapping[str, str], metrics: Mapping[str, float], data_fingerprint: str, run_name: str, run_id: str
) -> str:
    """What a registered version is, in one paragraph: its hyper-parameters, scores, data and training run."""
    values = ", ".join(f"{name} = {value}" for name, value in params.items())
    scores = ", ".join(f"{key.removeprefix('val/')} {value:.1%}" for key, value in metrics.items()
                       if key in ("val/mAP", "val/rank1"))  # fmt: skip
    return (f"DRSTA with {values}. Validation: {scores or 'not evaluated'}. Trained on data {data_fingerprint} by "
            f"run {run_name} ({run_id}).")  # fmt: skip


def _save_flavour(serving: nn.Module, clips: torch.Tensor, outputs: dict[str, torch.Tensor], model_dir: Path) -> None:
    """Write the MLflow pytorch flavour (serialization_format="pt2") of the exported module to `model_dir`.

    Why `save_model` + `MlflowClient.log_artifacts` rather than `mlflow.pytorch.log_model` (MLflow 3.17):
    `log_model` resolves the tracking URI and the LoggedModel's experiment from MLflow's global state — without
    a global active experiment the LoggedModel lands in experiment 0, whose artifact root is `./mlruns` in the
    working directory — so it cannot serve several trackers in one process. The on-disk format is the same,
    so `mlflow.pytorch.load_model("models:/drsta/1")` still works.
    """
    # The flavour needs an explicit TensorSpec signature: MLflow can neither save a torch.Tensor input example
    # nor infer an output schema from a dict of tensors. It exports `serving` with Dim.AUTO on every -1
    # dimension, i.e. the batch.
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *clips.shape[1:]), "clips")]),
        outputs=Schema(
            [TensorSpec(np.dtype(np.float32), (-1, *value.shape[1:]), key) for key, value in outputs.items()]
        ),
    )
    mlflow.pytorch.save_model(
        serving,
        model_dir,
        serialization_format="pt2",
        input_example=clips,
        signature=signature,
        # Explicit requirements: MLflow's inference loads the model in a subprocess (~7 s for nothing).
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"],
    )


def download_registered(model_uri: str, tracking_uri: str | None, dst: str | Path) -> tuple[Path, dict[str, Any]]:
    """Download the model files (its LoggedModel's artifacts) of a registered version into `dst`, loading nothing.

    Args:
        model_uri: `models:/<name>/<version>` or `models:/<name>@<alias>` (aliases, not the deprecated stages).
        tracking_uri: MLflow tracking (and registry) URI; None uses MLflow's default resolution.
        dst: local directory the `model/` artifacts are downloaded into.

    Returns:
        The local model directory, and {"registered_name", "version"} of the resolved version.

    Raises:
        ValueError: malformed URI, unknown registered model, version or alias (the message lists what exists).
    """
    client = MlflowClient(tracking_uri)
    name, version = _resolve_version(client, model_uri)
    model_version = client.get_model_version(name, str(version))
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=model_version.source, dst_path=str(dst), tracking_uri=tracking_uri
    )
    return Path(local), {"registered_name": name, "version": version}


def load_registered(
    model_uri: str, tracking_uri: str | None, dst: str | Path
) -> tuple[Callable[[torch.Tensor], dict[str, torch.Tensor]], dict[str, Any]]:
    """Download a registered DRSTA version into `dst` and load it; nothing in the files can run code.

    The version must be drsta's pt2 flavour (`pipelines.model_files`): a pickle-flavour model or an MLmodel
    with a `code:` path is refused, and the program is checked before `torch.export.load` sees it.

    Returns:
        The model: clips (B, N, 3, H, W) float32 in [0, 1] on the CPU -> dict of tensors ("embedding" (B, E),
        …); and metadata.json's dict plus "config" (config.yaml), "registered_name" and "version".

    Raises:
        ValueError: malformed URI, unknown registered model, version or alias (the message lists what exists);
            UnsafeModelError (a ValueError) for a model that is not drsta's pt2 flavour.
    """
    from pipelines.model_files import load_model_dir

    local, identity = download_registered(model_uri, tracking_uri, dst)
    model, metadata = load_model_dir(local, model_uri)
    return model, metadata | identity


def set_alias(name: str, alias: str, version: int | str, tracking_uri: str | None) -> None:
    """Point `alias` (e.g. "champion", "previous") of registered model `name` at `version`."""
    MlflowClient(tracking_uri).set_registered_model_alias(name, alias, str(version))


def get_alias_version(name: str, alias: str, tracking_uri: str | None) -> int | None:
    """The version `alias` points at, None if the alias is unset; ValueError for an unknown registered model."""
    version = get_registered_model(MlflowClient(tracking_uri), name).aliases.get(alias)
    return None if version is None else int(version)


def _resolve_version(client: MlflowClient, model_uri: str) -> tuple[str, int]:
    match = _MODEL_URI.fullmatch(model_uri)
    if match is None:
        raise ValueError(f"model URI {model_uri!r}: expected models:/<name>/<version> or models:/<name>@<alias>")
    name = match["name"]
    registered = get_registered_model(client, name)
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
    available = f"versions {versions or 'none'}, aliases {registered.aliases or 'none'}"
    if match["alias"] is not None:
        if match["alias"] not in registered.aliases:
            raise ValueError(f"model URI {model_uri!r}: {name!r} has no alias {match['alias']!r}; it has {available}")
        return name, int(registered.aliases[match["alias"]])
    if not match["version"].isdigit():
        raise ValueError(
            f"model URI {model_uri!r}: {match['version']!r} is not a version number (stages are deprecated: "
            f"use models:/{name}@<alias>); {name!r} has {available}"
        )
    if int(match["version"]) not in versions:
        raise ValueError(f"model URI {model_uri!r}: {name!r} has no version {match['version']}; it has {available}")
    return name, int(match["version"])


def get_registered_model(client: MlflowClient, name: str) -> RegisteredModel:
    """The registered model `name`; ValueError listing the registered models if there is none by that name."""
    try:
        return client.get_registered_model(name)
    except MlflowException as err:
        if err.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            raise
    models = client.search_registered_models(max_results=100)
    names = sorted(model.name for model in models if not model.name.endswith(LOCK_SUFFIX))
    raise ValueError(f"no registered model {name!r}; registered models: {names or 'none'}")


def default_tracking_uri(tracking_uri: str | None) -> str:
    """The given URI, else $MLFLOW_TRACKING_URI, else a SQLite store `mlflow.db` in the working directory (as an
    absolute path, so that Ray workers started elsewhere use the same file).

    Credentials never stay in the URI, which drsta logs, records and prints: `https://user:pass@host` becomes
    `https://host`, and the user and password go to MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD of this
    process (and of the local Ray it starts), where MLflow reads them.
    """
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').resolve()}"
    if not has_credentials(uri):
        return uri
    parts = urlsplit(uri)
    for variable, value in (("MLFLOW_TRACKING_USERNAME", parts.username), ("MLFLOW_TRACKING_PASSWORD", parts.password)):
        if value is None:
            continue
        value = unquote(value)
        if os.environ.get(variable, value) != value:
            raise ValueError(f"the tracking URI {redact_credentials(uri)} carries credentials that differ from "
                             f"${variable}: give them in one place (the variables are never logged)")  # fmt: skip
        os.environ[variable] = value
    return redact_credentials(uri)


def existing_tracking_uri(tracking_uri: str | None) -> str:
    """`default_tracking_uri`, for commands that only read: a local SQLite store must exist (MLflow would create
    an empty one, and then report the model as missing)."""
    uri = default_tracking_uri(tracking_uri)
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.is_file():
            raise FileNotFoundError(f"no MLflow store at {path}: pass --tracking-uri (or set MLFLOW_TRACKING_URI) "
                                    "to the store that holds the registry")  # fmt: skip
    return uri


def get_or_create_experiment(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    """The id of experiment `name`, created (with `artifact_location`) if it does not exist yet."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if KIND_TAG not in experiment.tags:  # a kind chosen in the UI stays
            client.set_experiment_tag(experiment.experiment_id, KIND_TAG, MODEL_DEVELOPMENT)
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location,
                                        tags={KIND_TAG: MODEL_DEVELOPMENT})  # fmt: skip
    except MlflowException as err:  # another worker created it between the two calls
        if err.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
        return client.get_experiment_by_name(name).experiment_id
