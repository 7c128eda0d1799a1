"""A smoke sweep on a real multi-node cluster: trials of 2 workers each, ASHA, MLflow parent/child runs,
the champion alias, resources freed after early stops."""

from pathlib import Path

import mlflow
import pytest
import ray
import ray.tune
import torch

from drsta.model import build_model
from drsta.search_space import SearchSpace
from pipelines.models import promote
from pipelines.tracking import RunTracker, get_alias_version, log_model
from pipelines.tune import sweep, tune_config, tune_distribution

pytestmark = pytest.mark.integration

SMOKE = Path(__file__).parents[1] / "tune_spaces" / "smoke.yaml"


def test_smoke_sweep_stops_some_trials_early_and_promotes_the_best(manifest, tmp_path, ray_cluster):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    overrides = {"train.tracking_uri": uri, "train.storage_path": str(tmp_path / "ray_results")}
    summary = sweep(SMOKE, manifest, "smoke", overrides=overrides)

    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("drsta").experiment_id
    parent = client.search_runs([experiment], "tags.drsta_sweep = 'smoke'")
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent[0].info.run_id}'")
    assert len(children) == 4
    epochs = sorted(len(client.get_metric_history(c.info.run_id, "train/loss")) for c in children)
    assert epochs[0] < 3 == epochs[-1], epochs  # ASHA stopped at least one trial before its last epoch
    assert {c.info.status for c in children} <= {"FINISHED", "KILLED"}, [c.info.status for c in children]
    assert "figures/sweep.png" in {a.path for a in client.list_artifacts(parent[0].info.run_id, "figures")}

    assert summary["promotion"]["promoted"] and get_alias_version("drsta", "champion", uri) == summary["model_version"]
    version = client.get_model_version("drsta", str(summary["model_version"]))
    assert version.tags["eval.data_fingerprint"] and version.tags["eval.protocol"]

    # Early-stopped trials gave their workers back: every CPU of the cluster is free again.
    assert ray.available_resources().get("CPU", 0) == pytest.approx(ray.cluster_resources()["CPU"])

    # An untrained model of the same shape is worse: it is registered but the champion stays.
    _, base = SearchSpace.from_yaml(SMOKE)
    tracker = RunTracker(uri, "drsta", "untrained")
    tracker.start()
    example = torch.rand(2, base.model.num_frames, 3, base.input.height, base.input.width)
    worse = log_model(tracker, build_model(base.model), example, base.to_dict(), {}, "untrained")
    outcome = promote("drsta", int(worse.version), manifest, uri)
    assert not outcome["promoted"] and outcome["mAP"] < outcome["champion_mAP"]
    assert get_alias_version("drsta", "champion", uri) == summary["model_version"]
    assert get_alias_version("drsta", "previous", uri) is None


def test_optuna_searcher_samples_the_default_space(ray_cluster, tmp_path):
    """Ray's Optuna wrapper with the pinned Optuna release, on the default space's distributions."""
    space, base = SearchSpace.from_yaml(SMOKE.parent / "default.yaml")
    config = tune_config(space, base)
    config.num_samples, config.max_concurrent_trials, config.scheduler = 4, 2, None

    def fake_trial(config: dict) -> None:
        params = config["params"]
        ray.tune.report({"val/mAP": 1 / (1 + abs(params["model.sigma"] - 1))})

    param_space = {"params": {key: tune_distribution(d, grid=False) for key, d in space.params.items()}}
    run_config = ray.tune.RunConfig(storage_path=str(tmp_path))
    results = ray.tune.Tuner(fake_trial, param_space=param_space, tune_config=config, run_config=run_config).fit()
    assert len(results) == 4 and not [r.error for r in results if r.error]
    for result in results:
        base.with_overrides(result.config["params"])  # every sample is a valid config
