"""Promotion is safe under concurrency: a registry-wide lock, a re-check before the alias moves, a full history."""

import os
import threading
import time
from pathlib import Path

import mlflow
import pytest
import torch

from drsta.config import ExperimentConfig
from drsta.model import build_model
from drsta.resources import CONFIG_DIR
from pipelines.models import LOCK_SUFFIX, promote, promotion_history, promotion_lock, record_promotion
from pipelines.tracking import RunTracker, get_alias_version, log_model, set_alias

pytestmark = pytest.mark.integration

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
TINY = CONFIG_DIR / "tiny.yaml"


def _store(tmp_path: Path) -> tuple[str, mlflow.MlflowClient]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    client.create_registered_model("drsta")
    return uri, client


def test_the_lock_admits_one_holder_and_names_it(tmp_path):
    _, client = _store(tmp_path)
    with promotion_lock(client, "drsta"):
        assert client.get_registered_model(f"drsta{LOCK_SUFFIX}").tags["holder"]
        with (
            pytest.raises(TimeoutError, match=r"another promotion of 'drsta' holds .*pid"),
            promotion_lock(client, "drsta", timeout_s=1),
        ):
            pass
    with promotion_lock(client, "drsta", timeout_s=1):  # released: free again
        pass
    assert [m.name for m in client.search_registered_models()] == ["drsta"]


def test_a_waiting_promotion_gets_the_lock_when_it_is_released(tmp_path):
    _, client = _store(tmp_path)
    order = []

    def second():
        with promotion_lock(client, "drsta", timeout_s=30):
            order.append("second")

    with promotion_lock(client, "drsta"):
        waiter = threading.Thread(target=second)
        waiter.start()
        time.sleep(1.5)
        order.append("first")
    waiter.join(timeout=30)
    assert order == ["first", "second"]


def test_a_stale_lock_of_a_dead_promoter_is_broken(tmp_path):
    _, client = _store(tmp_path)
    client.create_registered_model(f"drsta{LOCK_SUFFIX}", tags={"holder": "gone", "since": str(time.time() - 7200)})
    with promotion_lock(client, "drsta", timeout_s=5):
        pass


def test_the_history_keeps_every_promotion_in_order(tmp_path, manifest):
    _, client = _store(tmp_path)
    record_promotion(client, "drsta", 1, 0.4, None, None, manifest)
    record_promotion(client, "drsta", 3, 0.5, 1, 0.4, manifest)
    history = promotion_history(client, "drsta")
    assert [(e["version"], e["replaced"]) for e in history] == [(1, None), (3, 1)]
    assert history[1]["mAP"] == 0.5 and history[1]["data_fingerprint"]


def test_two_promotions_at_once_leave_the_best_champion_and_a_consistent_history(manifest, tmp_path, ray_cluster):
    uri, client = _store(tmp_path)
    cfg = ExperimentConfig.from_yaml(TINY).with_overrides({"input.width": 40, "loss.xent_weight": 0.0})
    tracker = RunTracker(uri, "drsta", "candidates", artifact_location=str(tmp_path / "artifacts"))
    tracker.start()
    example = torch.rand(2, cfg.model.num_frames, 3, cfg.input.height, cfg.input.width)
    for seed in range(3):  # three untrained models: v1 (champion), v2 and v3 (candidates), each its own mAP
        torch.manual_seed(seed)
        log_model(tracker, build_model(cfg.model).eval(), example, cfg.to_dict(), {}, "fingerprint")
    set_alias("drsta", "champion", 1, uri)

    outcomes, errors = {}, []

    def run(version: int) -> None:
        try:
            outcomes[version] = promote("drsta", version, manifest, uri)
        except Exception as err:  # reported below, with the thread's version
            errors.append((version, err))

    threads = [threading.Thread(target=run, args=(version,)) for version in (2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not errors, errors

    scores = {v: float(client.get_model_version("drsta", str(v)).tags["eval.mAP"]) for v in (1, 2, 3)}
    champion = get_alias_version("drsta", "champion", uri)
    assert scores[champion] == max(scores.values()), (champion, scores)
    history = promotion_history(client, "drsta")
    replaced = 1
    for entry in history:  # each promotion replaced the champion of the one before: no update was lost
        assert entry["replaced"] == replaced and entry["mAP"] > entry["replaced_mAP"]
        replaced = entry["version"]
    assert replaced == champion
    if history:
        assert get_alias_version("drsta", "previous", uri) == history[-1]["replaced"]
    assert [m.name for m in client.search_registered_models()] == ["drsta"]  # no lock left behind
