"""Housekeeping on the connected Ray cluster before a run or sweep resumes.

A driver killed at the wrong moment (while a Ray Train controller was creating its workers' placement group)
can leave that group behind after its job ended: Ray 2.60's GCS does not remove it, and its CPUs stay reserved
for nobody — a resumed sweep then waits forever for workers. Such groups are released here.
"""

from __future__ import annotations

import logging

import ray
from ray.util.placement_group import PlacementGroup, remove_placement_group
from ray.util.state import list_jobs, list_placement_groups

logger = logging.getLogger(__name__)

ENDED = {"SUCCEEDED", "FAILED", "STOPPED"}


def release_orphaned_placement_groups() -> list[str]:
    """Remove the live, non-detached placement groups whose creating job has ended; returns their ids.

    Needs the State API (the dashboard); without it nothing is removed and a warning says why.
    """
    try:
        ended = {job.job_id for job in list_jobs(limit=10_000) if job.job_id and str(job.status) in ENDED}
        groups = list_placement_groups(filters=[("state", "!=", "REMOVED")], limit=10_000, detail=True)
    except Exception as error:  # housekeeping must never stop a run
        logger.warning("could not look for orphaned placement groups (is the dashboard running?): %s", error)
        return []
    released = []
    for group in groups:
        if group.is_detached or group.creator_job_id not in ended:
            continue
        cpus = sum(bundle["unit_resources"].get("CPU", 0) for bundle in group.bundles)
        logger.warning("releasing placement group %s (%g CPUs) left by ended job %s", group.placement_group_id,
                       cpus, group.creator_job_id)  # fmt: skip
        remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(group.placement_group_id))))
        released.append(group.placement_group_id)
    return released
