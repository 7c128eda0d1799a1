"""Jobs on a Ray cluster: list them, print or follow a job's logs, stop one.

What it prints (entrypoints, logs) has the `user:password@` of any URI removed.
"""

from __future__ import annotations

import argparse
import sys

from pipelines.submit import follow, job_client, redact_output


def run(args: argparse.Namespace) -> None:
    client = job_client(args.address, args.token_file)
    if args.action == "list":
        jobs = sorted(client.list_jobs(), key=lambda job: job.start_time or 0)
        for job in jobs:
            print(f"{job.submission_id or job.job_id:<28} {job.status.value:<10} {redact_output(job.entrypoint)}")
        return
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
