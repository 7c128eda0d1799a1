"""pipelines.tracking against real MLflow (SQLite and artifacts in tmp_path): runs, resume, registry, failures."""

import copy
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch
from mlflow import MlflowClient

from drsta.config import ExperimentConfig
from drsta.model import drsta_tiny
from pipelines.tracking import (
    RunTracker,
    flatten_params,
    get_alias_version,
    load_registered,
    log_model,
    monitor_system,
    set_alias,
)

pytestmark = pytest.mark.integration

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

CLIP_SHAPE = (2, 4, 3, 64, 32)  # (B, N, 3, H, W) for drsta_tiny
MODEL_FILES = {"MLmodel", "data", "config.yaml", "state_dict.pt", "metadata.json"}


def _tracker(root: Path, run_name: str = "run", **kwargs) -> RunTracker:
    return RunTracker(_uri(root), "drsta-test", run_name, artifact_location=str(root / "artifacts"), **kwargs)


def _uri(root: Path) -> str:
    return f"sqlite:///{root}/mlflow.db"


def _artifact_files(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    files = set()
    for info in client.list_artifacts(run_id, path):
        files |= _artifact_files(client, run_id, info.path) if info.is_dir else {info.path}
    return files


def _tracking_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "pipelines.tracking" and r.levelno >= logging.ERROR]


def test_flatten_params_dots_nested_keys_and_stringifies_values():
    config = {"model": {"num_frames": 4, "embedding_dim": None, "sub": {"flag": True}}, "lr": 0.1, "name": "x"}
    assert flatten_params(config) == {
        "model.num_frames": "4",
        "model.embedding_dim": "null",
        "model.sub.flag": "true",
        "lr": "0.1",
        "name": "x",
    }


def test_run_logs_params_metrics_artifacts_and_figures(tmp_path):
    tracker = _tracker(tmp_path)
    run_id = tracker.start()
    config = ExperimentConfig().to_dict()
    tracker.log_params(config)
    for step in range(3):
        tracker.log_metrics({"train/loss": 1.0 / (step + 1), "val/mAP": 0.1 * step}, step=step)
    note = tmp_path / "notes.txt"
    note.write_text("hello")
    tracker.log_artifact(note)
    tracker.log_artifact(note, artifact_path="extra")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    tracker.log_figure(fig, "loss_curve")
    plt.close(fig)
    tracker.log_dict(config, "config.yaml")
    tracker.end()

    assert tracker.healthy and tracker.failures == 0
    client = MlflowClient(_uri(tmp_path))
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.params == flatten_params(config)
    assert run.data.params["model.embedding_dim"] == "null"
    assert run.data.params["input.height"] == "256"
    history = client.get_metric_history(run_id, "train/loss")
    assert [(m.step, m.value) for m in history] == [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3))]
    assert [m.step for m in client.get_metric_history(run_id, "val/mAP")] == [0, 1, 2]
    assert _artifact_files(client, run_id) == {"notes.txt", "extra/notes.txt", "figures/loss_curve.png", "config.yaml"}
    assert str(tmp_path) in run.info.artifact_uri


def test_tags_and_parent_run(tmp_path):
    parent = _tracker(tmp_path, "sweep")
    parent_id = parent.start()
    child = _tracker(tmp_path, "trial", tags={"trial": "3"}, parent_run_id=parent_id)
    child_id = child.start()
    tags = MlflowClient(_uri(tmp_path)).get_run(child_id).data.tags
    assert tags["trial"] == "3" and tags["mlflow.parentRunId"] == parent_id


def test_resume_keeps_one_run_and_does_not_duplicate_params(tmp_path, caplog):
    config = ExperimentConfig().to_dict()
    first = _tracker(tmp_path)
    run_id = first.start()
    first.log_params(config)
    first.log_metrics({"train/loss": 2.0}, step=0)
    first.end("FAILED")  # the worker died; Ray restarts it with the same run id

    resumed = _tracker(tmp_path, run_id=run_id)
    assert resumed.start() == run_id
    assert resumed.logged_steps("train/loss") == {0} and resumed.logged_steps("val/mAP") == set()
    changed = config | {"model": config["model"] | {"sigma": 2.0}}
    with caplog.at_level(logging.WARNING, logger="pipelines.tracking"):
        resumed.log_params(changed)
    resumed.log_metrics({"train/loss": 1.0}, step=1)
    client = MlflowClient(_uri(tmp_path))
    assert client.get_run(run_id).info.status == "RUNNING"
    resumed.end()

    assert resumed.healthy
    assert "model.sigma" in caplog.text
    experiment = client.get_experiment_by_name("drsta-test")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_id == run_id and run.info.status == "FINISHED"
    assert run.data.params == flatten_params(config)  # the first value of model.sigma is kept
    assert [m.step for m in client.get_metric_history(run_id, "train/loss")] == [0, 1]


def test_misuse_is_a_bug_not_a_tracking_failure(tmp_path):
    tracker = _tracker(tmp_path)
    with pytest.raises(RuntimeError, match="start"):
        tracker.log_metrics({"train/loss": 1.0}, step=0)
    tracker.start()
    with pytest.raises(ValueError, match="FINISHED"):
        tracker.end("DONE")  # type: ignore[arg-type]


# --- registry ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """Two versions of "drsta" logged from one run (different weights), alias champion -> 1.

    Version 2 is logged from a single-clip example (as the training driver does): it must still take any batch.
    """
    root = tmp_path_factory.mktemp("registry")
    tracker = _tracker(root)
    tracker.start()
    clips = torch.rand(*CLIP_SHAPE)
    config = ExperimentConfig().to_dict()
    models, versions = [], []
    for seed in (1, 2):
        torch.manual_seed(seed)
        model = drsta_tiny().train()
        example = clips if seed == 1 else clips[:1]
        versions.append(log_model(tracker, model, example, config, {"val/mAP": 0.5 + seed / 10}, f"fingerprint-{seed}"))
        models.append(model)
    tracker.end()
    assert tracker.healthy, "log_model failed; see the error logged by pipelines.tracking"
    set_alias("drsta", "champion", versions[0].version, _uri(root))
    return {"root": root, "uri": _uri(root), "clips": clips, "models": models, "versions": versions, "config": config}


def test_log_model_registers_logged_models_with_metrics_params_and_descriptions(registry):
    client = MlflowClient(registry["uri"])
    v1, v2 = registry["versions"]
    assert (int(v1.version), int(v2.version)) == (1, 2)
    assert v1.tags == {"val/mAP": "0.6", "data_fingerprint": "fingerprint-1"}
    assert v1.run_id == v2.run_id
    assert v1.source != v2.source, "a second model of the same run must not overwrite the first"
    experiment = client.get_experiment_by_name("drsta-test")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens on runs and models

    # MLflow 3 LoggedModels: one per version, READY, linked to the run, with K/σ/λ and the metrics on the model.
    logged = {m.artifact_location: m for m in client.search_logged_models([experiment.experiment_id])}
    config = registry["config"]
    for version, mAP in ((v1, 0.6), (v2, 0.7)):
        model = logged[version.source]
        assert (model.source_run_id, model.model_type, str(model.status)) == (v1.run_id, "drsta", "READY")
        assert model.params["K"] == str(config["model"]["num_attention_models"])
        assert model.params["lambda"] == str(config["loss"]["diversity_weight"])
        assert {m.key: m.value for m in model.metrics} == {"val/mAP": pytest.approx(mAP)}
        assert json.loads(model.tags["mlflow.modelVersions"]) == [{"name": "drsta", "version": version.version}]
        files = {info.path for info in client.list_logged_model_artifacts(model.model_id)}
        assert files >= MODEL_FILES
        assert f"mAP {mAP:.1%}" in version.description and "fingerprint-1" in v1.description
        assert f"K = {config['model']['num_attention_models']}" in version.description and v1.run_id in v1.description
    assert client.get_registered_model("drsta").description.startswith("DRSTA (Li et al., CVPR 2018)")
    assert registry["models"][0].training, "log_model must not switch the caller's model to eval mode"


def test_logged_state_dict_loads_weights_only(registry, tmp_path):
    model = registry["models"][1]
    _, metadata = load_registered("models:/drsta/2", registry["uri"], tmp_path)
    state = torch.load(next(tmp_path.glob("*/state_dict.pt")), weights_only=True)
    assert state.keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(state[key], value)
    assert metadata["run_id"] == registry["versions"][1].run_id


@pytest.mark.parametrize(("uri", "index"), [("models:/drsta/2", 1), ("models:/drsta@champion", 0)])
def test_load_registered_matches_the_model(registry, tmp_path, uri, index):
    model = copy.deepcopy(registry["models"][index]).eval()
    clips = registry["clips"]
    predict, metadata = load_registered(uri, registry["uri"], tmp_path / "dst")
    out = predict(clips)
    with torch.no_grad():
        want = model(clips)
    assert set(out) == {"embedding", "diversity", "spatial_maps", "temporal_weights"}
    torch.testing.assert_close(out["embedding"], want.embedding)
    assert predict(torch.rand(5, *CLIP_SHAPE[1:]))["embedding"].shape == (5, model.embedding_dim)
    assert metadata["version"] == index + 1 and metadata["config"] == registry["config"]
    assert (metadata["num_frames"], metadata["height"], metadata["width"]) == CLIP_SHAPE[1:2] + CLIP_SHAPE[3:]
    assert metadata["embedding_dim"] == model.embedding_dim
    assert metadata["data_fingerprint"] == f"fingerprint-{index + 1}"
    assert metadata["metrics"] == {"val/mAP": pytest.approx(0.6 + index / 10)}
    assert metadata["output_keys"] == ["embedding", "diversity", "spatial_maps", "temporal_weights"]
    assert len(list((tmp_path / "dst").glob("*/data/model.pt2"))) == 1


def test_load_registered_in_a_process_without_model_code(registry, tmp_path):
    clips_path, out_path = tmp_path / "clips.pt", tmp_path / "out.json"
    torch.save(registry["clips"], clips_path)
    script = f"""
import json, sys, torch, mlflow
from pipelines.tracking import load_registered
clips = torch.load({str(clips_path)!r}, weights_only=True)
predict, metadata = load_registered("models:/drsta@champion", {registry["uri"]!r}, {str(tmp_path / "dst")!r})
flavour = mlflow.pytorch.load_model("models:/drsta/1")  # MLflow's own loader, via MLFLOW_TRACKING_URI
torch.save({{"ours": predict(clips)["embedding"], "flavour": flavour(clips)["embedding"]}}, {str(tmp_path / "e.pt")!r})
json.dump({{"drsta": sorted(m for m in sys.modules if m.split(".")[0] == "drsta")}}, open({str(out_path)!r}, "w"))
"""
    env = os.environ | {"MLFLOW_TRACKING_URI": registry["uri"], "MLFLOW_DISABLE_TELEMETRY": "true"}
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, env=env)

    # No model code: only the archive checker (torch alone) runs before torch.export.load.
    assert json.loads(out_path.read_text()) == {"drsta": ["drsta", "drsta.archive"]}
    embeddings = torch.load(tmp_path / "e.pt", weights_only=True)
    with torch.no_grad():
        want = copy.deepcopy(registry["models"][0]).eval()(registry["clips"]).embedding
    torch.testing.assert_close(embeddings["ours"], want)
    torch.testing.assert_close(embeddings["flavour"], want)


@pytest.mark.parametrize(
    ("uri", "names"),
    [
        ("models:/nope/1", ["'nope'", "drsta"]),
        ("models:/drsta/9", ["no version 9", "[1, 2]", "champion"]),
        ("models:/drsta@gold", ["'gold'", "[1, 2]", "champion"]),
        ("models:/drsta/Production", ["stages are deprecated", "champion"]),
        ("runs:/abc/model", ["runs:/abc/model", "models:/<name>/<version>"]),
        ("models:/drsta", ["models:/drsta"]),
    ],
)
def test_load_registered_bad_uri_names_what_exists(registry, tmp_path, uri, names):
    with pytest.raises(ValueError) as info:
        load_registered(uri, registry["uri"], tmp_path)
    for name in names:
        assert name in str(info.value)


def test_alias_helpers(registry):
    uri = registry["uri"]
    assert get_alias_version("drsta", "champion", uri) == 1
    assert get_alias_version("drsta", "previous", uri) is None
    set_alias("drsta", "previous", 2, uri)
    assert get_alias_version("drsta", "previous", uri) == 2
    with pytest.raises(ValueError, match="nope"):
        get_alias_version("nope", "champion", uri)


# --- failures never stop training -------------------------------------------------------------------------------


def _train_side_calls(tracker: RunTracker, tmp_path: Path) -> None:
    tracker.log_params({"model": {"num_frames": 4}})
    for step in range(3):
        tracker.log_metrics({"train/loss": 1.0}, step=step)
    note = tmp_path / "note.txt"
    note.write_text("x")
    tracker.log_artifact(note)
    tracker.log_dict({"a": 1}, "a.json")
    fig = plt.figure()
    tracker.log_figure(fig, "f")
    plt.close(fig)
    assert log_model(tracker, drsta_tiny(), torch.rand(*CLIP_SHAPE), {}, {"val/mAP": 0.1}, "fp") is None
    tracker.end("FAILED")


def test_unreachable_server_disables_tracking_without_raising(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    tracker = RunTracker("http://127.0.0.1:9", "drsta-test", "run")
    with caplog.at_level(logging.DEBUG, logger="pipelines.tracking"):
        assert tracker.start() is None
        _train_side_calls(tracker, tmp_path)
    assert not tracker.healthy
    assert tracker.failures == 10  # start + the 9 calls after it
    errors = _tracking_errors(caplog)
    assert len(errors) == 1 and "RunTracker.start" in errors[0].getMessage()


def test_store_deleted_mid_run_disables_tracking_without_raising(tmp_path, caplog):
    root = tmp_path / "store"
    root.mkdir()
    tracker = _tracker(root)
    tracker.start()
    tracker.log_metrics({"train/loss": 1.0}, step=0)
    shutil.rmtree(root)  # the SQLite file and the artifact root vanish under a running tracker
    with caplog.at_level(logging.ERROR, logger="pipelines.tracking"):
        _train_side_calls(tracker, tmp_path)
    assert not tracker.healthy and tracker.failures >= 1
    errors = _tracking_errors(caplog)
    assert len(errors) == 1 and "RunTracker.log_params" in errors[0].getMessage()


def test_unwritable_store_disables_tracking_without_raising(tmp_path, caplog):
    tracker = RunTracker("sqlite:////proc/drsta-no-such-dir/mlflow.db", "drsta-test", "run")
    with caplog.at_level(logging.ERROR, logger="pipelines.tracking"):
        assert tracker.start() is None
        _train_side_calls(tracker, tmp_path)
    assert not tracker.healthy and tracker.failures == 10
    assert len(_tracking_errors(caplog)) == 1


def test_system_metrics_go_to_the_run_until_finished(tmp_path):
    tracker = _tracker(tmp_path)
    tracker.start()
    monitor = monitor_system(tracker.run_id, _uri(tmp_path), interval_s=0.2)
    assert monitor is not None
    time.sleep(1.5)
    monitor.finish()
    client = MlflowClient(_uri(tmp_path))
    history = client.get_metric_history(tracker.run_id, "system/cpu_utilization_percentage")
    assert len(history) >= 2 and all(0 <= m.value <= 100 for m in history)
    assert "system/system_memory_usage_megabytes" in client.get_run(tracker.run_id).data.metrics
    # A resumed run's monitor continues the steps; one per node names its metrics by the node.
    node = monitor_system(tracker.run_id, _uri(tmp_path), interval_s=0.2, node_id="node1")
    time.sleep(0.8)
    node.finish()
    assert client.get_metric_history(tracker.run_id, "system/node1/cpu_utilization_percentage")
