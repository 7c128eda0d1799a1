"""infra/local's scripts bring up a real two-node Ray cluster with token authentication and an MLflow server (with
basic auth if asked), keep their secrets off command lines and output, and take down exactly what they started
(through tests/local_cluster.py, as the job-submission tests use them)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.local_cluster import (
    LocalRayCluster,
    local_ray_cluster,
    mlflow_credentials,
    mlflow_server,
    run_script,
    script_env,
)

pytestmark = pytest.mark.integration

LIST_JOBS = "import sys; from ray.job_submission import JobSubmissionClient as C; C(sys.argv[1]).list_jobs()"


def session_members(leader: int) -> list[int]:
    """The live (not zombie) processes of the session `leader` started."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _ppid, _pgrp, session = stat.read_text().rsplit(")", 1)[1].split()[:4]
        except (OSError, IndexError):
            continue  # the process ended while we looked
        if int(session) == leader and state != "Z":
            members.append(int(stat.parent.name))
    return members


def leaders(state_dir: Path) -> list[int]:
    """The `ray start --block` processes the script recorded; each leads the session of its node."""
    return [int(path.read_text()) for path in state_dir.glob("*.pid")]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRayCluster]:
    """A 1-CPU head and one 2-CPU worker; on the way out, checks that `down` left none of their processes."""
    state_dir = tmp_path_factory.mktemp("ray-cluster")
    with local_ray_cluster(state_dir, workers=1, cpus_per_node=2) as running:
        started = leaders(state_dir)
        assert len(started) == 2
        yield running
    assert not [pid for leader in started for pid in session_members(leader)], "processes left after down"
    assert running.token_path.read_text().strip() not in running.outputs[-1]


def python(code: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=120)


def without_token(home: Path) -> dict[str, str]:
    """An environment with no token anywhere: no RAY_AUTH_* variables, and a HOME without ~/.ray/auth_token."""
    env = {k: v for k, v in script_env().items() if not k.startswith(("RAY_AUTH", "RAY_ADDRESS", "RAY_API"))}
    return {**env, "HOME": str(home)}


def test_both_nodes_are_alive(cluster: LocalRayCluster) -> None:
    code = "import ray, sys; ray.init(address=sys.argv[1]); print(sum(node['Alive'] for node in ray.nodes()))"
    done = python(code, {**script_env(), **cluster.client_env}, cluster.address)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "2"


def test_jobs_api_needs_the_token(cluster: LocalRayCluster, tmp_path: Path) -> None:
    with_token = python(LIST_JOBS, {**script_env(), **cluster.client_env}, cluster.dashboard_url)
    assert with_token.returncode == 0, with_token.stderr

    refused = python(LIST_JOBS, without_token(tmp_path), cluster.dashboard_url)
    assert refused.returncode != 0
    assert "AuthenticationError: Authentication required: Unauthorized: Missing authentication token" in refused.stderr


def status_of(url: str, token: str | None) -> int:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_dashboard_answers_401_without_and_403_with_a_wrong_token(cluster: LocalRayCluster) -> None:
    url = f"{cluster.dashboard_url}/api/jobs/"
    assert status_of(url, None) == 401
    assert status_of(url, "0" * 64) == 403
    assert status_of(url, cluster.token_path.read_text().strip()) == 200


def non_loopback_address() -> str | None:
    """This machine's address on its default route, if it has one (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def test_dashboard_listens_on_loopback_only(cluster: LocalRayCluster) -> None:
    port = int(cluster.dashboard_url.rsplit(":", 1)[1])
    socket.create_connection(("127.0.0.1", port), timeout=5).close()
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to try the dashboard port on")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((address, port), timeout=5)


def all_command_lines() -> str:
    """What `ps` shows every user of this machine: the arguments of every process."""
    return subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout


def test_status_lists_the_nodes_and_no_output_shows_the_token(cluster: LocalRayCluster) -> None:
    status = run_script("cluster.sh", ["status", "--dir", str(cluster.state_dir)], cluster.state_dir, 120)
    nodes = [line.split()[1:3] for line in status.splitlines() if line.startswith("node_")]
    assert sorted(nodes) == [["head", "alive"], ["worker", "alive"]], status
    token = cluster.token_path.read_text().strip()
    assert oct(cluster.token_path.stat().st_mode & 0o777) == "0o600"
    assert oct(cluster.state_dir.stat().st_mode & 0o777) == "0o700"
    for text in [*cluster.outputs, status, *(log.read_text() for log in cluster.state_dir.glob("*.log"))]:
        assert token not in text
    assert token not in all_command_lines()


def test_mlflow_server_stores_served_artifacts(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    state_dir = tmp_path / "mlflow"
    artifact = tmp_path / "notes.txt"
    artifact.write_text("tracked through the server")
    with mlflow_server(state_dir) as tracking_uri:
        leader = int((state_dir / "mlflow.pid").read_text())
        with urllib.request.urlopen(f"{tracking_uri}/health", timeout=10) as response:
            assert response.read() == b"OK"
        client = MlflowClient(tracking_uri)
        run = client.create_run(client.create_experiment("infra-test"))
        client.log_artifact(run.info.run_id, str(artifact))
        client.set_terminated(run.info.run_id)
        assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    stored = state_dir / "artifacts" / run.info.experiment_id / run.info.run_id / "artifacts" / "notes.txt"
    assert stored.read_text() == "tracked through the server"
    assert not session_members(leader), "mlflow processes left after down"
    assert os.path.exists(state_dir / "mlflow.db")


def post_status(url: str, body: dict[str, str]) -> int:
    """The HTTP status of an anonymous JSON POST."""
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_mlflow_basic_auth_refuses_anonymous_writes_and_keeps_the_password_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    state_dir = tmp_path / "mlflow"
    outputs: list[str] = []
    with mlflow_server(state_dir, basic_auth=True, outputs=outputs) as tracking_uri:
        credentials = mlflow_credentials(state_dir)
        password = credentials["MLFLOW_TRACKING_PASSWORD"]
        api = f"{tracking_uri}/api/2.0/mlflow"
        assert post_status(f"{api}/experiments/create", {"name": "anonymous"}) == 401
        assert post_status(f"{api}/registered-models/create", {"name": "anonymous"}) == 401
        assert status_of(f"{api}/experiments/search?max_results=1", None) == 401

        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-the-password")
        with pytest.raises(MlflowException, match="401"):
            MlflowClient(tracking_uri).create_experiment("wrong-password")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
        client = MlflowClient(tracking_uri)
        experiment_id = client.create_experiment("with-credentials")
        client.create_registered_model("drsta-basic-auth")
        assert client.get_experiment(experiment_id).name == "with-credentials"
        assert client.get_registered_model("drsta-basic-auth").name == "drsta-basic-auth"

        leader = int((state_dir / "mlflow.pid").read_text())
        server_args = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in session_members(leader)]
        assert server_args and not [args for args in server_args if b"--backend-store-uri" in args]
        assert password not in all_command_lines()
        status = run_script("mlflow.sh", ["status", "--dir", str(state_dir)], state_dir, 60)
    assert str(state_dir / "admin_password") in outputs[0]
    for text in [*outputs, status, *((state_dir / name).read_text() for name in ("mlflow.log", "basic_auth.ini"))]:
        assert password not in text
    for name in ("admin_password", "basic_auth.db", "mlflow.db"):
        assert oct((state_dir / name).stat().st_mode & 0o777) == "0o600", name
    assert not session_members(leader), "mlflow processes left after down"
