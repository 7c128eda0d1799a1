"""Which N frames of a tracklet a clip is made of.

Training uses the paper's restricted random sampling: split the tracklet into N chunks of equal duration and
take one random frame from each, in temporal order. Evaluation uses fixed positions inside the same chunks
(their middles for one clip per tracklet), so a tracklet always gives the same clip(s).
"""

from __future__ import annotations

import numpy as np


def restricted_random_indices(num_frames: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """One random frame from each of `n` equal chunks of a `num_frames`-long tracklet, in order.

    A tracklet shorter than `n` cannot fill n distinct chunks: its frames are repeated in order instead
    (e.g. 3 frames, n = 6 -> [0, 0, 1, 1, 2, 2]).

    Args:
        num_frames: length of the tracklet, in frames.
        n: frames per clip (N).
        rng: the generator to draw from; the same seed gives the same indices.

    Returns:
        (n,) int64 frame indices, non-decreasing (strictly increasing when num_frames >= n).
    """
    _check(num_frames, n)
    if num_frames < n:
        return _repeat_in_order(num_frames, n)
    start, stop = _chunk_bounds(num_frames, n)
    return start + (rng.random(n) * (stop - start)).astype(np.int64)


def evaluation_indices(num_frames: int, n: int, num_clips: int = 1) -> np.ndarray:
    """Deterministic test-time clips: clip c takes, in every chunk, the frame at fraction (c + ½) / num_clips.

    With one clip that is each chunk's middle frame; several clips spread over each chunk and their
    descriptors can be averaged.

    Returns:
        (num_clips, n) int64 frame indices; each row is non-decreasing.
    """
    _check(num_frames, n)
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    if num_frames < n:
        return np.tile(_repeat_in_order(num_frames, n), (num_clips, 1))
    start, stop = _chunk_bounds(num_frames, n)
    fraction = (np.arange(num_clips) + 0.5) / num_clips
    return start + (fraction[:, None] * (stop - start)).astype(np.int64)


def _chunk_bounds(num_frames: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """[start, stop) of each of n chunks covering range(num_frames) with lengths differing by at most one."""
    edges = np.arange(n + 1, dtype=np.int64) * num_frames // n
    return edges[:-1], edges[1:]


def _repeat_in_order(num_frames: int, n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64) * num_frames // n


def _check(num_frames: int, n: int) -> None:
    if n < 1:
        raise ValueError(f"n (frames per clip) must be >= 1, got {n}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1: a tracklet with no frames cannot be sampled, got {num_frames}")
