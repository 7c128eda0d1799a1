"""The manifest on disk: Parquet shards of tracklet rows (MANIFEST_SCHEMA), written atomically one part each."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from drsta.data.tracklet import MANIFEST_SCHEMA, Tracklet, from_table, to_table

MANIFEST_DIR = "manifest"


def write_part(table: pa.Table, path: Path) -> None:
    """Write one Parquet part atomically (beside it, then renamed): a crash never leaves half a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    pq.write_table(table, partial)
    partial.replace(path)


def read_manifest(root: str | Path) -> list[Tracklet]:
    """The tracklets of the manifest that `drsta ingest` wrote under `root` (sorted by id)."""
    parts = sorted((Path(root) / MANIFEST_DIR).glob("part-*.parquet"))
    if not parts:
        raise FileNotFoundError(
            f"no manifest under {root}: expected {Path(root) / MANIFEST_DIR}/part-*.parquet (run drsta ingest)"
        )
    table = pa.concat_tables([pq.read_table(part, schema=MANIFEST_SCHEMA) for part in parts])
    return sorted(from_table(table), key=lambda t: t.id)


def fingerprint(tracklets: Sequence[Tracklet]) -> str:
    """A short hash of the tracklets' identity, role, source and size: equal data gives equal fingerprints."""
    digest = hashlib.sha256()
    table = to_table(sorted(tracklets, key=lambda t: t.id)).select(
        ["id", "pid", "camid", "role", "split", "uri", "num_frames", "height", "width"]
    )
    for row in table.to_pylist():
        digest.update(repr(sorted(row.items())).encode())
    return digest.hexdigest()[:16]
