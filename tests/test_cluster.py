"""Sharing a Ray cluster: a command never joins a stray Ray instance, and only drsta's leaked groups are released."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group

from pipelines.cluster import release_leaked_placement_groups

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[1]
# A drsta driver (marked by pipelines.ray_runtime.connect) that leaves a group behind: "detached" ends its job
# while a detached actor of it keeps a group; "orphan" kills the actor that created a group (ray-project/ray#62753)
# and keeps its job alive until a line arrives on stdin.
DRSTA_DRIVER = """
import json, sys
import ray
from ray.util.placement_group import placement_group
from pipelines.ray_runtime import connect

mode, address = sys.argv[1:]
connect(address, "tune")

@ray.remote(num_cpus=0)
class Creator:
    def create(self):
        group = placement_group([{"CPU": 0.01}])
        ray.get(group.ready())
        return group.id.hex()

options = {"lifetime": "detached", "name": "test-cluster-creator", "namespace": "test-cluster"}
creator = Creator.options(**options).remote() if mode == "detached" else Creator.remote()
group = ray.get(creator.create.remote())
if mode == "orphan":
    ray.kill(creator)
print(json.dumps({"job": ray.get_runtime_context().get_job_id(), "group": group}), flush=True)
if mode == "orphan":
    sys.stdin.readline()
"""


@ray.remote(num_cpus=0)
class Creator:
    """Stands in for a Ray Train controller: creates a placement group and may die before removing it."""

    def create(self) -> str:
        group = placement_group([{"CPU": 0.01}])
        ray.get(group.ready())
        return group.id.hex()


def live_groups() -> set[str]:
    return {group_id for group_id, group in ray.util.placement_group_table().items() if group["state"] == "CREATED"}


def drsta_driver(mode: str, address: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", DRSTA_DRIVER, mode, address], cwd=ROOT, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip


def wait_for_job_end(job_id: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not any(job["JobID"] == job_id and job["IsDead"] for job in ray._private.state.state.job_table()):
        assert time.monotonic() < deadline, f"job {job_id} did not end"
        time.sleep(0.5)


def remove(group_id: str) -> None:
    remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(group_id))))


def test_only_drsta_groups_nobody_can_use_are_released(ray_cluster):
    this_job = ray.get_runtime_context().get_job_id()  # the test's own driver: not a drsta job
    own = placement_group([{"CPU": 0.01}])  # created by a driver
    ray.get(own.ready())
    alive_creator, dead_creator = Creator.remote(), Creator.remote()
    kept = ray.get(alive_creator.create.remote())
    not_drsta = ray.get(dead_creator.create.remote())  # an orphan, but of a job that is not drsta's
    ray.kill(dead_creator)
    ended = drsta_driver("detached", ray_cluster.address)
    ended_job = json.loads(ended.stdout.readline())
    assert ended.wait(timeout=120) == 0
    wait_for_job_end(ended_job["job"])
    orphan = drsta_driver("orphan", ray_cluster.address)
    try:
        leak = json.loads(orphan.stdout.readline())
        assert leak["group"] in live_groups()  # Ray keeps it while the job lives: nobody will use or remove it
        assert release_leaked_placement_groups() == []  # the ended drsta job's group has a live (detached) creator
        assert release_leaked_placement_groups(leak["job"]) == [leak["group"]]
        assert release_leaked_placement_groups(leak["job"]) == []
        live = live_groups()
        assert leak["group"] not in live and {own.id.hex(), kept, not_drsta, ended_job["group"]} <= live
        # Named as the caller's own job, the unmarked test driver's job counts as drsta's (a sweep run from a test
        # session or a notebook cleans up after its own stopped trials): its orphan goes, its live groups stay.
        assert release_leaked_placement_groups(this_job) == [not_drsta]
        assert {own.id.hex(), kept} <= live_groups()
    finally:
        orphan.communicate("\n", timeout=120)
        ray.kill(ray.get_actor("test-cluster-creator", namespace="test-cluster"))
        for group_id in (own.id.hex(), kept, not_drsta):
            if group_id in live_groups():
                remove(group_id)
        ray.kill(alive_creator)


def test_a_command_without_an_address_starts_a_private_ray_beside_a_running_one(ray_cluster):
    """With a cluster running on this host (the `ray start`-style test cluster), a command still gets a Ray of its
    own; its workers' State API (which Ray Train's placement-group cleaner uses) reaches that Ray's dashboard."""
    probe = """
import json, os, ray
from ray.dashboard.utils import get_address_for_submission_client
from pipelines.ray_runtime import connect, disconnect

connect(None, "ingest", num_cpus=3)

@ray.remote(num_cpus=0)
def api_server():
    return get_address_for_submission_client(None)

context = ray.get_runtime_context()
seen = {"gcs": context.gcs_address, "nodes": len(ray.nodes()), "cpus": ray.cluster_resources()["CPU"],
        "workers_api_server": ray.get(api_server.remote()), "dashboard": ray._private.worker.get_dashboard_url()}
disconnect()
seen["api_server_after"] = os.environ.get("RAY_API_SERVER_ADDRESS")
print(json.dumps(seen))
"""
    env = {key: value for key, value in os.environ.items() if key not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    env["RAY_API_SERVER_ADDRESS"] = "http://127.0.0.1:1"  # the user's own setting: pinned while the private Ray runs
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["gcs"] != ray_cluster.address and seen["nodes"] == 1 and seen["cpus"] >= 3
    assert seen["workers_api_server"] == f"http://{seen['dashboard']}"
    # Stopped, the private Ray gives RAY_API_SERVER_ADDRESS back: Ray's Jobs API clients prefer it to any address.
    assert seen["api_server_after"] == "http://127.0.0.1:1"
