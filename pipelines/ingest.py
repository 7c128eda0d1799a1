"""Validate a dataset's tracklets in parallel on Ray Data and write the Parquet manifest, report and quarantine.

Idempotent and resumable: tracklets are processed in fixed chunks (by sorted id), each chunk's manifest and
quarantine parts are written atomically when the chunk completes, and a re-run skips finished chunks. A bad
tracklet is quarantined with its reason; past --max-bad-fraction the run stops with a message (exit status 1),
keeping everything it finished. Settings, the dataset and --out are checked before Ray starts; --out must be
new, empty, or an earlier ingest of the same data with the same settings (its ingest.json says which). A
synthetic set's ground truth (annotations.parquet at --root) is copied into --out with the manifest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import ray

from drsta.data.annotations import ANNOTATIONS_FILE, read_annotations
from drsta.data.datasets import READERS
from drsta.data.decode import DecodeError
from drsta.data.manifest import MANIFEST_DIR, fingerprint, read_manifest, read_part, write_part
from drsta.data.tracklet import Tracklet, to_table
from drsta.data.validate import transcode, validate
from drsta.io import read_json, write_atomic
from pipelines.commands import WorkFailed
from pipelines.console import progress_bar
from pipelines.ray_runtime import connect, disconnect

log = logging.getLogger(__name__)

QUARANTINE_DIR = "quarantine"
MARKER = "ingest.json"
QUARANTINE_SCHEMA = pa.schema([("id", pa.string()), ("uri", pa.string()), ("reason", pa.string())])
FRAME_BINS = (1, 8, 16, 32, 64, 128, 256, 512, 1024)


class TooManyBadTracklets(WorkFailed):
    """More tracklets failed validation than the allowed fraction: the work failed (not a usage error)."""


def ingest(
    dataset: str,
    root: Path,
    out: Path,
    split: int = 0,
    transcode_gop: int | None = None,
    max_bad_fraction: float = 0.05,
    chunk_size: int = 64,
    min_frames: int = 1,
    allow_outside_root: bool = False,
) -> dict[str, Any]:
    """Ingest `dataset` from `root` into `out` (see the module docstring); returns the report.

    Raises:
        ValueError, FileNotFoundError, FileExistsError: a bad setting, dataset or `out`, before any work.
        TooManyBadTracklets: past `max_bad_fraction`; the chunks finished so far are kept.
    """
    tracklets = prepare(dataset, root, out, split, transcode_gop, max_bad_fraction, chunk_size, min_frames,
                        allow_outside_root)  # fmt: skip
    return process(tracklets, out, transcode_gop, max_bad_fraction, chunk_size, min_frames)


def prepare(
    dataset: str,
    root: Path,
    out: Path,
    split: int = 0,
    transcode_gop: int | None = None,
    max_bad_fraction: float = 0.05,
    chunk_size: int = 64,
    min_frames: int = 1,
    allow_outside_root: bool = False,
) -> list[Tracklet]:
    """Check the settings, scan the dataset and claim `out` — no Ray needed; returns the tracklets by id."""
    root, out = Path(root), Path(out)
    check_settings(dataset, out, transcode_gop, max_bad_fraction, chunk_size, min_frames, allow_outside_root)
    options = {"allow_outside_root": True} if allow_outside_root else {}  # only the videos reader has it
    tracklets = sorted(READERS[dataset](root, split=split, **options), key=lambda t: t.id)
    if not tracklets:
        raise ValueError(f"the {dataset} reader found no tracklets under {root}")
    _claim_output(out, dataset, root, split, transcode_gop, chunk_size, min_frames, tracklets)
    _copy_annotations(root, out, tracklets)
    return tracklets


def check_settings(
    dataset: str,
    out: Path,
    transcode_gop: int | None,
    max_bad_fraction: float,
    chunk_size: int,
    min_frames: int,
    allow_outside_root: bool,
) -> None:
    """Raise for a setting out of range (naming its flag) or an `out` that is a file; touches no data."""
    if dataset not in READERS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {sorted(READERS)}")
    if not 0 <= max_bad_fraction <= 1:
        raise ValueError(f"--max-bad-fraction must be in [0, 1] (a fraction of the tracklets), got {max_bad_fraction}")
    if chunk_size < 1:
        raise ValueError(f"--chunk-size must be >= 1 (tracklets per resumable chunk), got {chunk_size}")
    if min_frames < 1:
        raise ValueError(f"--min-frames must be >= 1 (shorter tracklets are quarantined), got {min_frames}")
    if transcode_gop is not None and transcode_gop < 1:
        raise ValueError(f"--transcode-gop must be >= 1 (frames from one keyframe to the next), got {transcode_gop}")
    if allow_outside_root and dataset != "videos":
        raise ValueError(f"--allow-outside-root is for --dataset videos (its tracklets.csv lists paths), not {dataset}")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file: give a new directory (or an earlier ingest's, to resume it)")


def process(
    tracklets: Sequence[Tracklet],
    out: Path,
    transcode_gop: int | None = None,
    max_bad_fraction: float = 0.05,
    chunk_size: int = 64,
    min_frames: int = 1,
) -> dict[str, Any]:
    """Validate (and transcode) the tracklets `prepare` returned on Ray Data, chunk by chunk, skipping finished
    chunks; writes and returns the report."""
    out = Path(out)
    chunks = [tracklets[i : i + chunk_size] for i in range(0, len(tracklets), chunk_size)]
    # A chunk is done when both its parts are there (the quarantine part is written first, the manifest part
    # last): deleting either part of a chunk makes the next run do that chunk again.
    pending = {k: list(chunk) for k, chunk in enumerate(chunks) if not _chunk_done(out, k)}
    print(f"ingest: {len(tracklets)} tracklets in {len(chunks)} chunks, {len(chunks) - len(pending)} already done")
    if pending:
        bad_before = sum(_read_quarantine(out, k).num_rows for k in range(len(chunks)) if k not in pending)
        _run_chunks(pending, out, transcode_gop, min_frames, len(tracklets), max_bad_fraction, bad_before)
    report = _report(out, len(tracklets))
    write_atomic(out / "report.json", json.dumps(report, indent=2))
    if report["quarantined"] > max_bad_fraction * len(tracklets):
        raise TooManyBadTracklets(_too_many_message(report["quarantined"], len(tracklets), max_bad_fraction, out))
    return report


def _run_chunks(
    pending: dict[int, list[Tracklet]],
    out: Path,
    transcode_gop: int | None,
    min_frames: int,
    total: int,
    max_bad_fraction: float,
    bad_so_far: int,
) -> None:
    rows = [t.to_row() | {"chunk": k} for k, chunk in pending.items() for t in chunk]
    checked = ray.data.from_items(rows, override_num_blocks=max(1, math.ceil(len(rows) / 8))).map_batches(
        _validate_batch,
        fn_kwargs={"video_dir": str(out / "videos"), "gop": transcode_gop, "min_frames": min_frames},
        batch_size=4,
        batch_format="numpy",
        num_cpus=1,
    )
    results: dict[int, list[dict[str, Any]]] = defaultdict(list)
    with progress_bar("ingest", total=len(rows), unit="tracklets") as bar:
        for row in checked.iter_rows():
            chunk = int(row["chunk"])
            results[chunk].append(row)
            bar.update()
            if len(results[chunk]) < len(pending[chunk]):
                continue
            bad_so_far += _write_chunk(out, chunk, results.pop(chunk))
            bar.set_postfix(quarantined=bad_so_far)
            log.debug("chunk %d done (%d tracklets), %d quarantined so far", chunk, len(pending[chunk]), bad_so_far)
            if bad_so_far > max_bad_fraction * total:  # the final fraction can only be higher: stop now
                raise TooManyBadTracklets(_too_many_message(bad_so_far, total, max_bad_fraction, out))


def _validate_batch(
    batch: dict[str, np.ndarray], video_dir: str, gop: int | None, min_frames: int
) -> dict[str, np.ndarray]:
    out_rows = []
    for i in range(len(batch["id"])):
        row = {key: batch[key][i] for key in batch}
        tracklet = Tracklet.from_row({k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in row.items()})
        reason = ""
        try:
            tracklet = validate(tracklet, min_frames=min_frames)
            if gop is not None:
                tracklet = transcode(tracklet, Path(video_dir), gop)
        except DecodeError as err:
            reason = str(err)
        out_rows.append(tracklet.to_row() | {"chunk": int(row["chunk"]), "reason": reason})
    return {key: np.array([r[key] for r in out_rows], dtype=object) for key in out_rows[0]}


def _write_chunk(out: Path, chunk: int, rows: list[dict[str, Any]]) -> int:
    good = [Tracklet.from_row(r) for r in rows if not r["reason"]]
    bad = [{"id": r["id"], "uri": r["uri"], "reason": r["reason"]} for r in rows if r["reason"]]
    # Quarantine first: the manifest part is the chunk's "done" marker.
    write_part(pa.Table.from_pylist(sorted(bad, key=lambda r: r["id"]), schema=QUARANTINE_SCHEMA),
               _part(out, QUARANTINE_DIR, chunk))  # fmt: skip
    write_part(to_table(sorted(good, key=lambda t: t.id)), _part(out, MANIFEST_DIR, chunk))
    return len(bad)


def _claim_output(
    out: Path,
    dataset: str,
    root: Path,
    split: int,
    gop: int | None,
    chunk_size: int,
    min_frames: int,
    tracklets: Sequence[Tracklet],
) -> None:
    """Record what this output directory holds; refuse to mix two different ingests in one directory."""
    ids = hashlib.sha256("\n".join(t.id for t in tracklets).encode()).hexdigest()[:16]
    params = {"dataset": dataset, "root": str(Path(root).resolve()), "split": split, "transcode_gop": gop,
              "chunk_size": chunk_size, "min_frames": min_frames, "tracklet_ids": ids}  # fmt: skip
    marker = out / MARKER
    if marker.exists():
        remedy = f"{out} cannot be resumed safely: use another --out, or delete it and run drsta ingest again"
        previous = read_json(marker, remedy)
        if not isinstance(previous, dict):
            raise ValueError(f"{marker} is damaged (a JSON {type(previous).__name__}, not an object); {remedy}")
        if previous != params:
            changed = sorted(k for k in params if previous.get(k) != params[k])
            raise ValueError(
                f"{out} holds an ingest with other settings ({', '.join(changed)} differ): use another --out, "
                "or delete it to start over"
            )
    elif out.is_dir() and any(out.iterdir()):
        raise FileExistsError(
            f"--out {out} is not empty and holds no {MARKER} (it is not an earlier ingest): nothing there is "
            "overwritten; give a new or empty directory"
        )
    write_atomic(marker, json.dumps(params, indent=2))


def _copy_annotations(root: Path, out: Path, tracklets: Sequence[Tracklet]) -> None:
    """Copy the dataset's ground truth (ROOT/annotations.parquet, written by drsta synth) into `out`, atomically,
    so that the manifest carries it wherever it is moved (`drsta.data.manifest.read_manifest_annotations`); a
    dataset without one leaves none in `out` (nor a stale copy of an earlier run).

    Raises:
        ValueError: the dataset's annotations.parquet is damaged (named), before any work.
    """
    annotations = read_annotations(root)  # checked here: a damaged file is reported now, not at evaluation
    if annotations is None:
        (out / ANNOTATIONS_FILE).unlink(missing_ok=True)
        return
    write_atomic(out / ANNOTATIONS_FILE, (root / ANNOTATIONS_FILE).read_bytes())
    annotated = sum(t in annotations for t in tracklets)
    print(f"ingest: ground truth of {annotated} of {len(tracklets)} tracklets copied to {out / ANNOTATIONS_FILE}")


def _report(out: Path, total: int) -> dict[str, Any]:
    tracklets = read_manifest(out)
    quarantine = _read_parts(out, QUARANTINE_DIR, QUARANTINE_SCHEMA).to_pylist()
    lengths = np.array([t.num_frames for t in tracklets])
    histogram, _ = np.histogram(lengths, bins=[*FRAME_BINS, max(FRAME_BINS[-1] + 1, int(lengths.max(initial=0)) + 1)])
    by_role: dict[str, Counter] = defaultdict(Counter)
    for t in tracklets:
        by_role[t.role]["tracklets"] += 1
    return {
        "tracklets": total,
        "valid": len(tracklets),
        "quarantined": len(quarantine),
        "fingerprint": fingerprint(tracklets),
        "roles": {
            role: {
                "tracklets": counts["tracklets"],
                "identities": len({t.pid for t in tracklets if t.role == role}),
                "cameras": sorted({t.camid for t in tracklets if t.role == role}),
            }
            for role, counts in sorted(by_role.items())
        },
        "sources": dict(Counter(t.source for t in tracklets)),
        "frames_per_tracklet": {
            "min": int(lengths.min()) if len(lengths) else 0,
            "median": float(np.median(lengths)) if len(lengths) else 0.0,
            "max": int(lengths.max(initial=0)),
            "histogram": {f">={low}": int(n) for low, n in zip(FRAME_BINS, histogram, strict=False)},
        },
        "quarantine": quarantine,
    }


def _part(out: Path, kind: str, chunk: int) -> Path:
    return out / kind / f"part-{chunk:05d}.parquet"


def _chunk_done(out: Path, chunk: int) -> bool:
    return _part(out, QUARANTINE_DIR, chunk).exists() and _part(out, MANIFEST_DIR, chunk).exists()


def _read_quarantine(out: Path, chunk: int) -> pa.Table:
    return read_part(_part(out, QUARANTINE_DIR, chunk), QUARANTINE_SCHEMA)


def _read_parts(out: Path, kind: str, schema: pa.Schema) -> pa.Table:
    parts = sorted((out / kind).glob("part-*.parquet"))
    return pa.concat_tables([read_part(p, schema) for p in parts]) if parts else schema.empty_table()


def _too_many_message(bad: int, total: int, max_bad_fraction: float, out: Path) -> str:
    return (
        f"{bad} of {total} tracklets failed validation, more than --max-bad-fraction {max_bad_fraction:g}: see "
        f"{out / QUARANTINE_DIR} for each reason; fix the data (or raise the limit) and re-run — finished chunks "
        "are kept and skipped"
    )


def print_report(report: dict[str, Any]) -> None:
    print(f"ingest: {report['valid']} of {report['tracklets']} tracklets valid, {report['quarantined']} quarantined "
          f"(fingerprint {report['fingerprint']})")  # fmt: skip
    for role, stats in report["roles"].items():
        print(f"  {role:8s} {stats['tracklets']:6d} tracklets {stats['identities']:5d} identities "
              f"cameras {stats['cameras']}")  # fmt: skip
    frames = report["frames_per_tracklet"]
    print(f"  frames per tracklet: min {frames['min']}, median {frames['median']:g}, max {frames['max']}")
    for row in report["quarantine"][:10]:
        print(f"  quarantined {row['id']}: {row['reason']}")


def run(args: argparse.Namespace) -> None:
    tracklets = prepare(args.dataset, args.root, args.out, args.split, args.transcode_gop, args.max_bad_fraction,
                        args.chunk_size, args.min_frames, args.allow_outside_root)  # fmt: skip
    connect(args.address, "ingest", log_to_driver=False)
    try:
        report = process(tracklets, args.out, args.transcode_gop, args.max_bad_fraction, args.chunk_size,
                         args.min_frames)  # fmt: skip
        print_report(report)
    finally:
        disconnect()


if __name__ == "__main__":
    from pipelines.cli import main

    main(["ingest", *sys.argv[1:]])
