"""Distributed training on a real multi-node Ray cluster: learning, MLflow, the registry, resume, node loss."""

import threading
import time
from pathlib import Path

import mlflow
import pytest
import torch
from ray.util.state import list_actors

from drsta.config import ExperimentConfig
from drsta.model import build_model
from pipelines.evaluate import (
    checkpoint_program,
    evaluate_program,
    evaluate_with_claims,
    model_program,
    registered_program,
)
from pipelines.tracking import load_registered
from pipelines.train import FIRST_STEP, SCORE, load_trained_model, train

pytestmark = pytest.mark.integration
CLAIM_KEYS = {"val/attn_foreground", "val/attn_part_specificity", "val/attn_distinct_parts",
              "val/temporal_bad_ratio", "val/temporal_bad_auc",
              "val/probe_noise_ratio", "val/probe_black_ratio", "val/probe_shift_ratio"}  # fmt: skip

TINY = {
    "model": {"backbone": "tiny", "num_frames": 4, "num_attention_models": 3, "attention_hidden_dim": 16,
              "embedding_dim": 32, "tiny_trunk_dim": 48},
    "input": {"height": 64, "width": 40},
    "loss": {"oim_weight": 1.0, "triplet_weight": 1.0, "diversity_weight": 0.1, "oim_scale": 10.0},
    "data": {"sampler": "identity", "tracklets_per_id": 2, "batch_size_per_worker": 4, "decode_batch_size": 4,
             "flip_p": 0.5, "crop_p": 0.0, "erase_p": 0.0},
    "optim": {"optimizer": "adam", "lr": 3e-3, "trunk_lr_scale": 1.0, "weight_decay": 0.0, "epochs": 6},
    "train": {"num_workers": 2, "eval_every": 3, "max_failures": 2, "system_metrics_s": 1.0},
}  # fmt: skip


def config(manifest: Path, tmp_path: Path, name: str, **overrides) -> ExperimentConfig:
    cfg = ExperimentConfig.from_dict(TINY).with_overrides(
        {
            "data.manifest": str(manifest),
            "train.name": name,
            "train.storage_path": str(tmp_path / "ray_results"),
            "train.tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
        }
    )
    return cfg.with_overrides(overrides)


@pytest.fixture(scope="module")
def untrained_map(manifest, tmp_path_factory) -> float:
    """mAP of the tiny model as training initialises it (its model seed), evaluated as `drsta evaluate` does."""
    cfg = config(manifest, tmp_path_factory.mktemp("untrained"), "untrained")
    torch.manual_seed(cfg.train.model_seed)
    return evaluate_program(model_program(build_model(cfg.model), cfg), cfg, manifest).mAP


@pytest.fixture(scope="module")
def learned(manifest, tmp_path_factory) -> tuple[ExperimentConfig, dict, Path]:
    """A 6-epoch run of two workers: its config, its outcome and its directory."""
    tmp_path = tmp_path_factory.mktemp("learn")
    cfg = config(manifest, tmp_path, "learn")
    return cfg, train(cfg), tmp_path


def test_two_workers_learn_log_to_mlflow_and_register_a_loadable_model(manifest, learned, untrained_map):
    cfg, outcome, tmp_path = learned
    client = mlflow.MlflowClient(cfg.train.tracking_uri)
    run = client.get_run(outcome["mlflow_run_id"])
    losses = [m.value for m in client.get_metric_history(run.info.run_id, "train/loss")]
    maps = [m.value for m in client.get_metric_history(run.info.run_id, SCORE)]
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert len(maps) == 2 and maps[-1] > untrained_map + 0.08, (maps, untrained_map)
    first_step = client.get_metric_history(run.info.run_id, FIRST_STEP)  # once, at the first epoch
    assert [m.step for m in first_step] == [0] and 0 < first_step[0].value < 600
    assert run.data.params["model.num_attention_models"] == "3" and run.data.params["train.num_workers"] == "2"
    for key in ("train/diversity", "train/hellinger", "train/lr", "data/clips_per_s", "val/rank1", "val/rank20",
                "system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"):  # fmt: skip
        assert key in run.data.metrics, key
    # The paper's claims, measured at every evaluation (the manifest carries the synthetic set's ground truth).
    best_step = max(client.get_metric_history(run.info.run_id, SCORE), key=lambda m: m.value).step
    claims = {key: {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)} for key in CLAIM_KEYS}
    assert all(sorted(history) == [2, 5] for history in claims.values()), claims
    assert outcome["metrics"].keys() >= CLAIM_KEYS  # reported to Ray Train (and Tune) with val/mAP
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert "figures/cmc.png" in artifacts and any("receptive_fields" in a for a in artifacts)
    assert any("temporal_weights" in a for a in artifacts)

    version = outcome["model_version"]
    assert version is not None and version.tags["data_fingerprint"]
    program, metadata = load_registered(f"models:/drsta/{version.version}", cfg.train.tracking_uri, tmp_path / "pulled")
    trained = load_trained_model(outcome["best_checkpoint"], cfg)
    clips = torch.rand(3, 4, 3, 64, 40)
    torch.testing.assert_close(program(clips)["embedding"], trained(clips).embedding)
    assert metadata["num_frames"] == 4

    # drsta evaluate, on the checkpoint and on the registered model (actor pool), agrees with the training run.
    # Its claims, measured on the exported program by the actor pool, are those training measured eagerly.
    result, evaluated = evaluate_with_claims(*checkpoint_program(Path(outcome["best_checkpoint"].path)), manifest)
    assert result.mAP == pytest.approx(max(maps), abs=1e-4)  # the best checkpoint is the best evaluated one
    assert evaluated == pytest.approx({key: history[best_step] for key, history in claims.items()}, abs=1e-4)
    program_bytes, model_cfg = registered_program(f"models:/drsta/{version.version}", cfg.train.tracking_uri)
    assert evaluate_program(program_bytes, model_cfg, manifest, actors=2).mAP == pytest.approx(max(maps), abs=1e-4)


def test_resumed_run_matches_an_uninterrupted_one(manifest, tmp_path, learned):
    _, straight, _ = learned  # 6 epochs without a stop
    first = config(manifest, tmp_path, "stopped", **{"optim.epochs": 3, "train.registered_model": None})
    train(first)
    with pytest.raises(ValueError, match="--resume"):
        train(first)
    resumed = train(first.with_overrides({"optim.epochs": 6}), resume=True)
    for key in ("train/loss", SCORE):
        assert resumed["metrics"][key] == pytest.approx(straight["metrics"][key], rel=1e-4), key
    client = mlflow.MlflowClient(first.train.tracking_uri)
    assert (
        resumed["mlflow_run_id"]
        == client.search_runs(
            [client.get_experiment_by_name("drsta").experiment_id], "attributes.run_name = 'stopped'"
        )[0].info.run_id
    )


def test_a_lost_node_restarts_the_run_from_its_last_checkpoint(manifest, tmp_path, ray_cluster):
    cfg = config(manifest, tmp_path, "node-loss", **{"optim.epochs": 5, "train.registered_model": None})
    outcome: dict = {}
    runner = threading.Thread(target=lambda: outcome.update(train(cfg)))
    runner.start()
    run_dir = Path(cfg.train.storage_path) / "node-loss"
    deadline = time.time() + 300
    while not list(run_dir.glob("checkpoint_*")) and time.time() < deadline:
        time.sleep(0.5)
    assert list(run_dir.glob("checkpoint_*")), "no checkpoint appeared"
    workers = list_actors(filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")])
    worker_nodes = {actor.node_id for actor in workers}
    victim = next(node for node in ray_cluster.list_all_nodes() if not node.head and node.node_id in worker_nodes)
    ray_cluster.remove_node(victim)
    ray_cluster.add_node(num_cpus=2)  # room for the restarted workers (and the next tests)
    runner.join(timeout=600)
    assert not runner.is_alive()
    assert outcome["metrics"]["epoch"] == 4
    # The run went on from its checkpoints: every epoch appears once in MLflow's history, none was lost.
    client = mlflow.MlflowClient(cfg.train.tracking_uri)
    steps = sorted({m.step for m in client.get_metric_history(outcome["mlflow_run_id"], "train/loss")})
    assert steps == [0, 1, 2, 3, 4]
