"""Decoding the sampled frames of a tracklet: decord for video files (PyAV at widths decord misreads), PIL for frames.

Only the requested frames are decoded, then resized to the model's input (bilinear, the same for both sources).
"""

from __future__ import annotations

import bisect
import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch  # noqa: F401  (imported before decord, see below)
from av.video.reformatter import VideoReformatter
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
        source: "video" (decode `uri` with decord, or PyAV at a width decord misreads) or "frames" (read
            `frames[i]` with PIL).
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
        first_last = _decode_video(reader, uri, [0, num_frames - 1])
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


# decord infers the channel count from a row buffer padded to A pixels and gets it wrong when that padded size is
# a multiple of the width other than 3 × the width: it decodes such widths as 4-12 "channels" and get_batch fails
# with "from_size == to_size" (dmlc/decord#336). A follows the CPU (FFmpeg's SIMD alignment): decord2 3.4 failed at
# widths 16, 24, 32, 48, 96, 144 on one machine (A = 64, as with AVX-512) and at 16, 24, 48, 72 on an AMD EPYC
# without AVX-512 (A = 32), as decord 0.6.0 did; found by decoding every width 16..256, every other width decoding
# pixel for pixel like PyAV. A = 16 (older CPUs) adds 36. On that failure the video is decoded with PyAV instead
# (`read_video_pyav`): decord fails at its first frame, so little is wasted.
_ROW_ALIGNMENTS = (16, 32, 64)
_DECORD_WIDTH_BUG = "from_size == to_size"
# Only for drsta.data.synthetic, which still keeps its widths on decord's fast path.
DECORD_WIDTH_HINT = "decord misreads this width (dmlc/decord#336); use e.g. 40, 64 or 128"


def decord_decodes_width(width: int) -> bool:
    """Whether decord (decord2 3.4) decodes frames `width` pixels wide on every machine; at other widths it may fail,
    and read_clip then takes the slower PyAV path."""
    for align in _ROW_ALIGNMENTS:
        padded = 3 * align * math.ceil(width / align)
        if padded % width == 0 and padded != 3 * width:
            return False
    return True


def read_video_pyav(uri: str, indices: Sequence[int]) -> np.ndarray:
    """Frames `indices` (any order, repeats allowed) of a video, decoded with PyAV: the path for widths decord misreads.

    Frame i is decord's frame i, pixel for pixel: the i-th in presentation order (by packet timestamp, as decord
    indexes them), converted to RGB by the same FFmpeg swscale. As in decord, each requested frame is decoded from
    the keyframe before it, and decoding runs on from one requested frame to the next unless a keyframe lies
    between them.

    Returns:
        (len(indices), H, W, 3) uint8 RGB frames.

    Raises:
        DecodeError: the file cannot be read, has no video stream or frame timestamps, or an index is out of range.
    """
    _check_video_file(uri)
    try:
        with av.open(uri) as container:
            if not container.streams.video:
                raise DecodeError(f"{uri}: no video stream")
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1  # as decord's num_threads=1: one decode task per core
            packets = [packet for packet in container.demux(stream) if packet.size]  # decode order; demuxing only
            if any(packet.pts is None for packet in packets):
                raise DecodeError(f"{uri}: frames without timestamps, which PyAV decoding cannot index")
            _check_indices(uri, indices, len(packets))
            decoded = _decode_packets(uri, stream.codec_context, packets, sorted(set(indices)))
    except av.FFmpegError as err:
        raise DecodeError(f"{uri}: cannot decode frames {list(indices)} ({str(err).splitlines()[0]})") from None
    return np.stack([decoded[i] for i in indices])


def _decode_packets(
    uri: str, codec: av.CodecContext, packets: Sequence[av.Packet], wanted: Sequence[int]
) -> dict[int, np.ndarray]:
    """The frames `wanted` (ascending indices in presentation order) as (H, W, 3) RGB, decoded from `packets`."""
    frame_of_pts = {pts: i for i, pts in enumerate(sorted(packet.pts for packet in packets))}
    # (frame index, packet position) of each keyframe, and of the first packet: decoding can start there.
    starts = sorted({(0, 0)} | {(frame_of_pts[p.pts], k) for k, p in enumerate(packets) if p.is_keyframe})
    wanted_set = set(wanted)
    # One converter for all frames: a frame's own to_ndarray sets up FFmpeg's swscale anew (about 1 ms each).
    to_rgb = VideoReformatter()
    decoded: dict[int, np.ndarray] = {}
    last_frame: int | None = None  # the frame the decoder put out last; None: not started
    next_packet, drained = 0, False
    for target in wanted:
        if target in decoded:  # came out while decoding towards an earlier target
            continue
        start_frame, start_packet = starts[bisect.bisect_right(starts, (target, len(packets))) - 1]
        if last_frame is None or start_frame > last_frame + 1:  # not started, or a keyframe saves decoding
            codec.flush_buffers()
            last_frame, next_packet, drained = start_frame - 1, start_packet, False
        while target not in decoded:
            if next_packet < len(packets):
                frames = codec.decode(packets[next_packet])
                next_packet += 1
            elif not drained:
                frames, drained = codec.decode(None), True  # the frames the decoder still holds back
            else:
                raise DecodeError(f"{uri}: frame {target} could not be decoded (the decoder never put it out)")
            for frame in frames:
                index = frame_of_pts.get(frame.pts)
                if index is None:
                    continue
                last_frame = index
                if index in wanted_set and index not in decoded:
                    decoded[index] = to_rgb.reformat(frame, format="rgb24").to_ndarray()
    return decoded


def _decode_video(reader: decord.VideoReader, uri: str, indices: Sequence[int]) -> np.ndarray:
    """Frames `indices` of the video `reader` has open: with decord, or with PyAV at a width decord misreads."""
    try:
        return reader.get_batch(list(indices)).asnumpy()
    except (decord.DECORDError, RuntimeError) as err:  # decord raises both
        if _DECORD_WIDTH_BUG in str(err):
            return read_video_pyav(uri, indices)
        raise DecodeError(f"{uri}: cannot decode frames {list(indices)} ({str(err).splitlines()[0]})") from None


def _check_video_file(uri: str) -> None:
    path = Path(uri)
    if not path.is_file():
        raise DecodeError(f"{uri}: video file not found")
    if path.stat().st_size == 0:
        raise DecodeError(f"{uri}: the file is empty (0 bytes)")


def _open_video(uri: str) -> decord.VideoReader:
    _check_video_file(uri)
    try:
        return decord.VideoReader(uri, ctx=decord.cpu(0), num_threads=1)
    except (decord.DECORDError, RuntimeError) as err:  # decord raises both
        raise DecodeError(f"{uri}: not a decodable video ({str(err).splitlines()[0]})") from None


def _read_video(uri: str, indices: Sequence[int], size: tuple[int, int] | None) -> np.ndarray:
    # decord can scale while decoding (width=, height=), but decord2 3.4 fails for widths that are not a
    # multiple of 64 ("from_size == to_size"), so frames are decoded natively and resized like image frames.
    reader = _open_video(uri)
    _check_indices(uri, indices, len(reader))
    clip = _decode_video(reader, uri, indices)
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
    """PIL's image at `path` (lazily: the header only until pixels are asked for); errors as DecodeError.

    An image whose header declares more pixels than PIL's decompression-bomb limit (`Image.MAX_IMAGE_PIXELS`) is
    refused before its pixels are decoded. PIL raises DecompressionBombError past twice the limit; between once
    and twice it only warns (DecompressionBombWarning), so that range is refused here.
    """
    try:
        with Image.open(path) as image:
            limit = Image.MAX_IMAGE_PIXELS
            if limit is not None and image.width * image.height > limit:
                pixels = f"its header declares {image.width}×{image.height} pixels, over PIL's limit of {limit}"
                raise DecodeError(_bomb_message(path, pixels))
            yield image
    except FileNotFoundError:
        raise DecodeError(f"{path}: frame file not found") from None
    except Image.DecompressionBombError as err:  # not an OSError
        raise DecodeError(_bomb_message(path, str(err))) from None
    except OSError as err:  # PIL's UnidentifiedImageError and truncated files are OSErrors
        raise DecodeError(f"{path}: unreadable image ({err})") from None


def _bomb_message(path: str, detail: str) -> str:
    return f"{path}: refused as a possible decompression bomb ({detail})"


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
