"""Embed new footage with a trained model: video files or frame folders → a Parquet file of descriptors.

Each input gives one K·D descriptor from its test-time clip (each chunk's middle frame), computed in batches on
the GPU when there is one. With --manifest the identities and cameras of an ingested set are kept, so that
`drsta search` can name who it found. Inputs that cannot be decoded are left out and listed (exit status 1);
the others are written.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from drsta.data.manifest import read_manifest
from pipelines.inference import Footage, LoadedModel, embed_footage, footage, load_model

MODEL_URI_KEY = b"drsta.model_uri"


def manifest_footage(manifest: Path, role: str) -> tuple[list[Footage], dict[str, tuple[int, int]]]:
    """The tracklets of `role` in an ingested manifest, and their (identity, camera) by path."""
    tracklets = [t for t in read_manifest(manifest) if role in ("all", t.role)]
    if not tracklets:
        raise ValueError(f"--manifest {manifest} has no {role} tracklets")
    items = [Footage(t.uri, t.source, t.frames) for t in tracklets]
    return items, {t.uri: (t.pid, t.camid) for t in tracklets}


def write_embeddings(
    path: Path, model: LoadedModel, paths: list[str], embeddings: list[np.ndarray], labels: dict[str, tuple[int, int]]
) -> None:
    """Columns path, identity, camera (null when unknown), embedding; the model's URI in the file's metadata."""
    matrix = np.stack(embeddings).astype(np.float32)
    dim = matrix.shape[1]
    table = pa.table(
        {
            "path": pa.array(paths, pa.string()),
            "identity": pa.array([labels.get(p, (None, None))[0] for p in paths], pa.int64()),
            "camera": pa.array([labels.get(p, (None, None))[1] for p in paths], pa.int64()),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1), pa.float32()), dim),
        }
    ).replace_schema_metadata({MODEL_URI_KEY: model.uri.encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    pq.write_table(table, partial)
    os.replace(partial, path)


def read_embeddings(path: Path) -> tuple[pa.Table, str]:
    """A file written by `drsta embed` and the URI of the model that wrote it."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} not found: write one with drsta embed --out {path}")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise ValueError(f"{path} is not a Parquet file of embeddings ({err}); write one with drsta embed") from None
    metadata = table.schema.metadata or {}
    if MODEL_URI_KEY not in metadata or "embedding" not in table.column_names:
        raise ValueError(f"{path} was not written by drsta embed (no embedding column or model URI)")
    return table, metadata[MODEL_URI_KEY].decode()


def run(args: argparse.Namespace) -> None:
    if bool(args.paths) == bool(args.manifest):
        raise ValueError("give either PATHS or --manifest DIR")
    if args.out.exists():
        raise FileExistsError(f"--out {args.out} exists: choose another path or remove it")
    items, labels = manifest_footage(args.manifest, args.role) if args.manifest else (footage(args.paths), {})
    model = load_model(args.model, args.tracking_uri, use_gpu=False if args.cpu else None)
    result = embed_footage(model, items, args.batch_size)
    if result.paths:
        write_embeddings(args.out, model, result.paths, result.embeddings, labels)
        print(f"embed: {len(result.paths)} tracklets → {args.out} ({model.uri}, on {model.device.type})")
    if result.failures:
        left = "left out" if result.paths else f"nothing written to {args.out}"
        sys.exit(f"embed: {len(result.failures)} inputs could not be decoded ({left}):\n  {result.failure_report()}")


if __name__ == "__main__":
    from pipelines.cli import main

    main(["embed", *sys.argv[1:]])
