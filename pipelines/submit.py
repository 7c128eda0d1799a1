"""Run a pipeline on a Ray cluster as a job (Ray's Jobs API), and follow it.

    drsta submit --address http://HEAD:8265 train --config configs/synthetic_cpu.yaml --manifest /data/ingest
    drsta submit --address http://HEAD:8265 --image ghcr.io/drsta/drsta:0.1.0-cu130 tune --space ... --manifest ...
    drsta submit --address http://HEAD:8265 --no-wait evaluate --model models:/drsta@champion --manifest ...

The job runs `python -m pipelines.cli COMMAND ARGS` on the cluster with this project as its working_dir
(uploaded, without .venv, .git, data and local stores) or inside a container image. The cluster's address
reaches the job's driver as RAY_ADDRESS. Token authentication: Ray reads the token from RAY_AUTH_TOKEN,
RAY_AUTH_TOKEN_PATH (or --token-file) or ~/.ray/auth_token; it is sent as a header and never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from ray._private.authentication.authentication_token_setup import maybe_enable_token_auth_if_token_available
from ray.job_submission import JobStatus, JobSubmissionClient

COMMANDS = ("train", "tune", "evaluate", "ingest", "models", "embed")
PROJECT = Path(__file__).resolve().parents[1]
# Not uploaded with the working_dir: environments, history, local stores and outputs (Ray's limit is 500 MiB).
# gitignore syntax: a leading / anchors at the project root (a bare "data" would drop drsta/data too).
EXCLUDES = ["/.venv", "/.git", "/data", "/demo-output", "/ray_results", "/mlartifacts", "/mlruns", "*.db", "*.pt2",
            "__pycache__", ".pytest_cache", ".ruff_cache"]  # fmt: skip
FORWARDED_ENV = ("MLFLOW_TRACKING_URI", "AWS_ENDPOINT_URL", "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S")


def job_client(address: str, token_file: Path | None = None) -> JobSubmissionClient:
    """A Jobs API client for the dashboard at `address`; `token_file` overrides Ray's token lookup."""
    if token_file is not None:
        if not token_file.is_file():
            raise FileNotFoundError(f"--token-file {token_file} not found (create one with ray get-auth-token)")
        os.environ["RAY_AUTH_TOKEN_PATH"] = str(token_file.resolve())
    # Ray's clients send a token only in token mode (RAY_AUTH_MODE=token); as `ray.init` does, turn it on when
    # RAY_AUTH_MODE is unset and a token is at hand.
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    try:
        return JobSubmissionClient(address)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise ValueError(f"cannot reach the Ray Jobs API at {address}: {err}") from None


def runtime_env(image: str | None, env: dict[str, str]) -> dict[str, Any]:
    """The project as working_dir (or a container image), and the environment variables the job needs."""
    env_vars = {key: os.environ[key] for key in FORWARDED_ENV if key in os.environ} | env
    if image:
        return {"image_uri": image, "env_vars": env_vars}
    return {"working_dir": str(PROJECT), "excludes": EXCLUDES, "env_vars": env_vars}


def submit(
    client: JobSubmissionClient, command: str, args: list[str], image: str | None = None,
    env: dict[str, str] | None = None, submission_id: str | None = None,
) -> str:  # fmt: skip
    """Submit `drsta COMMAND ARGS` as a job; returns its submission id."""
    if command not in COMMANDS:
        raise ValueError(f"cannot submit {command!r}: choose one of {', '.join(COMMANDS)}")
    entrypoint = shlex.join(["python", "-m", "pipelines.cli", command, *args])
    return client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env(image, env or {}),
                             submission_id=submission_id)  # fmt: skip


def follow(client: JobSubmissionClient, job_id: str) -> JobStatus:
    """Print the job's logs as they come; returns its final status."""

    async def tail() -> None:
        async for lines in client.tail_job_logs(job_id):
            print(lines, end="", flush=True)

    asyncio.run(tail())
    status = client.get_job_status(job_id)
    while not status.is_terminal():  # the log stream can end a moment before the status does
        time.sleep(0.5)
        status = client.get_job_status(job_id)
    return status


def parse_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--env {pair!r}: expected KEY=VALUE")
        env[key] = value
    return env


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", default=os.environ.get("RAY_API_SERVER_ADDRESS", "http://127.0.0.1:8265"),
                        help="the cluster's dashboard (Jobs API), e.g. http://HEAD:8265")  # fmt: skip
    parser.add_argument("--token-file", type=Path, help="Ray auth token file (default: Ray's own lookup)")
    parser.add_argument("--image", help="run in this container image instead of uploading the project")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="job environment variable")
    parser.add_argument("--submission-id", help="the job's id (default: Ray chooses one)")
    parser.add_argument("--no-wait", action="store_true", help="print the job id and return at once")
    parser.add_argument("command", choices=COMMANDS, help="the drsta command to run on the cluster")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")


def run(args: argparse.Namespace) -> None:
    client = job_client(args.address, args.token_file)
    job_id = submit(client, args.command, args.args, args.image, parse_env(args.env), args.submission_id)
    print(f"submit: job {job_id} on {args.address} (drsta jobs logs {job_id} / drsta jobs stop {job_id})", flush=True)
    if args.no_wait:
        return
    status = follow(client, job_id)
    print(f"submit: job {job_id} {status.value}")
    if status != JobStatus.SUCCEEDED:
        sys.exit(1)


if __name__ == "__main__":
    from pipelines.cli import main

    main(["submit", *sys.argv[1:]])
