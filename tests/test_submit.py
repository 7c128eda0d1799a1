"""Job submission to a real `ray start` cluster (head + worker, token authentication), shared by the cases: an
`mlflow server` with basic auth, the default SQLite store, a tracking store that cannot be reached; drsta submit /
jobs, refusal without the token, the pulled champion; no credentials in what is submitted or printed."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import mlflow
import numpy as np
import pytest
import ray.train
import torch

from drsta.config import ExperimentConfig
from drsta.data.manifest import read_manifest
from drsta.engine import clips_to_input
from drsta.resources import CONFIG_DIR
from pipelines.inference import footage, load_model, read_footage
from pipelines.submit import redact_output, without_credentials
from pipelines.tracking import set_alias
from pipelines.train import load_trained_model, not_recorded
from tests.local_cluster import local_ray_cluster, mlflow_credentials, mlflow_server

TINY = CONFIG_DIR / "tiny.yaml"
TOKEN_VARS = ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")
CREDENTIAL_VARS = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                   "MLFLOW_TRACKING_TOKEN")  # fmt: skip
# One small run: 40-pixel-wide frames, no classifier head, identity batches (the synthetic set is tiny).
TRAIN = ["--config", str(TINY), "--set", "input.width=40", "--set", "loss.xent_weight=0", "--set",
         "data.sampler=identity"]  # fmt: skip


def drsta(args: list[str], env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=Path(__file__).parents[1])  # fmt: skip


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with local_ray_cluster(tmp_path_factory.mktemp("cluster"), workers=1, cpus_per_node=3) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """An MLflow server with basic auth: its URI, and the admin's credential variables."""
    state_dir = tmp_path_factory.mktemp("mlflow")
    with mlflow_server(state_dir, basic_auth=True) as tracking_uri:
        yield tracking_uri, mlflow_credentials(state_dir)


@pytest.fixture
def env(tmp_path):
    """This environment without any Ray token or address or MLflow settings, and a HOME without
    ~/.ray/auth_token."""
    home = tmp_path / "home"
    home.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in TOKEN_VARS + CREDENTIAL_VARS}
    return env | {"HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true"}


def auth(cluster) -> list[str]:
    return ["--address", cluster.dashboard_url, "--token-file", str(cluster.token_path)]


@pytest.mark.integration
def test_a_submitted_training_job_registers_a_model_the_registry_serves(cluster, server, manifest, env, tmp_path,
                                                                         monkeypatch):  # fmt: skip
    tracking_uri, credentials = server
    token, password = cluster.token_path.read_text().strip(), credentials["MLFLOW_TRACKING_PASSWORD"]
    secret_uri = tracking_uri.replace("://", f"://admin:{quote(password, safe='')}@")

    refused = drsta(["jobs", "list", "--address", cluster.dashboard_url], env)
    assert refused.returncode != 0 and "Authentication" in refused.stdout + refused.stderr

    storage = tmp_path / "ray_results"
    done = drsta(["submit", *auth(cluster), "--forward-credentials", "train", *TRAIN, "--manifest", str(manifest),
                  "--num-workers", "2", "--epochs", "2", "--name", "submitted", "--storage-path", str(storage),
                  "--tracking-uri", secret_uri], env)  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "SUCCEEDED" in output and "registered models:/drsta/1" in output, output[-4000:]
    assert token not in output and password not in output

    # The credentials reached the job as MLflow's variables, never in its entrypoint (shown to anyone).
    job_id = re.search(r"submit: job (\S+) on", output)[1]
    info = subprocess.run([sys.executable, "-c", "import sys; from pipelines.submit import job_client; "
                           "info = job_client(sys.argv[1], None).get_job_info(sys.argv[2]); "
                           "print(info.entrypoint); print(sorted(info.runtime_env['env_vars']))",
                           cluster.dashboard_url, job_id], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).parents[1], env=env | cluster.client_env)  # fmt: skip
    assert info.returncode == 0, info.stderr[-2000:]
    assert password not in info.stdout and f"--tracking-uri {tracking_uri}" in info.stdout
    assert "'MLFLOW_TRACKING_PASSWORD', 'MLFLOW_TRACKING_USERNAME'" in info.stdout

    # Plain `ray job submit` works too (RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH), the project as working_dir.
    runtime_env = tmp_path / "runtime_env.json"
    runtime_env.write_text(json.dumps({"excludes": ["/.venv", "/.git"], "env_vars": credentials}))
    ray_cli = Path(sys.executable).parent / "ray"
    plain = subprocess.run([ray_cli, "job", "submit", "--address", cluster.dashboard_url, "--working-dir", ".",
                            "--runtime-env", str(runtime_env), "--", "python", "-m", "pipelines.cli", "models", "list",
                            "--tracking-uri", tracking_uri], capture_output=True, text=True, timeout=300,
                           cwd=Path(__file__).parents[1], env=env | cluster.client_env)  # fmt: skip
    assert plain.returncode == 0 and "drsta v1" in plain.stdout, plain.stdout[-3000:] + plain.stderr[-3000:]

    listed = drsta(["jobs", "list", *auth(cluster)], env)
    assert listed.returncode == 0 and "SUCCEEDED" in listed.stdout and "pipelines.cli train" in listed.stdout
    assert token not in listed.stdout + listed.stderr and password not in listed.stdout

    # The champion pulled from the server embeds the clips as the run's best checkpoint does.
    for key, value in credentials.items():
        monkeypatch.setenv(key, value)
    client = mlflow.MlflowClient(tracking_uri)
    version = client.get_model_version("drsta", "1")
    assert version.tags["data_fingerprint"]
    set_alias("drsta", "champion", 1, tracking_uri)
    pulled = drsta(["models", "pull", "drsta@champion", "--out", str(tmp_path / "pulled"),
                    "--tracking-uri", tracking_uri], env | credentials)  # fmt: skip
    assert pulled.returncode == 0, pulled.stderr[-2000:]
    model = load_model(str(tmp_path / "pulled"), None, use_gpu=False)
    cfg = ExperimentConfig.from_dict(model.metadata["config"])
    tracklets = [t for t in read_manifest(manifest) if t.role == "query"][:3]
    clips = np.stack([read_footage(footage([t.uri])[0], cfg.model.num_frames, model.size) for t in tracklets])
    pulled_embeddings = model(clips)["embedding"]
    matches = []  # the run registered its best checkpoint: exactly one of those it kept gives these embeddings
    for checkpoint in sorted(p for p in (storage / "submitted").glob("checkpoint_*") if p.is_dir()):
        trained = load_trained_model(ray.train.Checkpoint(str(checkpoint)), cfg)
        with torch.no_grad():
            expected = trained(clips_to_input(clips, torch.device("cpu"))).embedding.numpy()
        matches.append(np.allclose(pulled_embeddings, expected, rtol=1e-4, atol=1e-5))
    assert sum(matches) == 1, matches


@pytest.mark.integration
def test_a_submitted_job_tracks_into_the_default_sqlite_store(cluster, manifest, env, tmp_path):
    """The job's working_dir is unpacked by each node of the cluster (two on this host, sharing the directory):
    the driver and the workers must still record everything (they once lost their working directory)."""
    store = tmp_path / "mlflow.db"
    done = drsta(["submit", *auth(cluster), "train", *TRAIN, "--manifest", str(manifest), "--epochs", "1",
                  "--num-workers", "1", "--name", "sqlite", "--storage-path", str(tmp_path / "ray_results"),
                  "--tracking-uri", f"sqlite:///{store}"], env)  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0 and "SUCCEEDED" in output, output[-4000:]
    assert "registered models:/drsta/1" in output and "tracking failed" not in output, output[-4000:]
    # None of Ray Train's INFO lines (the epoch line's count: test_s3_storage; two nodes on one host here both
    # stream the workers' shared log files).
    assert "Reporting training result" not in output and "Started training worker group" not in output, output
    client = mlflow.MlflowClient(f"sqlite:///{store}")
    (run,) = client.search_runs([client.get_experiment_by_name("drsta").experiment_id])
    losses = client.get_metric_history(run.info.run_id, "train/loss")
    assert run.info.status == "FINISHED" and [loss.step for loss in losses] == [0]


@pytest.mark.integration
def test_a_job_whose_tracking_failed_ends_failed_saying_what_was_not_recorded(cluster, manifest, env, tmp_path):
    """Training goes on without its tracking store, but the command exits 1 and the job ends FAILED."""
    quick = ["--env", "MLFLOW_HTTP_REQUEST_MAX_RETRIES=0", "--env", "MLFLOW_HTTP_REQUEST_TIMEOUT=5"]
    done = drsta(["submit", *auth(cluster), *quick, "train", *TRAIN, "--manifest", str(manifest), "--epochs", "1",
                  "--num-workers", "1", "--name", "untracked", "--storage-path", str(tmp_path / "ray_results"),
                  "--tracking-uri", "http://127.0.0.1:9"], env)  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 1 and "train: finished untracked" in output, output[-4000:]
    assert re.search(r"submit: job \S+ FAILED", output), output[-4000:]
    lost = re.search(r"drsta train: error: untracked trained, but tracking failed: (\d+) calls lost; "
                     r"no model registered", output)  # fmt: skip
    assert lost, output[-4000:]
    # The driver makes at most 6 tracking calls: the rest were rank 0's, reported to the driver with its metrics.
    assert int(lost[1]) > 6


def test_what_was_not_recorded_is_named():
    assert not_recorded(0, 0, 3, False) == []
    assert not_recorded(4, 2, 3, True) == ["tracking failed: 4 calls lost", "2 of 3 epochs have no metrics in MLflow",
                                           "no model registered"]  # fmt: skip


def test_a_tracking_uri_with_credentials_is_refused_unless_they_are_forwarded(monkeypatch):
    for key in CREDENTIAL_VARS:
        monkeypatch.delenv(key, raising=False)
    args = ["--manifest", "/data", "--tracking-uri", "https://alice:s%40cret@mlflow.example:5000"]
    with pytest.raises(ValueError, match="--forward-credentials") as refused:
        without_credentials(args, {}, forward=False)
    assert "s%40cret" not in str(refused.value) and "https://mlflow.example:5000" in str(refused.value)
    sent_args, sent_env = without_credentials(args, {"MLFLOW_TRACKING_URI": "https://alice:s%40cret@mlflow.example"},
                                              forward=True)  # fmt: skip
    assert sent_args == ["--manifest", "/data", "--tracking-uri", "https://mlflow.example:5000"]
    assert sent_env == {"MLFLOW_TRACKING_URI": "https://mlflow.example", "MLFLOW_TRACKING_USERNAME": "alice",
                        "MLFLOW_TRACKING_PASSWORD": "s@cret"}  # fmt: skip
    assert without_credentials(["--tracking-uri=http://bob:pw@h"], {}, forward=True) == (
        ["--tracking-uri=http://h"],
        {"MLFLOW_TRACKING_USERNAME": "bob", "MLFLOW_TRACKING_PASSWORD": "pw"},
    )
    # This shell's MLflow credentials go only when asked for.
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "t0ken")
    plain = ["--tracking-uri", "https://h"]
    assert without_credentials(plain, {}, forward=False) == (plain, {})
    assert without_credentials(plain, {}, forward=True) == (plain, {"MLFLOW_TRACKING_TOKEN": "t0ken"})


@pytest.mark.parametrize(("args", "env"), [(["--set", "train.tracking_uri=https://a:pw@h"], {}),
                                           (["--manifest", "s3://key:secret@bucket/ingest"], {}),
                                           ([], {"AWS_ENDPOINT_URL": "http://key:secret@minio:9000"})])  # fmt: skip
def test_other_credentials_are_refused_without_being_repeated(args, env):
    with pytest.raises(ValueError, match="carries credentials") as refused:
        without_credentials(args, env, forward=True)
    assert "pw" not in str(refused.value) and "secret" not in str(refused.value)


def test_printed_text_loses_the_credentials_of_every_uri():
    line = "entrypoint: python -m pipelines.cli train --tracking-uri https://al:pw@h:5000/x (postgresql://u:p@db)"
    assert (
        redact_output(line)
        == "entrypoint: python -m pipelines.cli train --tracking-uri https://h:5000/x (postgresql://db)"
    )
    assert redact_output("mail alice@example.org, see http://example.org/a@b") == (
        "mail alice@example.org, see http://example.org/a@b"
    )
