"""Reclaiming placement groups that Ray 2.60 leaves reserved for nobody.

A Ray Train V2 controller creates its workers' placement group; Ray removes a group only when both its
creating job *and* its creating actor have ended, and relies on a detached PlacementGroupCleaner for a
controller that dies first. Two cases escape it here (both seen on this project's sweeps): a sweep driver
killed while a controller was creating its group (the group outlives the ended job), and Tune stopping a trial
(its controller dies with the trial, its cleaner sometimes never removes the group). Each leak holds the
trial's CPUs (GPUs) for nobody, and later trials wait for them forever. The groups are found in the GCS's
own placement-group table, which records whether each creator job and actor is dead.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import ray
from ray.core.generated import gcs_pb2
from ray.tune import Callback
from ray.util.placement_group import PlacementGroup, remove_placement_group

logger = logging.getLogger(__name__)


def leaked_placement_groups(job_id: str | None = None) -> list[Any]:
    """Live, non-detached groups whose creating job has ended, or, for groups of job `job_id` (hex) created by
    an actor, whose creating actor is dead. Reads the GCS table (Ray internals; no dashboard needed)."""
    state = ray._private.state.state
    # A group registered just after its job ended never gets its creator_job_dead flag: ask the job table too.
    ended_jobs = {job["JobID"] for job in state.job_table() if job["IsDead"]}
    leaked = []
    for raw in state._connect_and_get_accessor().get_placement_group_table():
        group = gcs_pb2.PlacementGroupTableData.FromString(raw)
        if group.state == gcs_pb2.PlacementGroupTableData.REMOVED or group.is_detached:
            continue
        job = group.creator_job_id.hex()
        by_actor = not ray.ActorID(group.creator_actor_id).is_nil()  # a driver's own groups have a nil creator
        actor_gone = job == job_id and by_actor and group.creator_actor_dead
        if group.creator_job_dead or job in ended_jobs or actor_gone:
            leaked.append(group)
    return leaked


def release_leaked_placement_groups(job_id: str | None = None) -> list[str]:
    """Remove what `leaked_placement_groups` finds; returns the removed groups' ids. Never raises: a failure
    (e.g. Ray internals that changed) is logged and nothing is removed."""
    try:
        groups = leaked_placement_groups(job_id)
        for group in groups:
            cpus = sum(bundle.unit_resources.get("CPU", 0) for bundle in group.bundles)
            logger.warning("releasing leaked placement group %s (%g CPUs; creator job ended: %s, actor dead: %s)",
                           group.placement_group_id.hex(), cpus, group.creator_job_dead,
                           group.creator_actor_dead)  # fmt: skip
            remove_placement_group(PlacementGroup(ray.PlacementGroupID(group.placement_group_id)))
    except Exception as error:  # housekeeping must never stop a run
        logger.warning("could not look for leaked placement groups: %s", error)
        return []
    return [group.placement_group_id.hex() for group in groups]


class ReleaseLeakedPlacementGroups(Callback):
    """Tune callback on the sweep's driver: every `interval_s`, release the groups leaked by stopped trials."""

    def __init__(self, interval_s: float = 5.0) -> None:
        self.interval_s = interval_s
        self.last = 0.0
        self.released: list[str] = []

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if time.monotonic() - self.last >= self.interval_s:
            self.last = time.monotonic()
            self.released += release_leaked_placement_groups(ray.get_runtime_context().get_job_id())
