"""Reclaiming placement groups that Ray 2.60 leaves reserved for nobody: drsta's own, and only those.

Ray's rule (`GcsPlacementGroup::IsPlacementGroupLifetimeDone`): the GCS removes a non-detached group once its
creating job *and* its creating actor are dead (a group a driver created counts as having a dead creator actor).
Ray Train V2 creates its workers' group from its controller actor, and a detached PlacementGroupCleaner removes
the group when the controller dies first (ray-project/ray PR #58515): Tune stops a trial, its controller dies,
its group goes, while the sweep's job lives on.

With one Ray instance per host (`pipelines.ray_runtime` never lets a command join a stray instance, where Ray's
cleaner would ask the wrong cluster), two leaks remain. Each holds a trial's CPUs (GPUs) for nobody, and later
trials wait for them forever:

- ray-project/ray#62753, an orphaned-group race: a controller that registers a new group with its cleaner and
  dies within the cleaner's check interval leaves that group behind (the cleaner removes the previous one and
  exits). Its creator actor is dead, its job lives, so by Ray's rule it stays for the rest of the job.
  `ReleaseLeakedPlacementGroups`, on the sweep's driver, releases such groups of the sweep's own job.
- The GCS applies its rule to the groups registered when a job or an actor dies: a group whose registration
  reaches it after both died (a driver killed while a controller was creating its group) is never removed.
  `release_leaked_placement_groups()`, run when a run or sweep resumes, releases groups of ended drsta jobs whose
  creator actor is dead: Ray's own rule, read from the job and actor tables instead of the group's flags.

Nothing else is touched: a detached group, a group a driver created, a group whose creator actor lives (such as a
detached actor's group after its job ended: Ray's rule keeps it), and every group of a job that is not drsta's.
A job is drsta's when its metadata carries `pipelines.ray_runtime.DRSTA_JOB`, which every drsta driver sets, or
when it is the caller's own job (the sweep's driver, also when a notebook or a test session runs the sweep).

The tables are the GCS's, read through Ray's private accessor (`ray._private.state`): only they name a group's
creator actor and say whether the group is detached (`ray.util.placement_group_table()` has neither field, the
State API's `list_placement_groups` has no creator actor), and they are the tables of the cluster this driver is
connected to, whereas the State API resolves its cluster from RAY_API_SERVER_ADDRESS, RAY_ADDRESS or the newest
`ray start` on this host. Any failure (e.g. internals that changed) is logged and nothing is removed.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import ray
from ray.core.generated import gcs_pb2
from ray.tune import Callback
from ray.util.placement_group import PlacementGroup, remove_placement_group

from pipelines.ray_runtime import DRSTA_JOB

logger = logging.getLogger(__name__)


def leaked_placement_groups(job_id: str | None = None) -> list[gcs_pb2.PlacementGroupTableData]:
    """Live, non-detached groups of drsta jobs, created by an actor that is dead, whose job has ended or is
    `job_id` (hex: the caller's own job, which knows it keeps no group of a dead actor on purpose)."""
    state = ray._private.state.state
    accessor = state._connect_and_get_accessor()
    table = accessor.get_job_table(skip_submission_job_info_field=True, skip_is_running_tasks_field=True)
    jobs = [gcs_pb2.JobTableData.FromString(raw) for raw in table]
    drsta_jobs = {job.job_id.hex(): job.is_dead for job in jobs if DRSTA_JOB in job.config.metadata}
    leaked = []
    for raw in accessor.get_placement_group_table():
        group = gcs_pb2.PlacementGroupTableData.FromString(raw)
        job = group.creator_job_id.hex()
        creator = ray.ActorID(group.creator_actor_id)
        # The caller's own job runs drsta code (a sweep, also one started from a notebook or a test session
        # whose driver did not come from `connect` and so carries no mark).
        ours = job in drsta_jobs or job == job_id
        if group.state == gcs_pb2.PlacementGroupTableData.REMOVED or group.is_detached or not ours:
            continue
        if creator.is_nil() or not (drsta_jobs.get(job, False) or job == job_id):  # a driver's group; a live job
            continue
        if state.actor_table(creator.hex()).get("State", "DEAD") == "DEAD":  # GCS forgets old dead actors
            leaked.append(group)
    return leaked


def release_leaked_placement_groups(job_id: str | None = None) -> list[str]:
    """Remove what `leaked_placement_groups` finds; returns the removed groups' ids. Never raises: a failure
    (e.g. Ray internals that changed) is logged and nothing is removed."""
    try:
        groups = leaked_placement_groups(job_id)
        for group in groups:
            cpus = sum(bundle.unit_resources.get("CPU", 0) for bundle in group.bundles)
            logger.warning("releasing leaked placement group %s (%g CPUs) of drsta job %s: its creator actor is dead",
                           group.placement_group_id.hex(), cpus, group.creator_job_id.hex())  # fmt: skip
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
