"""Jobs on a Ray cluster: list them, print or follow a job's logs, stop one.

drsta jobs list [--address http://HEAD:8265]
drsta jobs logs JOB_ID [--follow]
drsta jobs stop JOB_ID

What it prints (entrypoints, logs) has the `user:password@` of any URI removed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pipelines.submit import follow, job_client, redact_output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["list", "logs", "stop"])
    parser.add_argument("job_id", nargs="?", help="logs, stop: the job's submission id")
    parser.add_argument("--address", default=os.environ.get("RAY_API_SERVER_ADDRESS", "http://127.0.0.1:8265"),
                        help="the cluster's dashboard (Jobs API), e.g. http://HEAD:8265")  # fmt: skip
    parser.add_argument("--token-file", type=Path, help="Ray auth token file (default: Ray's own lookup)")
    parser.add_argument("--follow", action="store_true", help="logs: keep printing until the job ends")


def run(args: argparse.Namespace) -> None:
    client = job_client(args.address, args.token_file)
    if args.action == "list":
        jobs = sorted(client.list_jobs(), key=lambda job: job.start_time or 0)
        for job in jobs:
            print(f"{job.submission_id or job.job_id:<28} {job.status.value:<10} {redact_output(job.entrypoint)}")
        return
    if args.job_id is None:
        raise ValueError(f"jobs {args.action} needs a job id (see drsta jobs list)")
    if args.action == "logs":
        if args.follow:
            follow(client, args.job_id)
        else:
            print(redact_output(client.get_job_logs(args.job_id)), end="")
    else:
        stopped = client.stop_job(args.job_id)
        print(f"jobs: {args.job_id} {'stopping' if stopped else 'was not running'}")


if __name__ == "__main__":
    from pipelines.cli import main

    main(["jobs", *sys.argv[1:]])
