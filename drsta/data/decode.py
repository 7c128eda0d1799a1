"""Decoding the sampled frames of a tracklet: decord for video files, PIL for frame folders.

Only the requested frames are decoded, then resized to the model's input (bilinear, the same for both sources).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch  # noqa: F401  (imported before decord, see below)
from PIL import Image

# isort: split
# decord2 dlopens every CUDA library of the nvidia-* wheels (torch's) with RTLD_GLOBAL, libnvblas among them,
# which then takes over the CPU matrix multiply of a torch imported afterwards and crashes it. Importing torch
# first keeps torch's own BLAS bound.
import decord

from drsta.data.tracklet import SourceKind


class DecodeError(ValueError):
    """A tracklet could not be decoded (missing, truncated, corrupt or not a video/image)."""


@dataclass(frozen=True)
class Probe:
    """What ingest learns by opening a tracklet."""

    num_frames: int
    height: int
    width: int


def read_clip(
    source: SourceKind,
    uri: str,
    frames: Sequence[str],
    indices: Sequence[int],
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Decode frames `indices` (in the given order, repeats allowed) of one tracklet.

    Args:
        source: "video" (decode `uri` with decord) or "frames" (read `frames[i]` with PIL).
        uri: the video file (used for videos).
        frames: the ordered frame paths (used for frame folders).
        indices: frame indices to decode.
        size: (height, width) to resize every frame to; None keeps the native size.

    Returns:
        (len(indices), H, W, 3) uint8 RGB frames.

    Raises:
        DecodeError: the tracklet or a frame cannot be read or an index is out of range.
    """
    if source == "video":
        return _read_video(uri, indices, size)
    if source == "frames":
        return _read_frames(frames, indices, size)
    raise DecodeError(f"unknown source kind {source!r} for {uri}: expected 'video' or 'frames'")


def probe(source: SourceKind, uri: str, frames: Sequence[str]) -> Probe:
    """Open a tracklet, decode its first and last frame, and check that all its frames have one size.

    Raises:
        DecodeError: with the reason (no frames, unreadable, mixed frame sizes, ...).
    """
    if source == "video":
        reader = _open_video(uri)
        num_frames = len(reader)
        if num_frames == 0:
            raise DecodeError(f"{uri}: the video has no frames")
        try:
            first_last = reader.get_batch([0, num_frames - 1]).asnumpy()
        except (decord.DECORDError, RuntimeError) as err:  # decord raises both
            raise DecodeError(_decord_message(uri, err, "decode its first/last frame")) from None
        return Probe(num_frames, int(first_last.shape[1]), int(first_last.shape[2]))
    if not frames:
        raise DecodeError(f"{uri}: the tracklet has no frames")
    sizes = {_image_size(path) for path in frames}  # reads headers only
    if len(sizes) > 1:
        raise DecodeError(f"{uri}: mixed frame sizes {sorted(sizes)} (width, height); re-crop it to one size")
    for path in (frames[0], frames[-1]):
        _load_image(path)
    width, height = sizes.pop()
    return Probe(len(frames), height, width)


# decord infers the channel count from a row buffer padded to 64 pixels and gets it wrong when that padded size is
# a multiple of the width: decord2 3.4 decodes widths 16, 24, 32, 48, 96, 144 as 4-12 "channels" and get_batch
# fails with "from_size == to_size" (dmlc/decord#336; decord 0.6.0 fails on other widths, 16, 24, 48, 72). Found
# by decoding every even width 16..256. Multiples of 64 are always safe; ingest's transcoding produces them.
_DECORD_WIDTH_BUG = "from_size == to_size"
SAFE_WIDTH_MULTIPLE = 64
DECORD_WIDTH_HINT = "decord misreads this width (dmlc/decord#336); use e.g. 40, 64 or 128"


def decord_decodes_width(width: int) -> bool:
    """Whether decord (decord2 3.4) decodes frames `width` pixels wide."""
    padded = 3 * 64 * math.ceil(width / 64)
    return width % 64 == 0 or padded % width != 0


def _decord_message(uri: str, err: Exception, what: str) -> str:
    first_line = str(err).splitlines()[0]
    if _DECORD_WIDTH_BUG in first_line:
        return (
            f"{uri}: decord cannot {what} at this frame width (a decord bug with some widths): re-encode the video "
            f"to a width that is a multiple of {SAFE_WIDTH_MULTIPLE} (drsta ingest --transcode-gop does for frame "
            "folders)"
        )
    return f"{uri}: cannot {what} ({first_line})"


def _open_video(uri: str) -> decord.VideoReader:
    path = Path(uri)
    if not path.is_file():
        raise DecodeError(f"{uri}: video file not found")
    if path.stat().st_size == 0:
        raise DecodeError(f"{uri}: the file is empty (0 bytes)")
    try:
        return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    except (decord.DECORDError, RuntimeError) as err:  # decord raises both
        raise DecodeError(f"{uri}: not a decodable video ({str(err).splitlines()[0]})") from None


def _read_video(uri: str, indices: Sequence[int], size: tuple[int, int] | None) -> np.ndarray:
    # decord can scale while decoding (width=, height=), but decord2 3.4 fails for widths that are not a
    # multiple of 64 ("from_size == to_size"), so frames are decoded natively and resized like image frames.
    reader = _open_video(uri)
    _check_indices(uri, indices, len(reader))
    try:
        clip = reader.get_batch(list(indices)).asnumpy()
    except (decord.DECORDError, RuntimeError) as err:  # decord raises both
        raise DecodeError(_decord_message(uri, err, f"decode frames {list(indices)}")) from None
    if size is None or clip.shape[1:3] == size:
        return clip
    return np.stack([_resize(Image.fromarray(frame), size) for frame in clip])


def _read_frames(frames: Sequence[str], indices: Sequence[int], size: tuple[int, int] | None) -> np.ndarray:
    uri = str(Path(frames[0]).parent) if len(frames) else "<no frames>"
    _check_indices(uri, indices, len(frames))
    decoded: dict[int, np.ndarray] = {}  # short tracklets repeat frames: decode each once
    for index in dict.fromkeys(indices):
        image = _load_image(frames[index])
        decoded[index] = np.asarray(image) if size is None else _resize(image, size)
    first_shape = decoded[indices[0]].shape
    if any(frame.shape != first_shape for frame in decoded.values()):
        raise DecodeError(f"{uri}: frames of different sizes; pass size= to resize them")
    return np.stack([decoded[i] for i in indices])


def _resize(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    if image.size != (width, height):
        image = image.resize((width, height), Image.BILINEAR)
    return np.asarray(image)


@contextlib.contextmanager
def _open_image(path: str) -> Iterator[Image.Image]:
    """PIL's image at `path` (lazily: the header only until pixels are asked for); errors as DecodeError."""
    try:
        with Image.open(path) as image:
            yield image
    except FileNotFoundError:
        raise DecodeError(f"{path}: frame file not found") from None
    except OSError as err:  # PIL's UnidentifiedImageError and truncated files are OSErrors
        raise DecodeError(f"{path}: unreadable image ({err})") from None


def _load_image(path: str) -> Image.Image:
    with _open_image(path) as image:
        return image.convert("RGB")


def _image_size(path: str) -> tuple[int, int]:
    with _open_image(path) as image:
        return image.size


def _check_indices(uri: str, indices: Sequence[int], num_frames: int) -> None:
    if len(indices) == 0:
        raise DecodeError(f"{uri}: no frame indices requested")
    if min(indices) < 0 or max(indices) >= num_frames:
        raise DecodeError(f"{uri}: frame indices {list(indices)} out of range for {num_frames} frames")
