"""A smoke sweep on a real multi-node cluster: trials of 2 workers each, ASHA, MLflow parent/child runs,
the champion alias, resources freed after early stops."""

import re
import subprocess
import sys
import time
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest
import ray
import ray.tune
import torch
import yaml

from drsta.config import ExperimentConfig
from drsta.model import build_model
from drsta.search_space import SearchSpace
from pipelines.models import promote
from pipelines.tracking import RunTracker, download_registered, get_alias_version, log_model
from pipelines.tune import sweep, sweep_figure, trial_table, tune_config, tune_distribution
from tests.spaces import SMOKE, smoke_space

pytestmark = pytest.mark.integration


def test_smoke_sweep_stops_some_trials_early_and_promotes_the_best(manifest, tmp_path, ray_cluster, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    overrides = {"train.tracking_uri": uri, "train.storage_path": str(tmp_path / "ray_results")}
    summary = sweep(SMOKE, manifest, "smoke", overrides=overrides)
    assert summary["errored"] == []
    # The driver's console: a line per trial result (its values, the epoch, loss, mAP), one per finished trial.
    printed = capsys.readouterr().out
    assert re.search(r"^trial \w+ \(model\.num_attention_models=\d .*\)  epoch 1/3  loss \d", printed, re.M), printed
    assert "mAP" in printed and printed.count(" finished\n") >= 1

    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("drsta").experiment_id
    parent = client.search_runs([experiment], "tags.drsta_sweep = 'smoke'")
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent[0].info.run_id}'")
    assert len(children) == 4
    epochs = sorted((len(client.get_metric_history(c.info.run_id, "train/loss")), c.info.status) for c in children)
    assert epochs[0][0] < 3 == epochs[-1][0], epochs  # ASHA stopped at least one trial before its last epoch
    assert all(status == ("FINISHED" if done == 3 else "KILLED") for done, status in epochs), epochs
    assert "figures/sweep.png" in {a.path for a in client.list_artifacts(parent[0].info.run_id, "figures")}

    assert summary["promotion"]["promoted"] and get_alias_version("drsta", "champion", uri) == summary["model_version"]
    # The registered model is the best epoch's (not the best trial's last epoch): evaluated again, it scores that.
    best_map = max(row["mAP"] for row in summary["trials"] if row["mAP"] is not None)
    assert summary["promotion"]["mAP"] == pytest.approx(best_map, abs=1e-4)
    version = client.get_model_version("drsta", str(summary["model_version"]))
    assert version.tags["eval.data_fingerprint"] and version.tags["eval.protocol"]

    # Early-stopped trials gave their workers back: every CPU of the cluster is free again.
    assert ray.available_resources().get("CPU", 0) == pytest.approx(ray.cluster_resources()["CPU"])

    # A model that does not beat the champion (its very weights, registered again: the same mAP) is registered but
    # the champion stays. (An untrained model can: a 3-epoch smoke champion ranks near chance.)
    files, _ = download_registered(f"models:/drsta/{summary['model_version']}", uri, tmp_path / "champion")
    cfg = ExperimentConfig.from_yaml(files / "config.yaml")
    copy = build_model(cfg.model)
    copy.load_state_dict(torch.load(files / "state_dict.pt", weights_only=True))
    tracker = RunTracker(uri, "drsta", "champion-copy")
    tracker.start()
    example = torch.rand(2, cfg.model.num_frames, 3, cfg.input.height, cfg.input.width)
    same = log_model(tracker, copy, example, cfg.to_dict(), {}, "copy")
    outcome = promote("drsta", int(same.version), manifest, uri)
    assert not outcome["promoted"] and outcome["mAP"] == pytest.approx(outcome["champion_mAP"], abs=1e-6), outcome
    assert get_alias_version("drsta", "champion", uri) == summary["model_version"]
    assert get_alias_version("drsta", "previous", uri) is None


def test_a_sweep_whose_trials_all_error_exits_1_with_its_runs_marked_failed(manifest, tmp_path, ray_cluster, capsys):
    """A trial that errors (here: a trunk weights file that does not exist) ends `drsta tune` with exit status 1,
    after its MLflow runs are closed as FAILED; the console says where the error is."""
    from pipelines import cli

    space = tmp_path / "broken.yaml"
    space.write_text(yaml.safe_dump({
        "base_config": "tiny", "searcher": "grid", "max_concurrent": 1,
        "scheduler": {"grace_period": 1, "reduction_factor": 2},
        "overrides": {"input.width": 40, "optim.epochs": 1, "train.num_workers": 1, "train.max_failures": 0},
        "params": {"model.pretrained_weights": {"choice": [str(tmp_path / "missing.pth")]}},
    }))  # fmt: skip
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["tune", "--space", str(space), "--manifest", str(manifest), "--name", "broken",
                  "--tracking-uri", uri, "--storage-path", str(tmp_path / "ray_results")])  # fmt: skip
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    # (the last line: this test process imported MLflow before drsta could quiet its INFO logs, as it does in `drsta`)
    error = captured.err.strip().splitlines()[-1]
    assert error.startswith("drsta tune: error: every trial of sweep 'broken' errored; the first one's error is in ")
    assert re.search(r"^trial \w+ errored: see ", captured.out, re.M), captured.out
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("drsta").experiment_id])
    assert runs and {run.info.status for run in runs} == {"FAILED"}


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


def test_a_sweep_killed_half_way_resumes_and_runs_every_trial_exactly_once(manifest, tmp_path, ray_cluster):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    storage = tmp_path / "ray_results"
    # No early stops here (grace period = every epoch), so a trial part-way at the kill was surely running. Trials
    # of one worker (the smoke sweep above runs 2-worker trials): with their shorter epochs the kill tends to fall
    # after a trial stored its last checkpoint and before Tune had that epoch's report, which the resumed trial
    # then reports again (it did in both runs on a 2-core machine).
    space_path = smoke_space(tmp_path, {"train.num_workers": 1}, scheduler={"grace_period": 3}, num_samples=3)
    command = [sys.executable, "-m", "pipelines.tune", "--space", str(space_path), "--manifest", str(manifest),
               "--name", "resumable", "--address", ray_cluster.address, "--tracking-uri", uri,
               "--storage-path", str(storage)]  # fmt: skip
    with open(tmp_path / "driver.log", "w") as log:
        driver = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    client = mlflow.MlflowClient(uri)

    def children() -> list:
        experiment = client.get_experiment_by_name("drsta")
        parent = client.search_runs([experiment.experiment_id], "tags.drsta_sweep = 'resumable'") if experiment else []
        if not parent:
            return []
        return client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent[0].info.run_id}'")

    def epochs(run) -> list[int]:
        return [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]

    # Kill the driver once one trial has done its 3 epochs and another is part-way through them. `before` is what
    # decided it: a trial may log one more epoch before its workers stop (the part-way one can even finish).
    deadline, before = time.time() + 600, {}
    while time.time() < deadline and driver.poll() is None:
        before = {r.info.run_name: epochs(r) for r in children()}
        done = [len(steps) for steps in before.values()]
        if 3 in done and (1 in done or 2 in done):
            break
        time.sleep(0.5)
    assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
    driver.kill()
    driver.wait()

    overrides = {"train.tracking_uri": uri, "train.storage_path": str(storage)}
    with pytest.raises(ValueError, match="already exists"):
        sweep(space_path, manifest, "resumable", overrides=overrides)
    summary = sweep(space_path, manifest, "resumable", resume=True, overrides=overrides)

    after = {r.info.run_name: r for r in children()}
    assert len(after) == 3, sorted(after)  # exactly one MLflow child run per trial
    for name, run in after.items():  # every epoch exactly once: finished trials not re-run, the others continued
        assert epochs(run) == [0, 1, 2] and run.info.status == "FINISHED", (name, epochs(run), run.info.status)
    part_way = [name for name, steps in before.items() if 0 < len(steps) < 3]
    assert part_way and all(epochs(after[name])[: len(before[name])] == before[name] for name in part_way)
    assert summary["model_version"] is not None
    assert ray.available_resources().get("CPU", 0) == pytest.approx(ray.cluster_resources()["CPU"])


def test_sweep_figure_plots_each_trials_best_epoch_as_the_table_does():
    """Trials whose last epoch is not their best (ASHA, overfitting): the figure shows the table's best val mAP."""

    def result(trial_id: str, maps: list[float], params: dict, error: Exception | None = None) -> SimpleNamespace:
        history = pd.DataFrame({"val/mAP": maps, "val/rank1": [m + 0.1 for m in maps], "epochs_done": range(1, 4)})
        return SimpleNamespace(metrics_dataframe=history, metrics={"trial_id": trial_id, "epochs_done": 3},
                               config={"params": params}, error=error, path=f"/trials/{trial_id}")  # fmt: skip

    results = [
        result("a", [0.30, 0.62, 0.41], {"loss.diversity_weight": 0.001, "variant": "drsta"}),
        result("b", [-1.0, 0.55, 0.50], {"loss.diversity_weight": 0.1, "variant": "tp_baseline"}),  # -1: not scored
        result("c", [0.20, 0.35, 0.70], {"loss.diversity_weight": 10.0, "variant": "drsta"}),
    ]
    keys = ["loss.diversity_weight", "variant"]
    rows = trial_table(results, keys, best=results[2])
    assert [row["mAP"] for row in rows] == [0.62, 0.55, 0.70]
    fig = sweep_figure(rows, keys)
    weight, variant = fig.axes
    trials, star = weight.collections
    np.testing.assert_allclose(trials.get_offsets(), [[0.001, 0.62], [0.1, 0.55], [10.0, 0.70]])
    np.testing.assert_allclose(star.get_offsets(), [[10.0, 0.70]])
    np.testing.assert_allclose(variant.collections[0].get_offsets(), [[0, 0.62], [1, 0.55], [0, 0.70]])
    assert weight.get_xscale() == "log" and weight.get_title() == "loss.diversity_weight"
    assert [ax.get_ylabel() for ax in fig.axes] == ["best val mAP"] * 2
