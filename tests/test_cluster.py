"""Orphaned placement groups: only groups of ended jobs that nobody can use any more are released."""

import subprocess
import sys

import pytest
import ray
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group
from ray.util.state import list_placement_groups

from pipelines.cluster import release_orphaned_placement_groups

pytestmark = pytest.mark.integration

DETACHED_BY_ANOTHER_JOB = """
import sys, ray
from ray.util.placement_group import placement_group
ray.init(address=sys.argv[1], log_to_driver=False)
group = placement_group([{"CPU": 0.01}], lifetime="detached")
ray.get(group.ready())
print(group.id.hex())
"""


def test_groups_of_live_jobs_and_detached_groups_are_kept(ray_cluster):
    own = placement_group([{"CPU": 0.01}])
    ray.get(own.ready())
    ended_job_detached = subprocess.run([sys.executable, "-c", DETACHED_BY_ANOTHER_JOB, ray_cluster.address],
                                        capture_output=True, text=True, check=True).stdout.split()[-1]  # fmt: skip
    try:
        assert release_orphaned_placement_groups() == []
        alive = {g.placement_group_id for g in list_placement_groups(filters=[("state", "=", "CREATED")])}
        assert {own.id.hex(), ended_job_detached} <= alive
    finally:
        remove_placement_group(own)
        remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(ended_job_detached))))
