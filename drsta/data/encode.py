"""Writing clips as H.264 video with PyAV (short keyframe intervals make decord's random access cheap)."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np


def write_video(frames: np.ndarray, path: str | Path, fps: int = 25, gop: int = 8, crf: int = 18) -> Path:
    """Encode frames (T, H, W, 3) uint8 RGB as H.264 (yuv420p) MP4 at `path`, atomically.

    The file appears complete or not at all (written beside it, then renamed), so an interrupted run never
    leaves a truncated video behind.

    Args:
        frames: the frames; H and W are rounded down to even sizes (yuv420p needs them).
        path: destination .mp4.
        fps: frame rate stored in the container.
        gop: keyframe interval in frames; decoding frame i costs up to `gop` frame decodes.
        crf: x264 quality (lower is better; 18 is visually lossless).
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    if len(frames) == 0:
        raise ValueError(f"no frames to write to {path}")
    if gop < 1:
        raise ValueError(f"gop (keyframe interval) must be >= 1, got {gop}")
    height, width = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2
    if height == 0 or width == 0:
        raise ValueError(f"frames of {frames.shape[1]}×{frames.shape[2]} are too small to encode")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    with av.open(str(partial), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.options = {"crf": str(crf), "preset": "veryfast", "bf": "0"}
        for frame in frames[:, :height, :width]:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())
    partial.replace(path)
    return path
