"""A real multi-node Ray cluster and an MLflow server for tests, through infra/local's scripts.

    with local_ray_cluster(tmp_path / "ray") as cluster, mlflow_server(tmp_path / "mlflow") as tracking_uri:
        env = {**os.environ, **cluster.client_env}     # what a client process needs to reach the cluster
        JobSubmissionClient(cluster.dashboard_url)     # in a process with that environment

Both always run the script's `down` on the way out, which stops every process the script started (and only
those), and raise RuntimeError with the script's output and the end of its logs when anything fails. Their state
directories hold secrets, so the scripts make a missing one mode 700 and refuse one that is not private
(pytest's tmp_path and tmp_path_factory directories are).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "infra" / "local"


@dataclass
class LocalRayCluster:
    """A cluster started by infra/local/cluster.sh.

    Attributes:
        address: the GCS address, "127.0.0.1:PORT" (`ray.init(address=...)`, `drsta --address`).
        dashboard_url: dashboard and Jobs API, "http://127.0.0.1:PORT" (`JobSubmissionClient(...)`).
        token_path: the file holding the cluster's authentication token (mode 600).
        state_dir: the script's --dir (mode 700): PID files, logs, `env`.
        outputs: everything the script printed (up, then down once the context exits).
    """

    address: str
    dashboard_url: str
    token_path: Path
    state_dir: Path
    outputs: list[str] = field(default_factory=list)

    @property
    def client_env(self) -> dict[str, str]:
        """The environment variables a client process needs to authenticate to this cluster."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_path)}


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def script_env() -> dict[str, str]:
    """This environment with the interpreter's bin/ (ray, mlflow, python) first on PATH."""
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAY_USAGE_STATS_ENABLED": "0",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }


def log_tails(state_dir: Path, lines: int = 30) -> str:
    """The last lines of every log in state_dir."""
    parts = []
    for log in sorted(state_dir.glob("*.log")):
        text = log.read_text(errors="replace").splitlines()[-lines:]
        parts.append(f"--- {log} (last {len(text)} lines):\n" + "\n".join(text))
    return "\n".join(parts)


def run_script(script: str, args: list[str], state_dir: Path, timeout_s: float) -> str:
    """Run infra/local/<script> with args; its output, or RuntimeError with the output and the logs' tails."""
    command = ["bash", str(SCRIPTS / script), *args]
    try:
        done = subprocess.run(command, env=script_env(), capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as error:
        output = (error.stdout or b"").decode(errors="replace") + (error.stderr or b"").decode(errors="replace")
        raise RuntimeError(
            f"{' '.join(command)} did not finish within {timeout_s:.0f}s\n{output}\n{log_tails(state_dir)}"
        ) from None
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed with exit status {done.returncode}:\n{output}\n{log_tails(state_dir)}"
        )
    return output


@contextmanager
def local_ray_cluster(
    state_dir: Path, workers: int = 1, cpus_per_node: int = 2, head_cpus: int = 1, timeout_s: int = 180
) -> Iterator[LocalRayCluster]:
    """A head node and `workers` worker nodes on this machine, with token authentication, on free ports.

    Args:
        state_dir: the cluster's state directory (PID files, logs, token): created (mode 700) if missing, else a
            directory of this user with mode 700.
        workers: worker nodes besides the head.
        cpus_per_node: logical CPUs of each worker node.
        head_cpus: logical CPUs of the head node (0 keeps tasks off it).
        timeout_s: how long the start-up may take (a busy 2-core machine needs tens of seconds).
    """
    port, dashboard_port = free_port(), free_port()
    args = ["--dir", str(state_dir)]
    options = {"--workers": workers, "--cpus-per-node": cpus_per_node, "--head-cpus": head_cpus, "--port": port,
               "--dashboard-port": dashboard_port, "--timeout": timeout_s}  # fmt: skip
    up = ["up", *args, *(str(word) for option in options.items() for word in option)]
    cluster = LocalRayCluster(
        address=f"127.0.0.1:{port}",
        dashboard_url=f"http://127.0.0.1:{dashboard_port}",
        token_path=Path(state_dir).resolve() / "auth_token",
        state_dir=Path(state_dir),
    )
    try:
        # The script's own timeout covers each stage; this one only guards against a hung script.
        cluster.outputs.append(run_script("cluster.sh", up, cluster.state_dir, timeout_s * (workers + 3)))
        yield cluster
    finally:
        cluster.outputs.append(run_script("cluster.sh", ["down", *args], cluster.state_dir, 120))


@contextmanager
def mlflow_server(
    state_dir: Path,
    timeout_s: int = 90,
    basic_auth: bool = False,
    outputs: list[str] | None = None,
    artifacts: str | None = None,
) -> Iterator[str]:
    """An MLflow tracking server on 127.0.0.1 (SQLite store and served artifacts in state_dir); its http URI.

    Args:
        state_dir: the server's directory (store, artifacts, log): created (mode 700) if missing, else a directory
            of this user with mode 700.
        timeout_s: how long the start-up may take.
        basic_auth: run MLflow's basic-auth app; `mlflow_credentials(state_dir)` then gives the admin's.
        outputs: if given, gets everything the script printed (up, then down once the context exits).
        artifacts: where the server stores artifacts (default: state_dir/artifacts), e.g. s3://bucket/prefix.
    """
    port = free_port()
    args = ["--dir", str(state_dir)]
    auth = "basic" if basic_auth else "none"
    printed = [] if outputs is None else outputs
    try:
        up = ["up", *args, "--port", str(port), "--timeout", str(timeout_s), "--auth", auth]
        up += ["--artifacts", artifacts] if artifacts else []
        printed.append(run_script("mlflow.sh", up, state_dir, timeout_s + 30))
        yield f"http://127.0.0.1:{port}"
    finally:
        printed.append(run_script("mlflow.sh", ["down", *args], state_dir, 60))


def mlflow_credentials(state_dir: Path) -> dict[str, str]:
    """The environment variables through which an MLflow client authenticates as the admin of a basic-auth server
    that `mlflow_server(state_dir, basic_auth=True)` started: never credentials in the tracking URI."""
    password = (Path(state_dir) / "admin_password").read_text().strip()
    return {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": password}
