"""A training run's identity (`pipelines.run`): its record beside the checkpoints, and the driver opening its
MLflow run (a new run must not exist yet, a resumed one must, and it continues the same MLflow run)."""

import pytest
from mlflow import MlflowClient

from drsta.config import ExperimentConfig
from pipelines.run import TrainingRun, open_run


@pytest.fixture
def cfg(tmp_path) -> ExperimentConfig:
    return ExperimentConfig().with_overrides({"train.storage_path": str(tmp_path / "results"), "train.name": "run-1",
                                              "train.tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"})  # fmt: skip


@pytest.fixture
def released(monkeypatch) -> list[bool]:
    """Calls of `release_leaked_placement_groups` (which needs Ray), recorded instead of made."""
    calls: list[bool] = []
    monkeypatch.setattr("pipelines.run.release_leaked_placement_groups", lambda: calls.append(True))
    return calls


@pytest.mark.parametrize("uri", [False, True])
def test_run_record_lives_in_the_storage_path_local_or_uri(tmp_path, uri):
    storage = tmp_path.as_uri() if uri else str(tmp_path)  # file:///… goes through pyarrow's URI filesystems
    run = TrainingRun.from_config(
        ExperimentConfig().with_overrides({"train.storage_path": storage, "train.name": "run-1"})
    )
    assert not run.started() and run.read_record() == {} and run.mlflow_run_id() is None
    run.write_record({"mlflow_run_id": "abc"})
    assert run.started() and run.read_record() == {"mlflow_run_id": "abc"} and run.mlflow_run_id() == "abc"
    assert (tmp_path / ".drsta-runs" / "run-1.json").is_file()
    assert not TrainingRun(run.storage_path, "run-2").started()


def test_a_local_storage_path_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = ExperimentConfig().with_overrides({"train.storage_path": "results", "train.name": "run-1"})
    assert TrainingRun.from_config(cfg) == TrainingRun(str(tmp_path / "results"), "run-1")
    uri = cfg.with_overrides({"train.storage_path": "s3://bucket/drsta"})
    assert TrainingRun.from_config(uri).storage_path == "s3://bucket/drsta"


def test_a_ray_train_directory_alone_marks_a_run_started(cfg, tmp_path, released):
    (tmp_path / "results" / "run-1").mkdir(parents=True)
    assert TrainingRun.from_config(cfg).started()
    with pytest.raises(ValueError, match=r"run 'run-1' already exists in .*results: pass --resume"):
        open_run(cfg, resume=False, parent_run_id=None, data_fingerprint="fp")


def test_nothing_to_resume_is_refused_before_anything_is_written(cfg, tmp_path, released):
    with pytest.raises(ValueError, match=r"nothing to resume: no run 'run-1' in .*results"):
        open_run(cfg, resume=True, parent_run_id=None, data_fingerprint="fp")
    assert not released and not (tmp_path / "results").exists() and not (tmp_path / "mlflow.db").exists()


@pytest.mark.integration
def test_a_run_opens_once_then_resumes_into_the_same_mlflow_run(cfg, released):
    tracker, run_id = open_run(cfg, resume=False, parent_run_id=None, data_fingerprint="fp")
    tracker.end("FAILED")  # a driver that stopped
    assert run_id is not None and TrainingRun.from_config(cfg).mlflow_run_id() == run_id
    client = MlflowClient(cfg.train.tracking_uri)
    logged = client.get_run(run_id)
    assert logged.data.tags["data_fingerprint"] == "fp" and logged.data.params["train.name"] == "run-1"
    assert "config.yaml" in {info.path for info in client.list_artifacts(run_id)}
    with pytest.raises(ValueError, match="already exists"):
        open_run(cfg, resume=False, parent_run_id=None, data_fingerprint="fp")
    assert not released
    tracker, resumed = open_run(cfg, resume=True, parent_run_id=None, data_fingerprint="fp")
    assert resumed == run_id and released == [True] and client.get_run(run_id).info.status == "RUNNING"
    tracker.end("FINISHED")
