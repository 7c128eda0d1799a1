"""Decoding videos of every frame width (decord, and PyAV where decord misreads the width) and refusing image bombs.

Frames are a random grey texture plus one colour tint per frame: the tint is constant over the frame, so yuv420p's
halved chroma loses nothing and lossless H.264 (crf 0) gives the frames back within RGB↔YUV rounding, while a
misread width (rows sheared), a wrong channel order or a wrong frame is off by tens of grey levels.
"""

import struct
import zlib
from pathlib import Path

import av
import decord
import numpy as np
import pytest
from PIL import Image

from drsta.data.decode import DecodeError, Probe, decord_decodes_width, probe, read_clip, read_video_pyav
from drsta.data.encode import write_video

TINTS = np.array([[100, 40, 0], [0, 100, 50], [60, 0, 100]])  # (frame, RGB): one per frame, each channel different
HEIGHT = 18  # not a multiple of H.264's 16-pixel macroblocks: the decoder crops
ORDER = [2, 0, 2, 1]  # any order, repeats allowed
DECORD_MISREADS = [16, 24, 32, 36, 48, 72, 96, 144]  # on some machine


def tinted_frames(width: int, height: int = HEIGHT) -> np.ndarray:
    """(3, height, width, 3) uint8: a grey texture (values 0..155) plus the frame's tint."""
    texture = np.random.default_rng(width).integers(0, 156, (len(TINTS), height, width, 1))
    return (texture + TINTS[:, None, None, :]).astype(np.uint8)


def write_yuv444(frames: np.ndarray, path: Path) -> Path:
    """Lossless H.264 in yuv444p, which allows odd widths (the project's writer, yuv420p, needs even ones)."""
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv444p"
        stream.options = {"crf": "0", "preset": "veryfast", "threads": "1"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())
    return path


@pytest.mark.parametrize("width", range(16, 257))
def test_every_width_decodes_to_the_source_frames(tmp_path, width):
    frames = tinted_frames(width)
    path = tmp_path / f"{width}.mp4"
    if width % 2:
        with pytest.raises(ValueError, match="even frame size"):
            write_video(frames, path)
        write_yuv444(frames, path)
    else:
        write_video(frames, path, crf=0)  # lossless

    assert probe("video", str(path), ()) == Probe(len(frames), HEIGHT, width)
    clip = read_clip("video", str(path), (), ORDER)
    assert clip.shape == (len(ORDER), HEIGHT, width, 3)
    error = np.abs(clip.astype(int) - frames[ORDER])
    assert error.max() <= 4 and error.mean() < 2, (error.max(), error.mean())

    # decord fails only at widths `decord_decodes_width` names (which of them depends on the machine), and
    # where it decodes, PyAV (read_clip's fallback) gives exactly its frames.
    try:
        decoded = decord.VideoReader(str(path), num_threads=1).get_batch(ORDER).asnumpy()
    except decord.DECORDError as err:
        assert not decord_decodes_width(width) and "from_size == to_size" in str(err), (width, err)
    else:
        assert np.array_equal(read_video_pyav(str(path), ORDER), decoded)


def test_the_widths_decord_may_misread_are_those_found():
    assert [width for width in range(16, 257) if not decord_decodes_width(width)] == DECORD_MISREADS


@pytest.mark.parametrize("gop", [1, 4, 250])
def test_pyav_decodes_exactly_decords_frames_in_any_order(tmp_path, rng, gop):
    # 30 frames with B-frames (x264's default) and a keyframe every `gop`: requests jump back, repeat, cross
    # keyframes and end on the last frame, which the decoder holds back until it is drained.
    texture = rng.integers(0, 156, (30, 32, 40, 1))
    frames = (texture + rng.integers(0, 100, (30, 1, 1, 3))).astype(np.uint8)
    path = str(write_video(frames, tmp_path / "clip.mp4", gop=gop))
    reader = decord.VideoReader(path, num_threads=1)
    requests = [[29], [0, 29, 0], [5, 4, 3, 13, 12, 11], list(range(30))[::-1]]
    requests += [rng.integers(0, 30, 6).tolist() for _ in range(8)]
    for indices in requests:
        assert np.array_equal(read_video_pyav(path, indices), reader.get_batch(indices).asnumpy()), indices


def test_a_misread_width_is_resized_and_range_checked_like_any_video(tmp_path):
    frames = tinted_frames(48, height=32)
    path = str(write_video(frames, tmp_path / "narrow.mp4", crf=0))
    resized = read_clip("video", path, (), [1, 1], size=(64, 40))
    expected = np.stack([np.asarray(Image.fromarray(frames[1]).resize((40, 64), Image.BILINEAR))] * 2)
    assert np.abs(resized.astype(int) - expected).mean() < 2
    with pytest.raises(DecodeError, match=r"indices \[0, 3\] out of range for 3 frames"):
        read_clip("video", path, (), [0, 3])
    with pytest.raises(DecodeError, match="out of range"):
        read_video_pyav(path, [-1])


def png_declaring(path: Path, width: int, height: int) -> Path:
    """A valid black 1-bit PNG of width × height pixels; all-zero rows compress it to kilobytes."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = bytes(1 + (width + 7) // 8)  # filter type 0, then the row's bits
    compressor = zlib.compressobj(9)
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale, not interlaced
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))
    return path


@pytest.fixture
def folder_with_bomb(tmp_path) -> list[str]:
    """Two frame files: a good 16×8 one and a 20000×20000 PNG (400 Mpixels, past twice PIL's limit)."""
    good = tmp_path / "0001.png"
    Image.fromarray(tinted_frames(8, height=16)[0]).save(good)
    return [str(good), str(png_declaring(tmp_path / "0002.png", 20000, 20000))]


def test_a_decompression_bomb_frame_is_a_decode_error_naming_it(folder_with_bomb):
    good, bomb = folder_with_bomb
    assert Path(bomb).stat().st_size < 100_000
    reason = rf"^{bomb}: refused as a possible decompression bomb \(.*400000000 pixels.*\)$"
    with pytest.raises(DecodeError, match=reason):
        probe("frames", str(Path(good).parent), folder_with_bomb)
    with pytest.raises(DecodeError, match=reason):
        read_clip("frames", "", folder_with_bomb, [1])
    assert read_clip("frames", "", folder_with_bomb, [0]).shape == (1, 16, 8, 3)


def test_an_image_over_the_limit_where_pil_only_warns_is_refused_too(tmp_path):
    # 10000×10000 = 100 Mpixels: over PIL's limit (~89 M), under the 2× at which PIL raises instead of warning.
    bomb = str(png_declaring(tmp_path / "0001.png", 10000, 10000))
    reason = rf"^{bomb}: refused as a possible decompression bomb \(its header declares 10000×10000 pixels, over "
    with pytest.warns(Image.DecompressionBombWarning), pytest.raises(DecodeError, match=reason):
        probe("frames", str(tmp_path), [bomb])
    with pytest.warns(Image.DecompressionBombWarning), pytest.raises(DecodeError, match=reason):
        read_clip("frames", "", [bomb], [0])
