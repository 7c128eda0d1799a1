"""Cluster storage on S3, for real: a local S3-compatible endpoint (moto's server), `drsta train` with
`--storage-path s3://...` and an MLflow server whose artifacts go to the same store; the driver killed after the
first checkpoint, the run resumed. Checkpoints, the run record and MLflow's artifacts must be on S3, and no local
path made from the URI by mistake."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import mlflow
import pyarrow.fs as pafs
import pytest

from drsta.resources import CONFIG_DIR, SPACE_DIR
from pipelines.run import RUN_RECORD, TrainingRun
from pipelines.train import CHECKPOINT_TIME
from pipelines.tune import TRIALS_DIR, sweep
from tests.local_cluster import free_port, mlflow_server

pytestmark = pytest.mark.integration

BUCKET = "drsta-test"
TRAIN = ["--config", str(CONFIG_DIR / "tiny.yaml"), "--set", "input.width=40", "--set", "loss.xent_weight=0",
         "--set", "data.sampler=identity", "--set", "train.eval_every=2", "--num-workers", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> Iterator[dict[str, str]]:
    """A moto S3 server on 127.0.0.1 with an empty bucket; the environment variables of its clients."""
    port = free_port()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as output:
        server = subprocess.Popen([Path(sys.executable).parent / "moto_server", "-H", "127.0.0.1", "-p", str(port)],
                                  stdout=output, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
        deadline = time.time() + 60
        while True:
            try:
                client.create_bucket(Bucket=BUCKET)
                break
            except Exception:
                if time.time() > deadline or server.poll() is not None:
                    raise RuntimeError(f"moto's S3 server did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.5)
        yield env
    finally:
        server.terminate()
        server.wait(timeout=30)


def drsta(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipelines.cli", *args], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip


def test_a_run_on_s3_keeps_its_checkpoints_record_and_artifacts_there_and_resumes_after_a_killed_driver(
    s3, manifest, tmp_path, monkeypatch
):
    for key, value in s3.items():
        monkeypatch.setenv(key, value)  # the MLflow server's, this test's and the drivers' credentials
    env = {key: value for key, value in os.environ.items() if key not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    storage = f"s3://{BUCKET}/runs"
    filesystem, _ = pafs.FileSystem.from_uri(storage)
    work = tmp_path / "work"  # the drivers' working directory: a URI taken for a local path would land here
    work.mkdir()
    with mlflow_server(tmp_path / "mlflow", artifacts=f"s3://{BUCKET}/mlflow") as tracking_uri:
        args = ["train", *TRAIN, "--manifest", str(manifest), "--epochs", "4", "--name", "on-s3",
                "--storage-path", storage, "--tracking-uri", tracking_uri]  # fmt: skip
        driver = drsta(args, env, work)
        deadline = time.time() + 600
        while time.time() < deadline and driver.poll() is None:
            found = filesystem.get_file_info(pafs.FileSelector(f"{BUCKET}/runs/on-s3", allow_not_found=True))
            if any(info.base_name.startswith("checkpoint_") for info in found):
                break
            time.sleep(0.5)
        assert driver.poll() is None, driver.communicate()[0][-3000:]
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the private Ray it started
        driver.wait()

        resumed = drsta([*args, "--resume"], env, work)
        output = resumed.communicate(timeout=900)[0]
        assert resumed.returncode == 0, output[-4000:]
        assert "registered models:/drsta/1" in output, output[-4000:]
        # The epoch line once (Ray Train once echoed every print twice), none of Ray Train's INFO lines.
        assert output.count("epoch 4/4  loss") == 1 and "Reporting training result" not in output, output[-4000:]

        run = TrainingRun(storage, "on-s3")
        run_id = run.mlflow_run_id()
        assert run_id and filesystem.get_file_info(f"{BUCKET}/runs/{RUN_RECORD}/on-s3.json").is_file
        checkpoints = [info.base_name for info in filesystem.get_file_info(
            pafs.FileSelector(f"{BUCKET}/runs/on-s3")) if info.base_name.startswith("checkpoint_")]  # fmt: skip
        assert checkpoints, "no checkpoint on S3"

        client = mlflow.MlflowClient(tracking_uri)
        mlflow_run = client.get_run(run_id)
        assert mlflow_run.info.status == "FINISHED"
        assert mlflow_run.info.artifact_uri.startswith("mlflow-artifacts:/")  # served: clients need no S3 access
        steps = sorted(m.step for m in client.get_metric_history(run_id, "train/loss"))
        assert steps == [0, 1, 2, 3]  # every epoch once: the resume went on from the checkpoint
        checkpoint_cost = [m.value for m in client.get_metric_history(run_id, CHECKPOINT_TIME)]
        print(f"checkpoint save and upload to S3 per epoch: {sum(checkpoint_cost) / len(checkpoint_cost):.2f} s")

    objects = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="mlflow/")
    stored = {item["Key"] for item in objects.get("Contents", [])}
    for name in ("config.yaml", "figures/cmc.png", "MLmodel"):
        assert any(key.endswith(name) for key in stored), (name, sorted(stored)[:20])
    assert not [path for path in work.rglob("*") if "s3:" in path.name or BUCKET in path.name], list(work.rglob("*"))


def test_a_sweep_on_s3_is_found_there_before_anything_runs(s3, manifest, monkeypatch):
    """`drsta tune --storage-path s3://...` checks for the sweep on S3 itself (the URI never becomes a local path)."""
    for key, value in s3.items():
        monkeypatch.setenv(key, value)
    overrides = {"train.storage_path": f"s3://{BUCKET}/sweeps", "train.tracking_uri": "http://127.0.0.1:9"}
    with pytest.raises(ValueError, match=f"nothing to resume: no sweep 'absent' in s3://{BUCKET}/sweeps/trials"):
        sweep(SPACE_DIR / "smoke.yaml", manifest, "absent", resume=True, overrides=overrides)
    boto3.client("s3").put_object(Bucket=BUCKET, Key=f"sweeps/{TRIALS_DIR}/present/tuner.pkl", Body=b"")
    with pytest.raises(ValueError, match=f"sweep 'present' already exists in s3://{BUCKET}/sweeps/trials"):
        sweep(SPACE_DIR / "smoke.yaml", manifest, "present", overrides=overrides)
