"""Per-frame ground truth of a synthetic set: where the person and their parts are, occlusion, bad frames.

`drsta synth` knows, for every frame it renders, what is in it. It writes that truth as a sidecar Parquet file
at the root of each dataset layout it writes, so that claims about what the model attends to (drsta.claims)
can be measured; the sidecar is optional everywhere — a dataset without one simply has no annotations
(`read_annotations` returns None).

    <synth out>/annotations.parquet          the videos layout (dataset root = the synth output folder)
    <synth out>/mars/annotations.parquet     the MARS layout (dataset root = <synth out>/mars), with --mars-layout

One row per frame of every tracklet (ANNOTATIONS_SCHEMA):

    tracklet       the tracklet's id exactly as the dataset reader forms it, hence as the manifest stores it
                   (`Tracklet.id`): "videos/<path>" for the videos layout (path as listed in tracklets.csv,
                   e.g. "videos/videos/0001/0/0001_c0_t0.mp4"), "mars/<pid4>C<cam>T<k4>" for the MARS layout
    path           the file relative to the dataset root: the video ("videos/0001/0/0001_c0_t0.mp4", the
                   tracklets.csv path) or the frame's JPEG ("bbox_train/0001/0001C1T0001F001.jpg")
    frame          0-based frame index within the tracklet: as decoded from the video; for MARS frames, the
                   position in frame-number order (F001 is frame 0), which is `Tracklet.frames`' order
    height, width  the written frame's size in pixels; boxes and labels are in these pixels
    person_box     (x0, y0, x1, y1): the person covers pixel columns x0 ≤ x < x1 and rows y0 ≤ y < y1 (pixel
                   edges, so a box scales to a resized frame by multiplying x by W/width and y by H/height);
                   NaN ×4 when no pixel of the person is in the frame
    head_box, torso_box, legs_box, accessory_box
                   the same per part (PARTS); NaN when the part is absent (no accessory) or out of the frame
    occluder_box   the object passing in front of the person (a rectangle), NaN when there is none
    occlusion      the fraction of the person's pixels hidden by the occluder, 0..1 (0 when no person pixels)
    bad            BAD_KINDS: "none", "blur" (the whole frame blurred), "out_of_crop" (the person shifted by
                   0.45–0.7 of the width, mostly out of the crop), "garbage" (decoder garbage)
    garbage        for bad == "garbage", GARBAGE_KINDS: "blocks" (random 8×8 blocks over 60 % of the frame),
                   "noise" (uniform noise), "flat" (a flat grey or green frame); "" otherwise
    labels         the part of every pixel, an (height, width) uint8 map encoded as PNG: 0 background,
                   1 + PARTS.index(part) for the person's pixels

Labels and boxes describe the figure as drawn: the person's full extent in the frame even where an occluder
hides it (`FrameAnnotations.visible_mask` removes the occluder) or a bad frame destroys it. The camera's blur
(≤ 2 passes of a 3-tap filter) and H.264 spread edges by a pixel or two beyond them. The frame index stamp of
`SyntheticSpec.stamp_frame_index` (a test aid) is drawn over the top strip and not annotated.

Parts: head (with hair and a hat), torso (with arms, sleeves and a logo), legs (with a skirt and shoes),
accessory (a shoulder bag or a backpack, straps included, so its box may span the torso; its mask does not).

Joining a manifest: `Annotations.lookup(tracklet, frames)` takes a manifest `Tracklet` (joined on its id), a
tracklet id, or a video path (relative to the dataset root, or absolute under it).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from drsta.data.tracklet import Tracklet
from drsta.io import write_atomic

ANNOTATIONS_FILE = "annotations.parquet"
PARTS = ("head", "torso", "legs", "accessory")  # label value of part p: 1 + PARTS.index(p)
BAD_KINDS = ("none", "blur", "out_of_crop", "garbage")
GARBAGE_KINDS = ("", "blocks", "noise", "flat")

_BOX = pa.list_(pa.float32(), 4)
ANNOTATIONS_SCHEMA = pa.schema(
    [
        pa.field("tracklet", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("frame", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("person_box", _BOX, nullable=False),
        *(pa.field(f"{part}_box", _BOX, nullable=False) for part in PARTS),
        pa.field("occluder_box", _BOX, nullable=False),
        pa.field("occlusion", pa.float32(), nullable=False),
        pa.field("bad", pa.string(), nullable=False),
        pa.field("garbage", pa.string(), nullable=False),
        pa.field("labels", pa.binary(), nullable=False),
    ]
)


# ---------------------------------------------------------------------------------------------------------------
# Writing (drsta.data.synthetic)


def encode_labels(labels: np.ndarray) -> bytes:
    """An (H, W) uint8 label map as PNG bytes (a few hundred bytes for a person on a background)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def decode_labels(data: bytes) -> np.ndarray:
    """The (H, W) uint8 label map `encode_labels` encoded."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image, dtype=np.uint8)


def boxes_of(masks: np.ndarray) -> np.ndarray:
    """(T, 4) float32 boxes (x0, y0, x1, y1), pixel edges, of (T, H, W) bool masks; NaN where a mask is empty."""
    rows, columns = masks.any(axis=2), masks.any(axis=1)  # (T, H), (T, W)
    boxes = np.full((len(masks), 4), np.nan, dtype=np.float32)
    some = rows.any(axis=1)
    boxes[some, 0] = columns[some].argmax(axis=1)
    boxes[some, 1] = rows[some].argmax(axis=1)
    boxes[some, 2] = columns.shape[1] - columns[some, ::-1].argmax(axis=1)
    boxes[some, 3] = rows.shape[1] - rows[some, ::-1].argmax(axis=1)
    return boxes


def frame_columns(
    labels: np.ndarray, occluder: np.ndarray, bad: Sequence[str], garbage: Sequence[str]
) -> dict[str, list]:
    """The columns of ANNOTATIONS_SCHEMA that depend on the frames only (not on the keys) of one tracklet.

    Args:
        labels: (T, H, W) uint8 part labels of the written frames (0 background).
        occluder: (T, H, W) bool, the occluder's pixels.
        bad: T entries of BAD_KINDS.
        garbage: T entries of GARBAGE_KINDS.
    """
    assert set(bad) <= set(BAD_KINDS) and set(garbage) <= set(GARBAGE_KINDS)
    num_frames, height, width = labels.shape
    person = labels > 0
    area = person.sum(axis=(1, 2))
    hidden = (person & occluder).sum(axis=(1, 2))
    columns: dict[str, list] = {
        "height": [height] * num_frames,
        "width": [width] * num_frames,
        "person_box": boxes_of(person).tolist(),
    }
    for value, part in enumerate(PARTS, start=1):
        columns[f"{part}_box"] = boxes_of(labels == value).tolist()
    columns["occluder_box"] = boxes_of(occluder).tolist()
    columns["occlusion"] = np.where(area > 0, hidden / np.maximum(area, 1), 0.0).tolist()
    columns["bad"], columns["garbage"] = list(bad), list(garbage)
    columns["labels"] = [encode_labels(frame) for frame in labels]
    return columns


def write_annotations(path: str | Path, columns: dict[str, list]) -> Path:
    """Write ANNOTATIONS_SCHEMA columns to `path` as Parquet, atomically (`drsta.io.write_atomic`)."""
    table = pa.Table.from_pydict(columns, schema=ANNOTATIONS_SCHEMA)
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
    return write_atomic(path, buffer.getvalue().to_pybytes())


# ---------------------------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class FrameAnnotations:
    """The ground truth of F frames of one tracklet, in pixels of an image of `size` (boxes scaled, labels resized).

    Attributes:
        size: (H, W) of the image the boxes and labels refer to.
        person_box: (F, 4) float32 x0, y0, x1, y1 (pixel edges), NaN where the person is not in the frame.
        part_boxes: (F, P, 4) float32, parts in PARTS order, NaN where the part is absent.
        occluder_box: (F, 4) float32, NaN where there is no occluder.
        labels: (F, H, W) uint8, 0 background, 1 + PARTS.index(part) on the person (nearest-neighbour resized).
        occlusion: (F,) float32 fraction of the person hidden by the occluder, 0..1.
        bad: (F,) str, one of BAD_KINDS.
        garbage: (F,) str, one of GARBAGE_KINDS.
    """

    size: tuple[int, int]
    person_box: np.ndarray
    part_boxes: np.ndarray
    occluder_box: np.ndarray
    labels: np.ndarray
    occlusion: np.ndarray
    bad: np.ndarray
    garbage: np.ndarray

    @property
    def person_mask(self) -> np.ndarray:
        """(F, H, W) bool, the person's pixels (also those an occluder hides)."""
        return self.labels > 0

    @property
    def part_masks(self) -> np.ndarray:
        """(F, P, H, W) bool, each part's pixels; the parts partition the person mask."""
        return self.labels[:, None] == np.arange(1, len(PARTS) + 1, dtype=np.uint8)[None, :, None, None]

    @property
    def occluder_mask(self) -> np.ndarray:
        """(F, H, W) bool, the occluder's pixels (its box, which is exact: the occluder is a rectangle)."""
        height, width = self.size
        ys = np.arange(height)[None, :, None] + 0.5
        xs = np.arange(width)[None, None, :] + 0.5
        x0, y0, x1, y1 = (self.occluder_box[:, i, None, None] for i in range(4))
        return (xs > x0) & (xs < x1) & (ys > y0) & (ys < y1)  # NaN compares False: no occluder, no pixels

    @property
    def visible_mask(self) -> np.ndarray:
        """(F, H, W) bool, the person's pixels not hidden by the occluder."""
        return self.person_mask & ~self.occluder_mask


class Annotations:
    """The annotations of one dataset layout (one sidecar), looked up by tracklet and frame indices."""

    def __init__(self, table: pa.Table, root: Path) -> None:
        """Use `read_annotations`; `table` holds ANNOTATIONS_SCHEMA rows, `root` is the dataset root.

        Raises:
            ValueError: a tracklet's frames are not 0, 1, …, T − 1 (each once).
        """
        self.root = root
        ids, frames = table["tracklet"].to_pylist(), table["frame"].to_pylist()
        order = sorted(range(len(ids)), key=lambda row: (ids[row], frames[row]))
        table = table.take(pa.array(order, type=pa.int64()))
        self._rows: dict[str, tuple[int, int]] = {}  # tracklet id -> its rows [start, end), in frame order
        for row, i in enumerate(order):
            start = self._rows.get(ids[i], (row, row))[0]
            if frames[i] != row - start:
                raise ValueError(
                    f"{root / ANNOTATIONS_FILE}: tracklet {ids[i]!r} lacks or repeats frame {row - start} (its rows "
                    "must hold frames 0, 1, … once each); delete the file or generate the set again"
                )
            self._rows[ids[i]] = (start, row + 1)
        paths = table["path"].to_pylist()
        # A video's path names its tracklet (a MARS tracklet has one path per frame, none for the whole).
        self._by_path = {
            paths[start]: key for key, (start, end) in self._rows.items() if paths[start] == paths[end - 1]
        }
        self._size = np.stack([table["height"].to_numpy(), table["width"].to_numpy()], axis=1)  # (rows, 2)
        self._person_box = _boxes(table["person_box"])
        self._part_boxes = np.stack([_boxes(table[f"{part}_box"]) for part in PARTS], axis=1)
        self._occluder_box = _boxes(table["occluder_box"])
        self._occlusion = table["occlusion"].to_numpy()
        self._bad = np.asarray(table["bad"].to_pylist(), dtype=str)
        self._garbage = np.asarray(table["garbage"].to_pylist(), dtype=str)
        self._labels = table["labels"].to_pylist()  # PNG bytes, decoded on lookup

    @property
    def tracklets(self) -> list[str]:
        """The annotated tracklet ids, sorted."""
        return list(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, tracklet: object) -> bool:
        return isinstance(tracklet, str | Tracklet) and self._key(tracklet) is not None

    def num_frames(self, tracklet: str | Tracklet) -> int:
        start, end = self._rows[self.key(tracklet)]
        return end - start

    def key(self, tracklet: str | Tracklet) -> str:
        """The annotated tracklet id that `tracklet` names (see `lookup`).

        Raises:
            KeyError: `tracklet` is not annotated here.
        """
        key = self._key(tracklet)
        if key is None:
            name = tracklet.id if isinstance(tracklet, Tracklet) else tracklet
            raise KeyError(
                f"tracklet {name!r} has no annotations in {self.root / ANNOTATIONS_FILE}; expected a tracklet id "
                f"such as {next(iter(self._rows), '(none: the file is empty)')!r} or a video path under {self.root}"
            )
        return key

    def lookup(
        self, tracklet: str | Tracklet, frames: Sequence[int] | np.ndarray, size: tuple[int, int] | None = None
    ) -> FrameAnnotations:
        """The ground truth of some frames of one tracklet, in pixels of frames resized to `size`.

        Args:
            tracklet: a manifest `Tracklet` (joined on `Tracklet.id`, else on its video `uri`), a tracklet id
                ("videos/videos/0001/0/…" or "mars/0001C1T0001"), or a video's path relative to the dataset
                root (as in tracklets.csv) or absolute under it.
            frames: 0-based frame indices within the tracklet (repeats allowed, e.g. a short tracklet's clip).
            size: (H, W) the frames were resized to before the model (the whole frame, as drsta.data.decode
                does); None keeps the written frame size.

        Raises:
            KeyError: the tracklet is not annotated here.
            IndexError: a frame index outside the tracklet.
        """
        key = self.key(tracklet)
        start, end = self._rows[key]
        frames = np.asarray(frames, dtype=np.int64).reshape(-1)
        if frames.size and (frames.min() < 0 or frames.max() >= end - start):
            raise IndexError(
                f"tracklet {key!r} has {end - start} annotated frames (0..{end - start - 1}), got {frames}"
            )
        rows = start + frames
        height, width = (int(n) for n in self._size[start])
        size = (height, width) if size is None else (int(size[0]), int(size[1]))
        scale = np.array([size[1] / width, size[0] / height] * 2, dtype=np.float32)  # x, y, x, y
        labels = np.zeros((len(rows), height, width), dtype=np.uint8)
        for i, row in enumerate(rows):
            labels[i] = decode_labels(self._labels[row])
        return FrameAnnotations(
            size=size,
            person_box=self._person_box[rows] * scale,
            part_boxes=self._part_boxes[rows] * scale,
            occluder_box=self._occluder_box[rows] * scale,
            labels=_resize_nearest(labels, size),
            occlusion=self._occlusion[rows],
            bad=self._bad[rows],
            garbage=self._garbage[rows],
        )

    def _key(self, tracklet: str | Tracklet) -> str | None:
        names = [tracklet.id, tracklet.uri] if isinstance(tracklet, Tracklet) else [str(tracklet)]
        for name in names:
            if name in self._rows:
                return name
            path = Path(name)
            if path.is_absolute():
                resolved, root = path.resolve(), self.root.resolve()
                if not resolved.is_relative_to(root):
                    continue
                name = resolved.relative_to(root).as_posix()
            if name in self._by_path:
                return self._by_path[name]
        return None


def read_annotations(root_or_path: str | Path) -> Annotations | None:
    """The annotations of the dataset at `root_or_path` (its annotations.parquet, or that file itself).

    Returns:
        None when there is no annotations.parquet: a dataset without ground truth (any real one).

    Raises:
        ValueError: the file is damaged or not an annotations file; the message names it.
    """
    path = Path(root_or_path)
    if path.is_dir():
        path = path / ANNOTATIONS_FILE
    if not path.is_file():
        return None
    try:
        table = pq.read_table(path, schema=ANNOTATIONS_SCHEMA)
    except (pa.ArrowException, OSError) as err:
        raise ValueError(
            f"{path} is damaged or not an annotations file drsta synth wrote ({err}); delete it (the dataset works "
            "without it) or generate the set again"
        ) from None
    return Annotations(table, path.parent)


def _boxes(column: pa.ChunkedArray) -> np.ndarray:
    """(rows, 4) float32 of a fixed-size-list box column."""
    flat = pa.concat_arrays([chunk.flatten() for chunk in column.chunks]) if column.num_chunks else pa.array([])
    return flat.to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, 4)


def _resize_nearest(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(F, h, w) label maps resized to (F, H, W): each output pixel takes the label under its centre."""
    height, width = labels.shape[1:]
    if (height, width) == size:
        return labels
    rows = ((np.arange(size[0]) + 0.5) * height / size[0]).astype(np.int64)
    columns = ((np.arange(size[1]) + 0.5) * width / size[1]).astype(np.int64)
    return labels[:, rows][:, :, columns]
