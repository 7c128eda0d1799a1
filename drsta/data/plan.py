"""Epoch sampling plans: which tracklets, with which frames, in which order — a pure function of (seed, epoch).

A plan is a list of clip requests (plain dicts, the rows the decode stage consumes). Training plans are random
or identity-balanced (P identities × K tracklets per batch, for the triplet loss); each request carries its
restricted-random frame indices and an augmentation seed, so decoding is deterministic wherever it runs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from drsta.data.sampling import evaluation_indices, restricted_random_indices
from drsta.data.tracklet import Tracklet

Sampler = Literal["random", "identity"]
ClipRequest = dict[str, Any]


def train_labels(tracklets: Sequence[Tracklet]) -> dict[int, int]:
    """Contiguous class labels 0..C−1 for the training identities, in pid order."""
    return {pid: label for label, pid in enumerate(sorted({t.pid for t in tracklets if t.role == "train"}))}


def epoch_plan(
    tracklets: Sequence[Tracklet],
    num_frames: int,
    seed: int,
    epoch: int,
    global_batch_size: int,
    sampler: Sampler = "random",
    tracklets_per_id: int = 4,
) -> list[ClipRequest]:
    """The training clips of one epoch, a whole number of global batches long.

    Args:
        tracklets: the manifest's tracklets; only role "train" is used.
        num_frames: N, frames per clip.
        seed: run seed; (seed, epoch) determines the whole plan.
        epoch: epoch number (0-based).
        global_batch_size: clips per optimisation step over all workers; the plan is cut to a multiple of it
            (the tail that would make a partial batch is left for other epochs, as drop_last does).
        sampler: "random" (every tracklet once, shuffled) or "identity" (batches of P identities × K tracklets,
            P = global_batch_size / K; identities with fewer than K tracklets are sampled with replacement).
        tracklets_per_id: K of the identity sampler.
    """
    train = [t for t in tracklets if t.role == "train"]
    if not train:
        raise ValueError("the manifest has no training tracklets (role 'train')")
    if unprobed := [t.id for t in train if t.num_frames < 1]:
        raise ValueError(f"{len(unprobed)} tracklets have no known frame count (e.g. {unprobed[0]}): run drsta ingest")
    if global_batch_size < 1:
        raise ValueError(f"global_batch_size must be >= 1, got {global_batch_size}")
    rng = np.random.default_rng([seed, epoch])
    if sampler == "random":
        order = rng.permutation(len(train))
    elif sampler == "identity":
        order = _identity_balanced_order(train, rng, global_batch_size, tracklets_per_id)
    else:
        raise ValueError(f"unknown sampler {sampler!r}: use 'random' or 'identity'")
    order = order[: len(order) - len(order) % global_batch_size]
    if len(order) == 0:
        raise ValueError(
            f"a global batch of {global_batch_size} clips is more than one epoch holds ({len(train)} training "
            "tracklets): lower the batch size or the number of workers"
        )
    labels = train_labels(train)
    plan = []
    for position, index in enumerate(order):
        clip_rng = np.random.default_rng([seed, epoch, position])
        tracklet = train[index]
        indices = restricted_random_indices(tracklet.num_frames, num_frames, clip_rng)
        plan.append(_request(tracklet, indices, labels[tracklet.pid], int(clip_rng.integers(2**63))))
    return plan


def evaluation_plan(tracklets: Sequence[Tracklet], num_frames: int, num_clips: int = 1) -> list[ClipRequest]:
    """Every query and gallery tracklet with its deterministic test-time clip(s) (`clip` numbers them)."""
    plan = []
    for tracklet in tracklets:
        if tracklet.role == "train":
            continue
        if tracklet.num_frames < 1:
            raise ValueError(f"tracklet {tracklet.id} has no known frame count: run drsta ingest")
        for clip, indices in enumerate(evaluation_indices(tracklet.num_frames, num_frames, num_clips)):
            plan.append(_request(tracklet, indices, -1, 0) | {"clip": clip})
    if not plan:
        raise ValueError("the manifest has no query or gallery tracklets to evaluate")
    return plan


def shard(plan: Sequence[ClipRequest], rank: int, world_size: int) -> list[ClipRequest]:
    """Worker `rank`'s share of a plan: requests rank, rank + W, rank + 2W, ... (every request exactly once)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    return list(plan[rank::world_size])


def _identity_balanced_order(
    train: Sequence[Tracklet], rng: np.random.Generator, global_batch_size: int, per_id: int
) -> np.ndarray:
    if per_id < 1 or global_batch_size % per_id:
        raise ValueError(
            f"the identity sampler needs global_batch_size ({global_batch_size}) to be a multiple of "
            f"tracklets_per_id ({per_id})"
        )
    ids_per_batch = global_batch_size // per_id
    by_pid: dict[int, list[int]] = defaultdict(list)
    for index, tracklet in enumerate(train):
        by_pid[tracklet.pid].append(index)
    groups: dict[int, list[np.ndarray]] = {}
    for pid in sorted(by_pid):
        indices = np.array(by_pid[pid])
        indices = rng.choice(indices, per_id, replace=True) if len(indices) < per_id else rng.permutation(indices)
        groups[pid] = [indices[i : i + per_id] for i in range(0, len(indices) - per_id + 1, per_id)]
    if len(groups) < ids_per_batch:
        raise ValueError(
            f"the identity sampler needs {ids_per_batch} identities per batch but the training set has "
            f"{len(groups)}: lower global_batch_size or raise tracklets_per_id"
        )
    order: list[np.ndarray] = []
    available = sorted(groups)
    while len(available) >= ids_per_batch:
        for pid in rng.choice(available, ids_per_batch, replace=False):
            order.append(groups[pid].pop())
        available = [pid for pid in available if groups[pid]]
    return np.concatenate(order)


def _request(tracklet: Tracklet, indices: np.ndarray, label: int, augment_seed: int) -> ClipRequest:
    return {
        "id": tracklet.id,
        "source": tracklet.source,
        "uri": tracklet.uri,
        "frames": list(tracklet.frames),
        "indices": indices.tolist(),
        "label": label,
        "pid": tracklet.pid,
        "camid": tracklet.camid,
        "augment_seed": augment_seed,
    }
