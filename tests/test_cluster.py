"""Leaked placement groups: only groups nobody can use any more are released."""

import pytest
import ray
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group

from pipelines.cluster import release_leaked_placement_groups

pytestmark = pytest.mark.integration


@ray.remote(num_cpus=0)
class Creator:
    """Stands in for a Ray Train controller: creates a placement group and may die before removing it."""

    def create(self, detached: bool = False) -> str:
        group = placement_group([{"CPU": 0.01}], lifetime="detached" if detached else None)
        ray.get(group.ready())
        return group.id.hex()


def live_groups() -> set[str]:
    return {group_id for group_id, group in ray.util.placement_group_table().items() if group["state"] == "CREATED"}


def test_groups_of_dead_actors_of_this_job_are_released_and_nothing_else(ray_cluster):
    job = ray.get_runtime_context().get_job_id()
    own = placement_group([{"CPU": 0.01}])  # created by the driver itself
    ray.get(own.ready())
    alive_creator, dead_creator = Creator.remote(), Creator.remote()
    kept = ray.get(alive_creator.create.remote())
    detached = ray.get(dead_creator.create.remote(detached=True))
    leaked = ray.get(dead_creator.create.remote())
    ray.kill(dead_creator)
    try:
        assert leaked in live_groups()  # Ray keeps it while the job lives: nobody will ever use or remove it
        assert release_leaked_placement_groups(job) == [leaked]
        assert release_leaked_placement_groups(job) == []
        live = live_groups()
        assert leaked not in live and {own.id.hex(), kept, detached} <= live
    finally:
        remove_placement_group(own)
        for group_id in (kept, detached):
            remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(group_id))))
        ray.kill(alive_creator)
