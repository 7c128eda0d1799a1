"""The manifest on disk: Parquet shards of tracklet rows (MANIFEST_SCHEMA), written atomically one part each, and
the dataset's ground truth when it has one (`drsta ingest` copies the sidecar `annotations.parquet` beside the
shards, so that a manifest moved elsewhere, e.g. to a cluster's shared storage, keeps it)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from drsta.data.annotations import ANNOTATIONS_FILE, Annotations, read_annotations
from drsta.data.tracklet import MANIFEST_SCHEMA, Tracklet, from_table, to_table
from drsta.io import write_atomic

MANIFEST_DIR = "manifest"


def write_part(table: pa.Table, path: Path) -> None:
    """Write one Parquet part atomically (`drsta.io.write_atomic`): a crash never leaves half a part."""
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
    write_atomic(path, buffer.getvalue().to_pybytes())


def read_part(path: Path, schema: pa.Schema) -> pa.Table:
    """One Parquet part as a table of `schema`.

    Raises:
        ValueError: the part is damaged or not a part of this schema; the message names it and what to do.
    """
    try:
        return pq.read_table(path, schema=schema)
    except pa.ArrowException as err:
        raise ValueError(
            f"{path} is damaged or not a part drsta ingest wrote ({err}); delete it and run drsta ingest again "
            "with the same --out: its chunk is redone, the others are kept"
        ) from None


def read_manifest(root: str | Path) -> list[Tracklet]:
    """The tracklets of the manifest that `drsta ingest` wrote under `root` (sorted by id)."""
    parts = sorted((Path(root) / MANIFEST_DIR).glob("part-*.parquet"))
    if not parts:
        raise FileNotFoundError(
            f"no manifest under {root}: expected {Path(root) / MANIFEST_DIR}/part-*.parquet (run drsta ingest)"
        )
    table = pa.concat_tables([read_part(part, MANIFEST_SCHEMA) for part in parts])
    return sorted(from_table(table), key=lambda t: t.id)


def read_manifest_annotations(root: str | Path) -> Annotations | None:
    """The ground truth that `drsta ingest` copied into the manifest under `root` (ROOT/annotations.parquet).

    Joined to the manifest's tracklets by id (`Annotations.lookup`): ingest keeps ids, and frame indices, when it
    transcodes frame folders to video.

    Returns:
        None when the dataset had no annotations.parquet (any real dataset).

    Raises:
        ValueError: the copy is damaged; the message names it.
    """
    return read_annotations(Path(root) / ANNOTATIONS_FILE)


def fingerprint(tracklets: Sequence[Tracklet]) -> str:
    """A short hash of the tracklets' identity, role, source and size: equal data gives equal fingerprints."""
    digest = hashlib.sha256()
    table = to_table(sorted(tracklets, key=lambda t: t.id)).select(
        ["id", "pid", "camid", "role", "split", "uri", "num_frames", "height", "width"]
    )
    for row in table.to_pylist():
        digest.update(repr(sorted(row.items())).encode())
    return digest.hexdigest()[:16]
