"""Clip requests -> model-ready uint8 clips: the decode stage every stream (Ray Data, DataLoader) runs."""

from __future__ import annotations

import logging

import numpy as np

from drsta.data.augment import AugmentSpec, augment_clip
from drsta.data.decode import DecodeError, read_clip

log = logging.getLogger(__name__)

PASSTHROUGH = ("id", "label", "pid", "camid")


def decode_requests(
    batch: dict[str, np.ndarray], size: tuple[int, int], num_frames: int, augment: AugmentSpec | None = None
) -> dict[str, np.ndarray]:
    """Decode a batch of clip requests (columns of `drsta.data.plan` rows) into clips.

    A tracklet that fails to decode (e.g. a file that went bad after ingest) does not stop the stream: its row
    gets an all-zero clip and `valid = False`, is logged, and consumers drop it (and count it).

    Returns:
        columns `clip` (B, N, H, W, 3) uint8, `valid` (B,) bool, and the requests' id, label, pid, camid
        (and `clip_index` for evaluation requests).
    """
    count = len(batch["id"])
    clips = np.zeros((count, num_frames, *size, 3), dtype=np.uint8)
    valid = np.ones(count, dtype=bool)
    for row in range(count):
        try:
            clip = read_clip(batch["source"][row], batch["uri"][row], batch["frames"][row], batch["indices"][row], size)
        except DecodeError as err:
            log.warning("skipping tracklet %s: %s", batch["id"][row], err)
            valid[row] = False
            continue
        if augment is not None:
            clip = augment_clip(clip, np.random.default_rng(int(batch["augment_seed"][row])), augment)
        clips[row] = clip
    out = {"clip": clips, "valid": valid} | {key: np.asarray(batch[key]) for key in PASSTHROUGH}
    if "clip" in batch:  # evaluation requests number each tracklet's clips
        out["clip_index"] = np.asarray(batch["clip"])
    return out
