"""The tracklet record every dataset reader produces, and the Parquet manifest schema it is stored with."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

import pyarrow as pa

Role = Literal["train", "query", "gallery"]
SourceKind = Literal["video", "frames"]
ROLES: tuple[Role, ...] = ("train", "query", "gallery")
SOURCE_KINDS: tuple[SourceKind, ...] = ("video", "frames")


@dataclass(frozen=True)
class Tracklet:
    """One tracklet: a person seen by one camera over consecutive frames.

    Attributes:
        id: unique within the dataset and stable across scans (used as the manifest key).
        pid: identity as the dataset numbers it (0 = MARS distractor; junk −1 is never emitted).
        camid: camera index, 0-based.
        role: "train", "query" or "gallery".
        dataset: reader name, e.g. "mars".
        split: evaluation split the role refers to (iLIDS-VID and PRID2011 have 10; others 0).
        source: "video" (one video file) or "frames" (a folder of images).
        uri: the video file, or the frame folder.
        frames: frame image paths in temporal order (by frame number); empty for videos.
        num_frames: frames in the tracklet (for videos, known after ingest; 0 before).
        height: frame height in pixels (0 until ingest has opened the tracklet).
        width: frame width in pixels (0 until ingest has opened the tracklet).
    """

    id: str
    pid: int
    camid: int
    role: Role
    dataset: str
    split: int
    source: SourceKind
    uri: str
    frames: tuple[str, ...] = field(default=())
    num_frames: int = 0
    height: int = 0
    width: int = 0

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"tracklet {self.id}: role must be one of {ROLES}, got {self.role!r}")
        if self.source not in SOURCE_KINDS:
            raise ValueError(f"tracklet {self.id}: source must be one of {SOURCE_KINDS}, got {self.source!r}")
        if self.source == "frames" and self.num_frames != len(self.frames):
            raise ValueError(f"tracklet {self.id}: num_frames={self.num_frames} but {len(self.frames)} frame paths")

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["frames"] = list(self.frames)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Tracklet:
        values = {f.name: row[f.name] for f in fields(cls)}
        values["frames"] = tuple(values["frames"] or ())
        return cls(**values)


MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("pid", pa.int64(), nullable=False),
        pa.field("camid", pa.int64(), nullable=False),
        pa.field("role", pa.string(), nullable=False),
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("split", pa.int64(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("frames", pa.list_(pa.string()), nullable=False),
        pa.field("num_frames", pa.int64(), nullable=False),
        pa.field("height", pa.int64(), nullable=False),
        pa.field("width", pa.int64(), nullable=False),
    ]
)


def to_table(tracklets: Iterable[Tracklet]) -> pa.Table:
    """Tracklets as a manifest table (MANIFEST_SCHEMA)."""
    return pa.Table.from_pylist([t.to_row() for t in tracklets], schema=MANIFEST_SCHEMA)


def from_table(table: pa.Table) -> list[Tracklet]:
    """The tracklets of a manifest table."""
    return [Tracklet.from_row(row) for row in table.to_pylist()]
