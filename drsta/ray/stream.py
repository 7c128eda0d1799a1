"""The Ray Data streams training and evaluation consume: clip requests -> decoded, augmented uint8 clips.

Sharding: each epoch's plan is a pure function of (seed, epoch), and worker r of W takes requests r, r + W, ...
(`drsta.data.plan.shard`), builds its own stream and iterates it. Every planned clip is decoded exactly once
per epoch, every worker gets the same number of batches (DDP needs that), and a resumed run sees exactly the
shards it would have seen — which `streaming_split`'s dynamic, first-come row assignment cannot promise.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence

import numpy as np
import ray.data

from drsta.config import DataConfig
from drsta.data.augment import AugmentSpec
from drsta.data.clips import decode_requests
from drsta.data.plan import ClipRequest, epoch_plan, evaluation_plan, shard
from drsta.data.tracklet import Tracklet

log = logging.getLogger(__name__)


def clip_dataset(
    requests: Sequence[ClipRequest],
    size: tuple[int, int],
    num_frames: int,
    augment: AugmentSpec | None,
    decode_batch_size: int,
    decode_cpus: float,
) -> ray.data.Dataset:
    """A dataset decoding `requests` in parallel Ray tasks of `decode_batch_size` clips, each reserving
    `decode_cpus` logical CPUs, into columns clip (B, N, H, W, 3) uint8, valid, ..., in plan order
    (identity-balanced batches stay intact)."""
    if not requests:
        raise ValueError("no clip requests to decode")
    dataset = ray.data.from_items(list(requests), override_num_blocks=math.ceil(len(requests) / decode_batch_size))
    dataset.context.execution_options.preserve_order = True
    # Ray Data reserves half of the cluster's CPUs per operator by default and then runs one decode task at a
    # time on a 2-CPU node; decoding is the only operator here, so let it use every CPU (2.7× on 2 cores).
    dataset.context.op_resource_reservation_enabled = False
    return dataset.map_batches(
        decode_requests,
        fn_kwargs={"size": size, "num_frames": num_frames, "augment": augment},
        batch_size=decode_batch_size,
        batch_format="numpy",
        num_cpus=decode_cpus,
    )


def train_stream(
    tracklets: Sequence[Tracklet],
    cfg: DataConfig,
    size: tuple[int, int],
    num_frames: int,
    epoch: int,
    rank: int = 0,
    world_size: int = 1,
) -> ray.data.Dataset:
    """Worker `rank`'s augmented training clips of `epoch` (a 1/world_size share of the epoch's plan)."""
    plan = epoch_plan(
        tracklets,
        num_frames,
        seed=cfg.seed,
        epoch=epoch,
        global_batch_size=cfg.batch_size_per_worker * world_size,
        sampler=cfg.sampler,
        tracklets_per_id=cfg.tracklets_per_id,
    )
    augment = AugmentSpec(flip_p=cfg.flip_p, crop_p=cfg.crop_p, erase_p=cfg.erase_p)
    requests = shard(plan, rank, world_size)
    return clip_dataset(requests, size, num_frames, augment, cfg.decode_batch_size, cfg.decode_cpus)


def evaluation_stream(
    tracklets: Sequence[Tracklet], cfg: DataConfig, size: tuple[int, int], num_frames: int
) -> ray.data.Dataset:
    """Every query and gallery tracklet once (times eval_clips_per_tracklet), test-time frames, no augmentation."""
    plan = evaluation_plan(tracklets, num_frames, cfg.eval_clips_per_tracklet)
    return clip_dataset(plan, size, num_frames, None, cfg.decode_batch_size, cfg.decode_cpus)


class ValidBatches:
    """Iterate a clip dataset's batches, leaving out the clips that failed to decode and counting them.

    With `fill`, a failed clip is replaced by a copy of a good one from its batch instead of dropped, so every
    batch keeps its planned size (training: DDP workers stay in lockstep and batch norm never sees a batch of
    one); a batch with no good clip at all keeps its rows and `batch["valid"]` says so.
    """

    def __init__(self, dataset: ray.data.Dataset | ray.data.DataIterator, batch_size: int, fill: bool = False) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.fill = fill
        self.skipped: list[str] = []

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for batch in self.dataset.iter_batches(batch_size=self.batch_size, batch_format="numpy"):
            valid = batch["valid"]
            if not valid.all():
                bad = [str(i) for i in batch["id"][~valid]]
                self.skipped.extend(bad)
                log.warning("skipped %d undecodable tracklet(s) so far: %s", len(self.skipped), bad)
                if not self.fill:
                    batch = {key: column[valid] for key, column in batch.items()}
                elif valid.any():
                    source = np.where(valid, np.arange(len(valid)), np.flatnonzero(valid)[0])
                    batch = {key: column[source] for key, column in batch.items()}
            yield batch
