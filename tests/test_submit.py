"""Job submission to a real `ray start` cluster (head + worker, token authentication) with an `mlflow server`
on loopback as the tracking store: drsta submit / jobs, refusal without the token, the pulled champion."""

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import ray.train
import torch

from drsta.config import ExperimentConfig
from drsta.data.manifest import read_manifest
from drsta.engine import clips_to_input
from pipelines.inference import footage, load_model, read_footage
from pipelines.tracking import set_alias
from pipelines.train import load_trained_model
from tests.local_cluster import local_ray_cluster, mlflow_server

pytestmark = pytest.mark.integration

TINY = Path(__file__).parents[1] / "configs" / "tiny.yaml"
TOKEN_VARS = ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")


def drsta(args: list[str], env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=Path(__file__).parents[1])  # fmt: skip


def clean_env(home: Path) -> dict[str, str]:
    """This environment without any Ray token or address, and a HOME without ~/.ray/auth_token."""
    env = {key: value for key, value in os.environ.items() if key not in TOKEN_VARS}
    return env | {"HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true"}


def test_a_submitted_training_job_registers_a_model_the_registry_serves(manifest, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    with local_ray_cluster(tmp_path / "cluster", workers=1, cpus_per_node=3) as cluster, \
            mlflow_server(tmp_path / "mlflow") as tracking_uri:  # fmt: skip
        token = cluster.token_path.read_text().strip()
        env = clean_env(home)
        auth = ["--address", cluster.dashboard_url, "--token-file", str(cluster.token_path)]

        refused = drsta(["jobs", "list", "--address", cluster.dashboard_url], env)
        assert refused.returncode != 0 and "Authentication" in refused.stdout + refused.stderr

        storage = tmp_path / "ray_results"
        done = drsta(["submit", *auth, "train", "--config", str(TINY), "--set", "input.width=40",
                      "--set", "loss.xent_weight=0", "--set", "data.sampler=identity", "--manifest", str(manifest),
                      "--num-workers", "2", "--epochs", "2", "--name", "submitted", "--storage-path", str(storage),
                      "--tracking-uri", tracking_uri], env)  # fmt: skip
        output = done.stdout + done.stderr
        assert done.returncode == 0, output[-4000:]
        assert "SUCCEEDED" in output and "registered models:/drsta/1" in output, output[-4000:]
        assert token not in output

        # Plain `ray job submit` works too (RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH), the project as working_dir.
        ray_cli = Path(sys.executable).parent / "ray"
        plain = subprocess.run([ray_cli, "job", "submit", "--address", cluster.dashboard_url,
                                "--working-dir", ".", "--runtime-env-json", '{"excludes": ["/.venv", "/.git"]}', "--",
                                "python", "-m", "pipelines.cli", "models", "list", "--tracking-uri", tracking_uri],
                               capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[1],
                               env=env | cluster.client_env)  # fmt: skip
        assert plain.returncode == 0 and "drsta v1" in plain.stdout, plain.stdout[-3000:] + plain.stderr[-3000:]

        listed = drsta(["jobs", "list", *auth], env)
        assert listed.returncode == 0 and "SUCCEEDED" in listed.stdout and "pipelines.cli train" in listed.stdout
        assert token not in listed.stdout + listed.stderr

        # The champion pulled from the server embeds the clips as the run's best checkpoint does.
        client = mlflow.MlflowClient(tracking_uri)
        version = client.get_model_version("drsta", "1")
        assert version.tags["data_fingerprint"]
        set_alias("drsta", "champion", 1, tracking_uri)
        pulled = drsta(["models", "pull", "drsta@champion", "--out", str(tmp_path / "pulled"),
                        "--tracking-uri", tracking_uri], env)  # fmt: skip
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
