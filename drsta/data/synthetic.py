"""A synthetic video re-id benchmark: rendered walking figures seen by several cameras, encoded as H.264.

No public video re-id dataset (MARS, iLIDS-VID, PRID2011) can be downloaded where this project is built and
tested, so the data pipeline, training and evaluation run on this one. It is made not to be trivially
separable: identities draw each body part's colour from a small shared palette (many share a torso or trouser
colour, so a colour histogram is a weak cue) and differ by the combination, by textures (stripes, checks,
patterns), accessories (bag, backpack, hat), clothing cut and build; every camera has its own illumination,
viewpoint, background and sensor noise; some tracklets are occluded or carry bad frames (blurred, the person
mostly out of the crop, or decoder garbage). Baselines measured on it: `benchmarks/synthetic_baselines.py`.

What `generate(spec, out_dir)` writes:

    out_dir/spec.json            the SyntheticSpec used (`read_spec` reads it back)
    out_dir/tracklets.csv        path,pid,camid,role — path relative to out_dir, camid 0-based; written last, so
                                 a set that has it is complete (spec.json, tracklets.csv, info/ and the
                                 annotations are written atomically: an interrupted run never leaves half of one)
    out_dir/annotations.parquet  the ground truth of every frame (person and part boxes and labels, occlusion,
                                 bad frames), keyed by the videos reader's tracklet id and the frame index; the
                                 schema and its reader: drsta.data.annotations
    out_dir/videos/<pid:04>/<camid>/<pid:04>_c<camid>_t<k>.mp4     H.264 (libx264, yuv420p, GOP = spec.gop)
    out_dir/mars/                with mars_layout=True, the same tracklets as JPEG frames in MARS's layout:
        bbox_train/<pid:04>/<pid:04>C<camid+1>T<k+1:04>F<frame+1:03>.jpg      bbox_test/ likewise
        info/train_name.txt, info/test_name.txt        one image name per line, tracklet after tracklet
        info/tracks_train_info.mat (track_train_info), info/tracks_test_info.mat (track_test_info):
            float (num_tracks, 4) rows [start, end, pid, camid + 1], start/end 1-based inclusive in the names
        info/query_IDX.mat (query_IDX): the 1-based rows of track_test_info that are queries
        annotations.parquet      the same ground truth keyed by the MARS reader's tracklet id and frame JPEG

Identities: train pids 1..num_train_ids, test pids num_train_ids + 1..num_train_ids + num_test_ids (disjoint,
and ≥ 1: MARS reserves 0 for distractors and −1 for junk). Every identity is seen `tracklets_per_id_per_camera`
times by every camera; each test identity has one tracklet more, its query, in one camera, so every query has
gallery matches in the other cameras and same-camera gallery tracklets that the protocol must ignore.

Every random choice comes from a generator seeded by (spec.seed, what it is for, the ids it belongs to): an
identity looks the same whatever else the spec says, and the same spec gives byte-identical frames.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
from PIL import Image

from drsta.data.annotations import ANNOTATIONS_FILE, PARTS, frame_columns, write_annotations
from drsta.data.decode import DECORD_WIDTH_HINT, decord_decodes_width
from drsta.data.encode import write_video
from drsta.data.tracklet import Role
from drsta.io import read_json, write_atomic

# Seed-stream tags: the first number after the seed says what a generator is for.
_LAYOUT, _IDENTITY, _CAMERA, _TRACKLET = 0, 1, 2, 3

# The frame index stamp: 10 bits (0..1023) as black/white cells, 2 rows × 5 columns in a strip at the top.
STAMP_BITS = 10
_STAMP_ROWS, _STAMP_COLUMNS = 2, 5
_MIN_STAMP_CELL_WIDTH = 4  # pixels; narrower cells do not survive H.264's 4:2:0 + deblocking reliably
MAX_FRAMES = 999  # MARS names frames with three digits (F001..F999); also below the stamp's 2**10
SPEC_FILE = "spec.json"
CSV_FILE = "tracklets.csv"

# Part labels of the ground truth (drsta.data.annotations): 0 is the background.
_HEAD, _TORSO, _LEGS, _ACCESSORY = (PARTS.index(part) + 1 for part in ("head", "torso", "legs", "accessory"))
_BAD_KINDS = ("blur", "out_of_crop", "garbage")  # bad_kind 0, 1, 2 of render_annotated
_GARBAGE_KINDS = ("blocks", "noise", "flat")  # what _garbage drew: 0, 1, 2

# Colour palettes: name -> (RGB in [0, 1], how common). Few colours, shared by many identities: colour alone is
# a weak cue, the combination of parts, textures and accessories is what tells identities apart.
_TOPS = {
    "black": ((0.12, 0.12, 0.13), 22),
    "white": ((0.86, 0.86, 0.84), 12),
    "grey": ((0.50, 0.50, 0.52), 12),
    "navy": ((0.12, 0.16, 0.35), 10),
    "blue": ((0.18, 0.32, 0.66), 8),
    "red": ((0.66, 0.12, 0.13), 8),
    "green": ((0.17, 0.42, 0.20), 6),
    "brown": ((0.43, 0.28, 0.16), 6),
    "beige": ((0.78, 0.71, 0.55), 6),
    "yellow": ((0.82, 0.70, 0.20), 4),
    "pink": ((0.86, 0.55, 0.63), 3),
    "orange": ((0.85, 0.45, 0.15), 3),
}
_BOTTOMS = {
    "denim": ((0.20, 0.27, 0.47), 30),
    "black": ((0.10, 0.10, 0.11), 30),
    "grey": ((0.45, 0.45, 0.46), 15),
    "khaki": ((0.67, 0.59, 0.40), 12),
    "navy": ((0.12, 0.15, 0.30), 8),
    "white": ((0.85, 0.84, 0.80), 5),
}
_SHOES = {
    "black": ((0.08, 0.08, 0.08), 45),
    "white": ((0.90, 0.90, 0.90), 30),
    "brown": ((0.38, 0.24, 0.12), 15),
    "grey": ((0.50, 0.50, 0.50), 10),
}
_HAIR = {
    "black": ((0.06, 0.05, 0.05), 45),
    "dark brown": ((0.22, 0.14, 0.08), 30),
    "brown": ((0.42, 0.28, 0.14), 12),
    "blond": ((0.80, 0.68, 0.40), 8),
    "grey": ((0.62, 0.62, 0.62), 5),
}
_SKIN = {
    "very light": ((0.96, 0.80, 0.69), 1),
    "light": ((0.90, 0.72, 0.58), 1),
    "medium": ((0.78, 0.58, 0.42), 1),
    "dark": ((0.58, 0.40, 0.27), 1),
    "very dark": ((0.38, 0.25, 0.17), 1),
}


class SpecError(ValueError):
    """A SyntheticSpec field out of range; `field`, `expected` and `value` let a CLI name its own flag instead."""

    def __init__(self, field: str, expected: str, value: object) -> None:
        super().__init__(f"SyntheticSpec.{field} must be {expected}, got {value!r}")
        self.field, self.expected, self.value = field, expected, value


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate. Every field is validated on construction (SpecError, a ValueError naming the field).

    Attributes:
        seed: the seed every random choice derives from (≥ 0).
        num_train_ids: identities of the training split.
        num_test_ids: identities of the test split (query + gallery), disjoint from the training ones.
        num_cameras: cameras (2..9: MARS names cameras with one digit); every identity is seen by all of them.
        tracklets_per_id_per_camera: tracklets of each identity in each camera (a test identity's query is
            one more, in one camera).
        min_frames: shortest tracklet, in frames.
        max_frames: longest tracklet, in frames (≤ 999); lengths are uniform in [min_frames, max_frames].
        height: frame height in pixels (even: yuv420p).
        width: frame width in pixels (even; a few widths that decord misreads are refused).
        fps: frames per second of the videos; also sets the walking cadence in frames.
        gop: keyframe interval of the H.264 encoder, in frames (a keyframe exactly every `gop` frames).
        occlusion_prob: probability that a tracklet has an object passing in front of the person.
        bad_frame_prob: probability that a frame is bad (blurred, person mostly out of the crop, or garbage).
        stamp_frame_index: write each frame's index into its top strip, max(8, H/8) rows of black/white cells
            (see `read_frame_index`); tests of the data pipeline read it back to prove which frames were decoded.
    """

    seed: int = 0
    num_train_ids: int = 60
    num_test_ids: int = 60
    num_cameras: int = 3
    tracklets_per_id_per_camera: int = 1
    min_frames: int = 16
    max_frames: int = 48
    height: int = 128
    width: int = 64
    fps: int = 25
    gop: int = 12
    occlusion_prob: float = 0.25
    bad_frame_prob: float = 0.03
    stamp_frame_index: bool = False

    def __post_init__(self) -> None:
        _require(self.seed >= 0, "seed", ">= 0", self.seed)
        _require(self.num_train_ids >= 0, "num_train_ids", ">= 0", self.num_train_ids)
        _require(self.num_test_ids >= 0, "num_test_ids", ">= 0", self.num_test_ids)
        num_ids = self.num_train_ids + self.num_test_ids
        _require(1 <= num_ids <= 9999, "num_train_ids + num_test_ids", "in 1..9999 (MARS pids have 4 digits)", num_ids)
        _require(2 <= self.num_cameras <= 9, "num_cameras", "in 2..9 (cross-camera queries need 2)", self.num_cameras)
        _require(
            self.tracklets_per_id_per_camera >= 1,
            "tracklets_per_id_per_camera",
            ">= 1",
            self.tracklets_per_id_per_camera,
        )
        _require(self.min_frames >= 1, "min_frames", ">= 1", self.min_frames)
        _require(
            self.max_frames >= self.min_frames, "max_frames", f">= min_frames ({self.min_frames})", self.max_frames
        )
        _require(self.max_frames <= MAX_FRAMES, "max_frames", f"<= {MAX_FRAMES} (MARS's F001..F999)", self.max_frames)
        _require(self.height >= 32 and self.height % 2 == 0, "height", "even and >= 32", self.height)
        _require(self.width >= 16 and self.width % 2 == 0, "width", "even and >= 16", self.width)
        _require(decord_decodes_width(self.width), "width", f"a width decord decodes: {DECORD_WIDTH_HINT}", self.width)
        _require(self.fps >= 1, "fps", ">= 1", self.fps)
        _require(self.gop >= 1, "gop", ">= 1", self.gop)
        _require(0 <= self.occlusion_prob <= 1, "occlusion_prob", "in [0, 1]", self.occlusion_prob)
        _require(0 <= self.bad_frame_prob <= 1, "bad_frame_prob", "in [0, 1]", self.bad_frame_prob)
        if self.stamp_frame_index:
            minimum = _STAMP_COLUMNS * _MIN_STAMP_CELL_WIDTH
            _require(self.width >= minimum, "width", f">= {minimum} for the frame index stamp", self.width)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SyntheticSpec:
        """The spec a dict (e.g. a loaded spec.json) describes; an unknown key or a wrong type is an error naming it."""
        known = {f.name: type(f.default) for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"SyntheticSpec has no field(s) {unknown}; known fields: {sorted(known)}")
        for name, value in values.items():
            allowed = (int, float) if known[name] is float else known[name]
            if not isinstance(value, allowed) or (isinstance(value, bool) and known[name] is not bool):
                raise ValueError(f"SyntheticSpec.{name} must be of type {known[name].__name__}, got {value!r}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SyntheticTracklet:
    """One tracklet of the plan: who, which camera, which of that identity's tracklets there, and how long.

    Attributes:
        pid: identity (≥ 1).
        camid: camera, 0-based.
        index: k, the tracklet's number among this identity's tracklets in this camera (0-based).
        role: "train", "query" or "gallery".
        num_frames: length in frames.
    """

    pid: int
    camid: int
    index: int
    role: Role
    num_frames: int

    @property
    def video_path(self) -> str:
        """The video's path relative to the output directory."""
        return f"videos/{self.pid:04d}/{self.camid}/{self.pid:04d}_c{self.camid}_t{self.index}.mp4"

    @property
    def mars_track(self) -> str:
        """MARS's name of the tracklet, <pid:04>C<camid+1>T<index+1:04> (the MARS reader's id is mars/<this>)."""
        return f"{self.pid:04d}C{self.camid + 1}T{self.index + 1:04d}"

    def mars_image_name(self, frame: int) -> str:
        """MARS's name of frame `frame` (0-based): <pid:04>C<camid+1>T<index+1:04>F<frame+1:03>.jpg."""
        return f"{self.mars_track}F{frame + 1:03d}.jpg"

    def mars_image_path(self, frame: int) -> str:
        """The path of frame `frame` (0-based) relative to the MARS layout's root (out_dir/mars)."""
        split = "bbox_train" if self.role == "train" else "bbox_test"
        return f"{split}/{self.pid:04d}/{self.mars_image_name(frame)}"


# ---------------------------------------------------------------------------------------------------------------
# Plan and output files


def plan_tracklets(spec: SyntheticSpec) -> list[SyntheticTracklet]:
    """Every tracklet `generate` writes, ordered by (pid, camid, index): train identities first, then test."""
    plan: list[SyntheticTracklet] = []
    per_camera = spec.tracklets_per_id_per_camera
    for pid in range(1, spec.num_train_ids + spec.num_test_ids + 1):
        is_test = pid > spec.num_train_ids
        layout_rng = np.random.default_rng([spec.seed, _LAYOUT, pid])
        query_camid = int(layout_rng.integers(spec.num_cameras))
        query_index = int(layout_rng.integers(per_camera + 1))
        for camid in range(spec.num_cameras):
            has_query = is_test and camid == query_camid
            for index in range(per_camera + has_query):
                role: Role = "train" if not is_test else "query" if has_query and index == query_index else "gallery"
                length_rng = np.random.default_rng([spec.seed, _LAYOUT, pid, camid, index])
                num_frames = int(length_rng.integers(spec.min_frames, spec.max_frames + 1))
                plan.append(SyntheticTracklet(pid, camid, index, role, num_frames))
    return plan


def generate(
    spec: SyntheticSpec,
    out_dir: str | Path,
    mars_layout: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Render, encode and write the whole set (layout in the module docstring).

    Args:
        spec: what to generate.
        out_dir: where; must not exist yet or be an empty directory (nothing there is ever overwritten).
        mars_layout: also write the tracklets as JPEG frames in MARS's layout under out_dir/mars.
        progress: called as progress(done, total) after each tracklet.

    Returns:
        out_dir.
    """
    out_dir = Path(out_dir)
    _check_new_or_empty(out_dir, spec)
    plan = plan_tracklets(spec)
    video_truth: dict[str, list] = {}  # annotations of the videos layout, column by column
    mars_truth: dict[str, list] = {}  # and of the MARS layout: the same frames under MARS's keys
    for done, tracklet in enumerate(plan, start=1):
        frames, truth = render_annotated(spec, tracklet)
        write_video(frames, out_dir / tracklet.video_path, spec.fps, spec.gop)
        columns = frame_columns(truth.labels, truth.occluder, truth.bad, truth.garbage)
        _extend(video_truth, _video_keys(tracklet), columns)
        if mars_layout:
            _write_mars_frames(out_dir / "mars", tracklet, frames)
            _extend(mars_truth, _mars_keys(tracklet), columns)
        if progress is not None:
            progress(done, len(plan))
    if mars_layout:
        _write_mars_info(out_dir / "mars" / "info", plan)
        write_annotations(out_dir / "mars" / ANNOTATIONS_FILE, mars_truth)
    write_annotations(out_dir / ANNOTATIONS_FILE, video_truth)
    write_atomic(out_dir / SPEC_FILE, json.dumps(spec.to_dict(), indent=2) + "\n")
    _write_csv(out_dir / CSV_FILE, plan)  # last: the set is complete once it is there
    return out_dir


def read_spec(out_dir: str | Path) -> SyntheticSpec:
    """The spec of the set that `generate` wrote into `out_dir` (its spec.json).

    Raises:
        FileNotFoundError: there is no spec.json.
        ValueError: spec.json is damaged (truncated, garbled, or not a spec); the message names it.
    """
    path = Path(out_dir) / SPEC_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {out_dir} is not a set written by drsta synth")
    remedy = f"delete {out_dir} and generate the set again (the same spec gives the same set)"
    values = read_json(path, remedy)
    if not isinstance(values, dict):
        raise ValueError(f"{path} is damaged (a JSON {type(values).__name__}, not an object of spec fields); {remedy}")
    try:
        return SyntheticSpec.from_dict(values)
    except ValueError as err:
        raise ValueError(f"{path} is damaged ({err}); {remedy}") from None


def _check_new_or_empty(out_dir: Path, spec: SyntheticSpec) -> None:
    """Refuse an `out_dir` that is a file or holds anything: generating never overwrites."""
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} is a file, not a directory: generate into a new or empty directory")
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return
    if (out_dir / CSV_FILE).is_file() and (out_dir / SPEC_FILE).is_file():
        same = "the same spec" if read_spec(out_dir) == spec else "another spec"
        raise FileExistsError(
            f"{out_dir} is not empty: it holds a finished synthetic set ({same}); use it as it is, or generate "
            "into a new or empty directory"
        )
    raise FileExistsError(
        f"{out_dir} is not empty: generate into a new or empty directory (if an earlier generation there was "
        "interrupted, delete it and run again: the same spec gives the same set)"
    )


def _video_keys(tracklet: SyntheticTracklet) -> dict[str, list]:
    """The key columns of a tracklet's annotations in the videos layout: the videos reader's id, the video."""
    frames = range(tracklet.num_frames)
    return {"tracklet": [f"videos/{tracklet.video_path}"] * len(frames), "path": [tracklet.video_path] * len(frames)}


def _mars_keys(tracklet: SyntheticTracklet) -> dict[str, list]:
    """The key columns of a tracklet's annotations in the MARS layout: the MARS reader's id, each frame's JPEG."""
    frames = range(tracklet.num_frames)
    return {
        "tracklet": [f"mars/{tracklet.mars_track}"] * len(frames),
        "path": [tracklet.mars_image_path(i) for i in frames],
    }


def _extend(table: dict[str, list], keys: dict[str, list], columns: dict[str, list]) -> None:
    """Append one tracklet's rows (its keys, frame indices and frame columns) to `table`, column by column."""
    num_frames = len(columns["bad"])
    for name, values in {**keys, "frame": list(range(num_frames)), **columns}.items():
        table.setdefault(name, []).extend(values)


def _write_csv(path: Path, plan: Iterable[SyntheticTracklet]) -> None:
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["path", "pid", "camid", "role"])
    writer.writerows([t.video_path, t.pid, t.camid, t.role] for t in plan)
    write_atomic(path, text.getvalue())


def _write_mars_frames(mars_dir: Path, tracklet: SyntheticTracklet, frames: np.ndarray) -> None:
    for i, frame in enumerate(frames):
        path = mars_dir / tracklet.mars_image_path(i)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(frame).save(path, quality=95)


def _write_mars_info(info_dir: Path, plan: list[SyntheticTracklet]) -> None:
    """MARS's name lists and track tables; the test table holds queries and gallery, query_IDX picks queries."""
    info_dir.mkdir(parents=True, exist_ok=True)
    train = [t for t in plan if t.role == "train"]
    test = [t for t in plan if t.role != "train"]
    for split, tracks, key in (("train", train, "track_train_info"), ("test", test, "track_test_info")):
        names = [t.mars_image_name(i) for t in tracks for i in range(t.num_frames)]
        write_atomic(info_dir / f"{split}_name.txt", "".join(name + "\n" for name in names))
        ends = np.cumsum([t.num_frames for t in tracks])
        table = np.zeros((len(tracks), 4))
        if tracks:
            table[:, 0] = ends - [t.num_frames for t in tracks] + 1
            table[:, 1] = ends
            table[:, 2] = [t.pid for t in tracks]
            table[:, 3] = [t.camid + 1 for t in tracks]
        _write_mat(info_dir / f"tracks_{split}_info.mat", {key: table})
    query_idx = np.array([i + 1 for i, t in enumerate(test) if t.role == "query"], dtype=float)
    _write_mat(info_dir / "query_IDX.mat", {"query_IDX": query_idx})


def _write_mat(path: Path, variables: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, variables)
    write_atomic(path, buffer.getvalue())


# ---------------------------------------------------------------------------------------------------------------
# The frame index stamp


def stamp_frame_indices(frames: np.ndarray) -> np.ndarray:
    """A copy of (T, H, W, 3) uint8 frames where frame i carries i in its top strip (see `read_frame_index`)."""
    frames = np.array(frames, dtype=np.uint8)
    num_frames, height, width = frames.shape[:3]
    _check_stamp_fits(height, width)
    if num_frames > 2**STAMP_BITS:
        raise ValueError(f"the stamp holds indices below {2**STAMP_BITS}, got {num_frames} frames")
    cell_height, cell_width = _stamp_cell(height, width)
    frames[:, : _STAMP_ROWS * cell_height] = 128  # columns right of the last cell: neutral grey
    bits = (np.arange(num_frames)[:, None] >> np.arange(STAMP_BITS - 1, -1, -1)) & 1  # (T, bits), MSB first
    for bit in range(STAMP_BITS):
        row, column = divmod(bit, _STAMP_COLUMNS)
        rows = slice(row * cell_height, (row + 1) * cell_height)
        columns = slice(column * cell_width, (column + 1) * cell_width)
        frames[:, rows, columns] = (bits[:, bit] * 255)[:, None, None, None]
    return frames


def read_frame_index(frame: np.ndarray) -> int:
    """The index stamped into a frame by `stamp_frame_indices` (or `SyntheticSpec.stamp_frame_index`).

    Args:
        frame: (H, W, 3) uint8 RGB, e.g. as decoded from the video, at the size it was stamped at (the stamp's
            layout follows from the frame size, so a resized frame cannot be read).
    """
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame must be an (H, W, 3) uint8 array, got {frame.shape} {frame.dtype}")
    height, width = frame.shape[:2]
    _check_stamp_fits(height, width)
    cell_height, cell_width = _stamp_cell(height, width)
    luma = frame.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    index = 0
    for bit in range(STAMP_BITS):
        row, column = divmod(bit, _STAMP_COLUMNS)
        # The cell's inner half: H.264 smears the cell borders, never the middle.
        top, left = row * cell_height + cell_height // 4, column * cell_width + cell_width // 4
        inner = luma[top : top + max(cell_height // 2, 1), left : left + max(cell_width // 2, 1)]
        index = (index << 1) | int(inner.mean() > 127.5)
    return index


def _stamp_cell(height: int, width: int) -> tuple[int, int]:
    """(height, width) of one stamp cell: a function of the frame size alone, so decoding needs nothing else."""
    return max(4, (height // 16) // 2 * 2), width // _STAMP_COLUMNS


def _check_stamp_fits(height: int, width: int) -> None:
    cell_height, cell_width = _stamp_cell(height, width)
    if cell_width < _MIN_STAMP_CELL_WIDTH:
        raise ValueError(
            f"width {width} is too small for the frame index stamp: it needs {_STAMP_COLUMNS} cells of at least "
            f"{_MIN_STAMP_CELL_WIDTH} px, i.e. width >= {_STAMP_COLUMNS * _MIN_STAMP_CELL_WIDTH}"
        )
    if height < 4 * _STAMP_ROWS * cell_height:
        raise ValueError(f"height {height} is too small for the frame index stamp: use height >= 32")


# ---------------------------------------------------------------------------------------------------------------
# Rendering. Frames are float32 RGB in [0, 1] until the end. The figure is drawn in its own units: (u, v) with
# the head top at v = 0, the feet at v ≈ 1 and u = 0 on the body's axis; one unit is the person's height in pixels.


@dataclass(frozen=True)
class _Appearance:
    """How one identity looks and walks (drawn from the identity's own generator)."""

    skin: np.ndarray
    hair: np.ndarray
    hair_style: str  # "short", "long" or "none"
    top: np.ndarray
    top_second: np.ndarray
    top_texture: str  # "solid", "hstripes", "vstripes", "checks", "pattern", "jacket"
    bottom: np.ndarray
    bottom_second: np.ndarray
    bottom_texture: str  # "solid", "checks", "pattern"
    lower: str  # "trousers", "shorts" or "skirt"
    shoes: np.ndarray
    long_sleeves: bool
    period: float  # stripe / check period, figure units
    pattern: np.ndarray  # (6, 4) bool, the "pattern" texture
    hat: np.ndarray | None
    bag: np.ndarray | None
    bag_side: int
    backpack: np.ndarray | None
    logo: np.ndarray | None
    build: float  # person height relative to the camera's typical one
    head: float  # head radius
    shoulder: float  # shoulder half-width
    hip: float  # hip half-width
    waist: float  # v of the torso's bottom
    limb: float  # leg half-thickness (arms: 0.7 of it)
    stride_s: float  # seconds per walking cycle
    leg_swing: float  # radians
    arm_swing: float  # radians


def _appearance(seed: int, pid: int) -> _Appearance:
    rng = np.random.default_rng([seed, _IDENTITY, pid])

    def pick(palette: dict[str, tuple[tuple[float, float, float], int]]) -> np.ndarray:
        colours = np.array([rgb for rgb, _ in palette.values()])
        weights = np.array([weight for _, weight in palette.values()], dtype=float)
        colour = colours[rng.choice(len(colours), p=weights / weights.sum())] + rng.normal(0, 0.035, 3)
        return np.clip(colour, 0, 1).astype(np.float32)  # the jitter: no two identities exactly alike

    def choose(options: dict[str, float]) -> str:
        return str(rng.choice(list(options), p=list(options.values())))

    return _Appearance(
        skin=pick(_SKIN),
        hair=pick(_HAIR),
        hair_style=choose({"short": 0.6, "long": 0.3, "none": 0.1}),
        top=pick(_TOPS),
        top_second=pick(_TOPS),
        top_texture=choose(
            {"solid": 0.4, "hstripes": 0.15, "vstripes": 0.08, "checks": 0.1, "pattern": 0.12, "jacket": 0.15}
        ),
        bottom=pick(_BOTTOMS),
        bottom_second=pick(_BOTTOMS),
        bottom_texture=choose({"solid": 0.8, "checks": 0.1, "pattern": 0.1}),
        lower=choose({"trousers": 0.75, "shorts": 0.15, "skirt": 0.1}),
        shoes=pick(_SHOES),
        long_sleeves=bool(rng.random() < 0.6),
        period=float(rng.uniform(0.03, 0.07)),
        pattern=rng.random((6, 4)) < 0.5,
        hat=pick(_TOPS) if rng.random() < 0.2 else None,
        bag=pick(_TOPS) if rng.random() < 0.3 else None,
        bag_side=int(rng.choice([-1, 1])),
        backpack=pick(_TOPS) if rng.random() < 0.25 else None,
        logo=pick(_TOPS) if rng.random() < 0.2 else None,
        build=float(rng.uniform(0.9, 1.05)),
        head=float(rng.uniform(0.055, 0.068)),
        shoulder=float(rng.uniform(0.105, 0.135)),
        hip=float(rng.uniform(0.08, 0.1)),
        waist=float(rng.uniform(0.47, 0.53)),
        limb=float(rng.uniform(0.035, 0.05)),
        stride_s=float(rng.uniform(0.9, 1.25)),
        leg_swing=float(rng.uniform(0.18, 0.35)),
        arm_swing=float(rng.uniform(0.1, 0.35)),
    )


@dataclass(frozen=True)
class _Camera:
    """One camera: illumination, viewpoint, scene and sensor."""

    gain: np.ndarray  # (3,) colour cast
    brightness: float
    contrast: float
    gamma: float
    mirror: bool
    scale: float  # person height / frame height
    top: float  # where the person stands: head top as a fraction of the space left above
    wall: np.ndarray
    floor: np.ndarray
    horizon: float  # fraction of the frame height
    palette: np.ndarray  # (5, 3) colours of the scene's clutter
    noise: float  # sensor noise σ
    blur: int  # passes of a [1, 2, 1] blur: the camera's resolution


def _camera(seed: int, camid: int) -> _Camera:
    rng = np.random.default_rng([seed, _CAMERA, camid])
    return _Camera(
        gain=rng.uniform(0.85, 1.15, 3).astype(np.float32),
        brightness=float(rng.uniform(-0.08, 0.08)),
        contrast=float(rng.uniform(0.8, 1.15)),
        gamma=float(rng.uniform(0.85, 1.2)),
        mirror=bool(rng.random() < 0.5),
        scale=float(rng.uniform(0.8, 0.93)),
        top=float(rng.uniform(0.2, 0.8)),
        wall=_dull(rng, 0.15, 0.85),
        floor=_dull(rng, 0.15, 0.75),
        horizon=float(rng.uniform(0.45, 0.75)),
        palette=np.stack([_dull(rng, 0.05, 0.95) for _ in range(5)]),
        noise=float(rng.uniform(0.01, 0.035)),
        blur=int(rng.integers(0, 3)),
    )


@dataclass(frozen=True)
class TrackletTruth:
    """What is in each frame of a rendered tracklet (drsta.data.annotations describes it in full).

    Attributes:
        labels: (T, H, W) uint8, the part under each pixel of the written frame: 0 background, 1 + PARTS.index(p)
            for part p; the figure as drawn, also where the occluder hides it or a bad frame destroys it.
        occluder: (T, H, W) bool, the pixels of the object passing in front of the person.
        bad: (T,) str, "none", "blur", "out_of_crop" or "garbage".
        garbage: (T,) str, for garbage frames "blocks", "noise" or "flat"; "" for the others.
    """

    labels: np.ndarray
    occluder: np.ndarray
    bad: np.ndarray
    garbage: np.ndarray


def render_tracklet(spec: SyntheticSpec, tracklet: SyntheticTracklet) -> np.ndarray:
    """The frames of one tracklet before encoding: (T, H, W, 3) uint8, identical for the same spec and tracklet."""
    return render_annotated(spec, tracklet)[0]


def render_annotated(
    spec: SyntheticSpec, tracklet: SyntheticTracklet, plain_background: np.ndarray | None = None
) -> tuple[np.ndarray, TrackletTruth]:
    """The frames of one tracklet before encoding, (T, H, W, 3) uint8, and what is in them.

    Args:
        spec: the set's spec.
        tracklet: one tracklet of `plan_tracklets(spec)`.
        plain_background: an RGB colour in [0, 1] to draw on instead of the scene (a test aid: the person stands
            out); everything else — figure, occluder, camera, bad frames — is as in the set.
    """
    look = _appearance(spec.seed, tracklet.pid)
    camera = _camera(spec.seed, tracklet.camid)
    seeds = np.random.SeedSequence([spec.seed, _TRACKLET, tracklet.pid, tracklet.camid, tracklet.index])
    scene_rng, motion_rng, occluder_rng, bad_rng, sensor_rng = (np.random.default_rng(s) for s in seeds.spawn(5))
    num_frames, height, width = tracklet.num_frames, spec.height, spec.width

    bad = bad_rng.random(num_frames) < spec.bad_frame_prob
    bad_kind = bad_rng.integers(0, 3, num_frames)  # 0 blurred, 1 person mostly out of the crop, 2 garbage
    u, v, phase = _figure_coordinates(
        motion_rng, camera, look, num_frames, height, width, spec.fps, missed=bad & (bad_kind == 1)
    )
    if plain_background is None:
        background = _background(scene_rng, camera, height, width)
    else:
        background = np.broadcast_to(np.asarray(plain_background, dtype=np.float32), (height, width, 3))
    frames = np.repeat(background[None], num_frames, axis=0)
    labels = np.zeros((num_frames, height, width), dtype=np.uint8)
    _draw_figure(frames, labels, look, u, v, phase)
    occluder = np.zeros((num_frames, height, width), dtype=bool)
    if occluder_rng.random() < spec.occlusion_prob:
        occluder = _draw_occluder(frames, occluder_rng)
    frames = _through_camera(frames, camera, sensor_rng)
    for t in np.flatnonzero(bad & (bad_kind == 0)):
        frames[t] = _blur(frames[t : t + 1], int(bad_rng.integers(4, 9)))[0]
    garbage = np.full(num_frames, "", dtype=object)
    for t in np.flatnonzero(bad & (bad_kind == 2)):
        frames[t], garbage[t] = _garbage(bad_rng, frames[t])
    if camera.mirror:
        frames, labels, occluder = frames[:, :, ::-1], labels[:, :, ::-1], occluder[:, :, ::-1]
    frames = np.clip(frames * 255 + 0.5, 0, 255).astype(np.uint8)
    if spec.stamp_frame_index:
        frames = stamp_frame_indices(frames)
    kinds = np.where(bad, np.array(_BAD_KINDS, dtype=object)[bad_kind], "none")
    truth = TrackletTruth(
        np.ascontiguousarray(labels), np.ascontiguousarray(occluder), kinds.astype(str), garbage.astype(str)
    )
    return frames, truth


def _figure_coordinates(
    rng: np.random.Generator,
    camera: _Camera,
    look: _Appearance,
    num_frames: int,
    height: int,
    width: int,
    fps: int,
    missed: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Figure coordinates of the pixel columns, u (T, 1, W), and rows, v (T, H, 1), and the walk phase (T, 1, 1)."""
    time = np.arange(num_frames) / max(num_frames - 1, 1)  # 0 → 1 over the tracklet
    zoom = 1 + rng.uniform(-0.08, 0.08) * time  # walking towards / away from the camera
    scale = camera.scale * look.build * height * math.exp(rng.normal(0, 0.04)) * zoom  # pixels per figure unit
    direction, drift = rng.choice([-1, 1]), rng.uniform(0.1, 0.4) * width
    centre = width / 2 + rng.normal(0, 0.04 * width) + direction * drift * (time - 0.5)
    centre += rng.normal(0, 0.01 * width, num_frames)  # detector jitter
    centre += missed * rng.choice([-1, 1], num_frames) * rng.uniform(0.45, 0.7, num_frames) * width
    phase = rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.arange(num_frames) / (look.stride_s * fps)
    top = camera.top * (height - scale) + rng.normal(0, 0.02 * height) - 0.012 * scale * np.abs(np.sin(phase))
    ys = np.arange(height, dtype=np.float32)[None, :, None] + 0.5
    xs = np.arange(width, dtype=np.float32)[None, None, :] + 0.5
    scale, centre, top = (a.astype(np.float32)[:, None, None] for a in (scale, centre, top))
    return (xs - centre) / scale, (ys - top) / scale, phase.astype(np.float32)[:, None, None]


def _segment(
    u: np.ndarray, v: np.ndarray, start: tuple[float, float], angle: np.ndarray, length: float
) -> tuple[np.ndarray, np.ndarray]:
    """Distance of every point to a limb from `start`, `angle` from straight down, and where along it (0..1)."""
    du, dv = np.sin(angle) * length, np.cos(angle) * length
    along = np.clip(((u - start[0]) * du + (v - start[1]) * dv) / (length * length), 0, 1)
    return np.hypot(u - start[0] - along * du, v - start[1] - along * dv), along


def _paint(frames: np.ndarray, labels: np.ndarray, mask: np.ndarray, colour: np.ndarray, part: int) -> None:
    """Paint `colour` into frames (T, H, W, 3) where `mask`, and record `part` there in labels (T, H, W)."""
    np.copyto(frames, colour, where=mask[..., None])
    np.copyto(labels, part, where=mask)


def _textured(
    kind: str, first: np.ndarray, second: np.ndarray, u: np.ndarray, v: np.ndarray, look: _Appearance
) -> np.ndarray:
    """The colour (…, 3) of a textured garment at figure coordinates u, v (relative to the garment's corner)."""
    across, down = np.floor(u / look.period).astype(np.int64), np.floor(v / look.period).astype(np.int64)
    if kind == "solid":
        return first
    if kind == "hstripes":
        second_here = down % 2 == 1
    elif kind == "vstripes":
        second_here = across % 2 == 1
    elif kind == "checks":
        second_here = (across + down) % 2 == 1
    elif kind == "pattern":
        rows, columns = look.pattern.shape
        row = np.clip((v / (2.5 * look.period)).astype(np.int64), 0, rows - 1)
        column = np.clip((u / (2.5 * look.period)).astype(np.int64), 0, columns - 1)
        second_here = look.pattern[row, column]
    else:  # "jacket": an open jacket over a shirt
        second_here = np.abs(u - look.shoulder) < 0.3 * look.shoulder
    return np.where(second_here[..., None], second, first)


def _draw_figure(
    frames: np.ndarray, labels: np.ndarray, look: _Appearance, u: np.ndarray, v: np.ndarray, phase: np.ndarray
) -> None:
    """Paint the walking figure into frames (T, H, W, 3), back to front, and its parts into labels (T, H, W)."""
    background = frames.copy()
    neck = 2 * look.head + 0.012
    if look.backpack is not None:  # behind the body: shows beside the torso
        backpack = (np.abs(u) < look.shoulder + 0.03) & (v > neck + 0.03) & (v < neck + 0.28)
        _paint(frames, labels, backpack, look.backpack, _ACCESSORY)
    if look.hair_style == "long":
        hair = (np.abs(u) < 1.05 * look.head) & (v > look.head) & (v < neck + 0.1)
        _paint(frames, labels, hair, look.hair, _HEAD)
    _draw_legs(frames, labels, look, u, v, phase)
    half_width = look.shoulder - (look.shoulder - look.hip) * (v - neck) / (look.waist - neck)
    torso = (v > neck) & (v < look.waist) & (np.abs(u) < half_width)
    top = _textured(look.top_texture, look.top, look.top_second, u + look.shoulder, v - neck, look)
    _paint(frames, labels, torso, top, _TORSO)
    if look.logo is not None:
        logo = (np.abs(u - 0.03) < 0.035) & (np.abs(v - neck - 0.09) < 0.03)
        _paint(frames, labels, logo, look.logo, _TORSO)
    if look.backpack is not None:  # straps
        straps = torso & (np.abs(np.abs(u) - 0.55 * look.shoulder) < 0.014) & (v < neck + 0.2)
        _paint(frames, labels, straps, look.backpack, _ACCESSORY)
    _draw_arms(frames, labels, look, u, v, phase, neck)
    if look.bag is not None:  # shoulder bag at one hip, strap across the chest
        side = look.bag_side
        strap = np.abs((u * side + look.shoulder) * (look.waist - neck) - (v - neck) * 2 * look.shoulder)
        _paint(frames, labels, torso & (strap < 0.012 * (look.waist - neck) * 2), look.bag, _ACCESSORY)
        bag_u = u * side - look.shoulder - 0.02
        _paint(frames, labels, (np.abs(bag_u) < 0.055) & (np.abs(v - look.waist) < 0.065), look.bag, _ACCESSORY)
    _draw_head(frames, labels, look, u, v)
    shading = 1 - 0.25 * np.clip((u / (look.shoulder + 0.05)) ** 2, 0, 1)  # round bodies, lit from the front
    figure = np.any(frames != background, axis=-1)
    frames *= np.where(figure, shading, 1)[..., None]


def _draw_legs(
    frames: np.ndarray, labels: np.ndarray, look: _Appearance, u: np.ndarray, v: np.ndarray, phase: np.ndarray
) -> None:
    hip_v = look.waist - 0.03
    length = 0.98 - hip_v
    for side in (-1, 1):
        distance, along = _segment(u, v, (side * 0.55 * look.hip, hip_v), side * look.leg_swing * np.sin(phase), length)
        leg = distance < look.limb
        cloth = _textured(look.bottom_texture, look.bottom, look.bottom_second, u + 0.2, v - hip_v, look)
        if look.lower == "trousers":
            _paint(frames, labels, leg, cloth, _LEGS)
        else:  # bare legs below shorts / a skirt
            _paint(frames, labels, leg, look.skin, _LEGS)
            _paint(frames, labels, leg & (along < 0.4), cloth, _LEGS)
        _paint(frames, labels, leg & (along > 1 - 0.07 / length), look.shoes, _LEGS)
    if look.lower == "skirt":
        depth = (v - hip_v) / 0.22
        skirt = (depth > 0) & (depth < 1) & (np.abs(u) < look.hip + 0.05 * depth)
        cloth = _textured(look.bottom_texture, look.bottom, look.bottom_second, u + 0.2, v, look)
        _paint(frames, labels, skirt, cloth, _LEGS)


def _draw_arms(
    frames: np.ndarray,
    labels: np.ndarray,
    look: _Appearance,
    u: np.ndarray,
    v: np.ndarray,
    phase: np.ndarray,
    neck: float,
) -> None:
    length = 0.31
    for side in (-1, 1):
        angle = -side * look.arm_swing * np.sin(phase) + side * 0.08  # opposite to the leg, slightly outwards
        distance, along = _segment(u, v, (side * (look.shoulder - 0.012), neck + 0.025), angle, length)
        arm = distance < 0.7 * look.limb
        _paint(frames, labels, arm, look.skin, _TORSO)
        _paint(frames, labels, arm & (along < (0.85 if look.long_sleeves else 0.35)), look.top, _TORSO)


def _draw_head(frames: np.ndarray, labels: np.ndarray, look: _Appearance, u: np.ndarray, v: np.ndarray) -> None:
    centre = look.head + 0.004
    head = (u / (0.82 * look.head)) ** 2 + ((v - centre) / look.head) ** 2 < 1
    _paint(frames, labels, head, look.skin, _HEAD)
    if look.hair_style != "none":
        _paint(frames, labels, head & (v < centre - 0.35 * look.head), look.hair, _HEAD)
    if look.hat is not None:
        _paint(frames, labels, head & (v < centre - 0.2 * look.head), look.hat, _HEAD)
        brim = (np.abs(u) < 1.05 * look.head) & (np.abs(v - centre + 0.25 * look.head) < 0.01)
        _paint(frames, labels, brim, look.hat, _HEAD)


def _background(rng: np.random.Generator, camera: _Camera, height: int, width: int) -> np.ndarray:
    """One tracklet's background (H, W, 3): the camera's wall and floor, clutter, and blotches."""
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    horizon = camera.horizon + rng.normal(0, 0.05)
    # The crop follows the person through the scene: each tracklet sees another part of the camera's scene.
    wall = _mix(camera.wall, _dull(rng, 0.1, 0.9), rng.uniform(0.3, 0.8))
    floor = _mix(camera.floor, _dull(rng, 0.1, 0.8), rng.uniform(0.3, 0.8))
    wall = wall * (1 + rng.normal(0, 0.2) * (x - 0.5))
    floor = floor * (0.8 + 0.3 * y)
    image = np.where(y < horizon, wall, floor).astype(np.float32)
    for _ in range(rng.integers(2, 8)):  # clutter: doors, shelves, signs, people far away
        if rng.random() < 0.5:
            colour = camera.palette[rng.integers(len(camera.palette))] + rng.normal(0, 0.06, 3)
        else:
            colour = _dull(rng, 0.05, 0.95)
        top, left = rng.integers(0, height), rng.integers(-width // 4, width)
        rows = slice(top, top + int(rng.integers(height // 16, height // 2)))
        columns = slice(max(left, 0), max(left + int(rng.integers(width // 8, width // 2)), 0))
        image[rows, columns] = np.clip(colour, 0, 1) * (1 + rng.normal(0, 0.1) * (x[0, columns] - 0.5))
    blotches = _bilinear(rng.normal(0, 0.06, (4, 3, 3)).astype(np.float32), height, width)
    return np.clip(image + blotches, 0, 1)


def _draw_occluder(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An object passing in front of the person for part of the tracklet (a pole, a pedestrian, a cart).

    Returns:
        (T, H, W) bool, the occluder's pixels: a rectangle in the frames it passes through.
    """
    num_frames, height, width = frames.shape[:3]
    start = int(rng.integers(0, num_frames))
    stop = min(num_frames, start + max(2, int(num_frames * rng.uniform(0.25, 0.7))))
    half_width = rng.uniform(0.12, 0.3) * width
    top = rng.uniform(0.1, 0.7) * height if rng.random() < 0.7 else 0.0  # rises from the bottom, or full height
    direction = rng.choice([-1, 1])
    progress = (np.arange(stop - start) + 0.5) / (stop - start)
    centre = width / 2 + direction * (progress - 0.5) * (width + 2 * half_width)  # enters and leaves the frame
    xs = np.arange(width)[None, None, :] + 0.5
    ys = np.arange(height)[None, :, None] + 0.5
    mask = (np.abs(xs - centre[:, None, None]) < half_width) & (ys > top)
    colour = rng.uniform(0.05, 0.9, 3).astype(np.float32) * (0.8 + 0.4 * ys[..., None] / height)
    np.copyto(frames[start:stop], colour, where=mask[..., None])
    occluder = np.zeros(frames.shape[:3], dtype=bool)
    occluder[start:stop] = mask
    return occluder


def _through_camera(frames: np.ndarray, camera: _Camera, rng: np.random.Generator) -> np.ndarray:
    """The camera's response, lighting of the moment, optics and sensor noise."""
    frames = np.clip(frames, 0, 1) ** camera.gamma
    lighting = camera.brightness + rng.normal(0, 0.03)
    frames = ((frames - 0.5) * camera.contrast + 0.5 + lighting) * (camera.gain * rng.normal(1, 0.03, 3))
    frames = _blur(frames.astype(np.float32), camera.blur)
    return frames + camera.noise * rng.standard_normal(frames.shape, dtype=np.float32)


def _blur(frames: np.ndarray, passes: int) -> np.ndarray:
    """`passes` rounds of a separable [1, 2, 1] / 4 blur of (T, H, W, 3) frames."""
    for _ in range(passes):
        padded = np.pad(frames, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
        rows = (padded[:, :-2] + 2 * padded[:, 1:-1] + padded[:, 2:]) / 4
        frames = (rows[:, :, :-2] + 2 * rows[:, :, 1:-1] + rows[:, :, 2:]) / 4
    return frames


def _garbage(rng: np.random.Generator, frame: np.ndarray) -> tuple[np.ndarray, str]:
    """A corrupted frame, and which: random 8×8 blocks over the frame, or noise, or a flat grey/green frame."""
    height, width = frame.shape[:2]
    kind = rng.integers(0, 3)
    if kind == 0:
        blocks = rng.uniform(0, 1, (height // 8 + 1, width // 8 + 1, 3)).astype(np.float32)
        blocks = np.repeat(np.repeat(blocks, 8, axis=0), 8, axis=1)[:height, :width]
        hit = np.repeat(np.repeat(rng.random((height // 8 + 1, width // 8 + 1)) < 0.6, 8, 0), 8, 1)
        return np.where(hit[:height, :width, None], blocks, frame), _GARBAGE_KINDS[kind]
    if kind == 1:
        return rng.uniform(0, 1, frame.shape).astype(np.float32), _GARBAGE_KINDS[kind]
    flat = np.array([0.5, 0.5, 0.5] if rng.random() < 0.5 else [0.0, 0.53, 0.0], dtype=np.float32)
    return np.broadcast_to(flat, frame.shape).copy(), _GARBAGE_KINDS[kind]


def _dull(rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    """A random scene colour: brightness in [low, high], mostly desaturated (walls, floors, shelves are)."""
    grey = rng.uniform(low, high)
    return np.clip(_mix(np.full(3, grey), rng.uniform(low, high, 3), rng.uniform(0.1, 0.6)), 0, 1).astype(np.float32)


def _mix(first: np.ndarray, second: np.ndarray, weight: float) -> np.ndarray:
    return (1 - weight) * first + weight * second


def _bilinear(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear upsampling of a (h, w, C) grid to (height, width, C)."""
    rows = np.linspace(0, grid.shape[0] - 1, height)
    columns = np.linspace(0, grid.shape[1] - 1, width)
    r0 = np.minimum(rows.astype(np.int64), grid.shape[0] - 2)
    c0 = np.minimum(columns.astype(np.int64), grid.shape[1] - 2)
    wr = (rows - r0).astype(np.float32)[:, None, None]
    wc = (columns - c0).astype(np.float32)[None, :, None]
    top = grid[r0][:, c0] * (1 - wc) + grid[r0][:, c0 + 1] * wc
    bottom = grid[r0 + 1][:, c0] * (1 - wc) + grid[r0 + 1][:, c0 + 1] * wc
    return top * (1 - wr) + bottom * wr


def _require(ok: bool, name: str, expected: str, value: object) -> None:
    if not ok:
        raise SpecError(name, expected, value)
