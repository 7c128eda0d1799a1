"""Checking one tracklet before it enters the manifest, and optionally transcoding a frame folder to H.264."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from drsta.data.decode import DecodeError, Probe, decord_decodes_width, probe, read_clip
from drsta.data.encode import write_video
from drsta.data.tracklet import Tracklet


def validate(tracklet: Tracklet, min_frames: int = 1, min_size: tuple[int, int] = (16, 8)) -> Tracklet:
    """The tracklet with num_frames, height and width filled in from the decoded file(s).

    Opens it, decodes its first and last frame, checks one frame size throughout and the frame count.

    Raises:
        DecodeError: why the tracklet is unusable (the quarantine reason).
    """
    found = probe(tracklet.source, tracklet.uri, tracklet.frames)
    if tracklet.source == "frames" and found.num_frames != len(tracklet.frames):
        raise DecodeError(f"{tracklet.uri}: {found.num_frames} frames decoded, {len(tracklet.frames)} listed")
    if found.num_frames < min_frames:
        raise DecodeError(f"{tracklet.uri}: {found.num_frames} frames, fewer than the required {min_frames}")
    if found.height < min_size[0] or found.width < min_size[1]:
        raise DecodeError(f"{tracklet.uri}: frames of {found.height}×{found.width} are smaller than {min_size}")
    return dataclasses.replace(tracklet, num_frames=found.num_frames, height=found.height, width=found.width)


def transcode(tracklet: Tracklet, video_dir: Path, gop: int) -> Tracklet:
    """Re-encode a validated frame-folder tracklet as one H.264 video with keyframes every `gop` frames.

    Idempotent: a video already there with the right frame count and size is reused.
    """
    if tracklet.source != "frames":
        return tracklet
    path = video_dir / f"{_safe_name(tracklet.id)}.mp4"
    height, width = transcoded_size(tracklet.height, tracklet.width)
    video = dataclasses.replace(tracklet, source="video", uri=str(path), frames=(), height=height, width=width)
    if path.is_file():
        try:
            if probe("video", str(path), ()) == Probe(tracklet.num_frames, height, width):
                return video
        except DecodeError:
            pass  # a leftover of an interrupted or older run: encode it again
    frames = read_clip("frames", tracklet.uri, tracklet.frames, range(tracklet.num_frames), size=(height, width))
    write_video(frames, path, gop=gop)
    return video


def transcoded_size(height: int, width: int) -> tuple[int, int]:
    """The frame size a transcoded video gets: the frames' own, made even (yuv420p), the width then widened by
    2 px while it is one decord misreads (16 → 18, 72 → 74; see `decord_decodes_width`), so that training decodes
    it on decord's fast path rather than PyAV's. Training resizes frames to the model input anyway."""
    new_height, new_width = height + height % 2, width + width % 2
    while not decord_decodes_width(new_width):
        new_width += 2
    return new_height, new_width


def _safe_name(tracklet_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", tracklet_id)
