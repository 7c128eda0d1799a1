"""Run a pipeline on a Ray cluster as a job (Ray's Jobs API), and follow it.

The job runs `python -m pipelines.cli COMMAND ARGS` on the cluster with this project as its working_dir
(uploaded, without .venv, .git, data and local stores) or inside a container image. The cluster's address
reaches the job's driver as RAY_ADDRESS. Token authentication: Ray reads the token from RAY_AUTH_TOKEN,
RAY_AUTH_TOKEN_PATH (or --token-file) or ~/.ray/auth_token; it is sent as a header and never printed. The job
ends FAILED when its command exits non-zero, e.g. a training run whose tracking failed (`drsta train`).

Credentials: a job's entrypoint and runtime_env are kept in the cluster's GCS and shown by the dashboard, `ray job
list` and `drsta jobs list` to anyone who can reach the cluster, so a tracking URI with `user:password@` (the
command's --tracking-uri, MLFLOW_TRACKING_URI here or an --env value) never goes into them as it is:

- by default such a submission is refused: give the tracking server's credentials on the cluster
  (MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD in the nodes' environment) and the URI without them;
- with --forward-credentials the URI goes without them, and the user and password (else this shell's
  MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD / MLFLOW_TRACKING_TOKEN) go as the job's environment
  variables of those names: still in the job's runtime_env, readable by whoever can read the cluster's jobs.

Any other argument or --env value with credentials in it is refused. What submit and jobs print (addresses, logs,
entrypoints) has credentials in URIs removed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ray._private.authentication.authentication_token_setup import maybe_enable_token_auth_if_token_available
from ray.job_submission import JobStatus, JobSubmissionClient

from pipelines.commands import SUBMITTABLE
from pipelines.uris import redact_credentials

PROJECT = Path(__file__).resolve().parents[1]
# Not uploaded with the working_dir: environments, history, local stores and outputs (Ray's limit is 500 MiB).
# gitignore syntax: a leading / anchors at the project root (a bare "data" would drop drsta/data too).
EXCLUDES = ["/.venv", "/.git", "/data", "/demo-output", "/ray_results", "/mlartifacts", "/mlruns", "*.db", "*.pt2",
            "__pycache__", ".pytest_cache", ".ruff_cache"]  # fmt: skip
FORWARDED_ENV = ("MLFLOW_TRACKING_URI", "AWS_ENDPOINT_URL", "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S")
CREDENTIAL_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]+@")


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
        raise ValueError(
            f"cannot reach the Ray Jobs API at {redact_output(address)}: {redact_output(str(err))}"
        ) from None


def runtime_env(image: str | None, env_vars: dict[str, str]) -> dict[str, Any]:
    """The project as working_dir (or a container image), and the job's environment variables."""
    if image:
        return {"image_uri": image, "env_vars": env_vars}
    return {"working_dir": str(PROJECT), "excludes": EXCLUDES, "env_vars": env_vars}


def submit(
    client: JobSubmissionClient, command: str, args: list[str], image: str | None = None,
    env: dict[str, str] | None = None, submission_id: str | None = None, forward_credentials: bool = False,
) -> str:  # fmt: skip
    """Submit `drsta COMMAND ARGS` as a job; returns its submission id. `env` adds to the forwarded environment
    (FORWARDED_ENV of this process); credentials are handled as the module docstring says."""
    if command not in SUBMITTABLE:
        raise ValueError(f"cannot submit {command!r}: choose one of {', '.join(SUBMITTABLE)}")
    env_vars = {key: os.environ[key] for key in FORWARDED_ENV if key in os.environ} | (env or {})
    args, env_vars = without_credentials(args, env_vars, forward_credentials)
    entrypoint = shlex.join(["python", "-m", "pipelines.cli", command, *args])
    return client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env(image, env_vars),
                             submission_id=submission_id)  # fmt: skip


def without_credentials(args: list[str], env_vars: dict[str, str], forward: bool) -> tuple[list[str], dict[str, str]]:
    """The command's arguments and the job's environment with no credentials in them (see the module docstring);
    with `forward`, the tracking URI's credentials as MLflow's variables. ValueError for what cannot go."""
    args, env_vars, uris = list(args), dict(env_vars), []
    for i, arg in enumerate(args):
        if not _USERINFO.search(arg):
            continue
        flag, equals, value = arg.partition("=") if arg.startswith("--tracking-uri=") else ("", "", arg)
        if not (equals or (i > 0 and args[i - 1] == "--tracking-uri")):
            raise ValueError(f"argument {redact_output(arg)!r} carries credentials, which would be stored with the "
                             "job and shown with it: give them to the cluster another way")  # fmt: skip
        uris.append(value)
        args[i] = f"{flag}{equals}{redact_credentials(value)}"
    for key, value in env_vars.items():
        if not _USERINFO.search(value):
            continue
        if key != "MLFLOW_TRACKING_URI":
            raise ValueError(f"{key}={redact_output(value)} carries credentials, which would be stored with the job "
                             "and shown with it: give them to the cluster another way")  # fmt: skip
        uris.append(value)
        env_vars[key] = redact_credentials(value)
    if uris and not forward:
        raise ValueError(
            f"the tracking URI {redact_credentials(uris[0])} carries credentials, which would be stored with the job "
            "and shown with it: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD on the cluster and pass the "
            "URI without them, or pass --forward-credentials to send them as the job's environment variables"
        )
    if forward:
        env_vars |= forwarded_credentials(uris)
    return args, env_vars


def forwarded_credentials(uris: list[str]) -> dict[str, str]:
    """MLflow's credential variables for the job: the user and password of the tracking URIs (which must agree),
    else this process's MLFLOW_TRACKING_USERNAME / _PASSWORD / _TOKEN."""
    found = {(unquote(parts.username or ""), unquote(parts.password or "")) for parts in map(urlsplit, uris)}
    if len(found) > 1:
        raise ValueError("the tracking URIs of this submission carry different credentials: give one")
    if found:
        user, password = found.pop()
        return {"MLFLOW_TRACKING_USERNAME": user} | ({"MLFLOW_TRACKING_PASSWORD": password} if password else {})
    return {key: os.environ[key] for key in CREDENTIAL_ENV if key in os.environ}


def redact_output(text: str) -> str:
    """`text` with the `user:password@` of every URI in it removed (log lines, entrypoints)."""
    return _USERINFO.sub(r"\g<scheme>", text)


def follow(client: JobSubmissionClient, job_id: str) -> JobStatus:
    """Print the job's logs as they come; returns its final status."""

    async def tail() -> None:
        async for lines in client.tail_job_logs(job_id):
            print(redact_output(lines), end="", flush=True)

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


def run(args: argparse.Namespace) -> None:
    client = job_client(args.address, args.token_file)
    job_id = submit(client, args.command, args.args, args.image, parse_env(args.env), args.submission_id,
                    args.forward_credentials)  # fmt: skip
    address = redact_output(args.address)
    print(f"submit: job {job_id} on {address} (drsta jobs logs {job_id} / drsta jobs stop {job_id})", flush=True)
    if args.no_wait:
        return
    status = follow(client, job_id)
    print(f"submit: job {job_id} {status.value}")
    if status != JobStatus.SUCCEEDED:
        sys.exit(1)


if __name__ == "__main__":
    from pipelines.cli import main

    main(["submit", *sys.argv[1:]])
