"""Validate a dataset's tracklets in parallel on Ray Data and write the Parquet manifest, report and quarantine.

    drsta ingest --dataset videos --root data/synth --out data/synth-ingest [--transcode-gop 8] [--address auto]

Idempotent and resumable: tracklets are processed in fixed chunks (by sorted id), each chunk's manifest and
quarantine parts are written atomically when the chunk completes, and a re-run skips finished chunks. A bad
tracklet is quarantined with its reason; past --max-bad-fraction the run stops with a message, keeping
everything it finished.
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
import pyarrow.parquet as pq
import ray

from drsta.data.datasets import READERS
from drsta.data.decode import DecodeError
from drsta.data.manifest import MANIFEST_DIR, fingerprint, read_manifest, write_part
from drsta.data.tracklet import Tracklet, to_table
from drsta.data.validate import transcode, validate

log = logging.getLogger(__name__)

QUARANTINE_DIR = "quarantine"
QUARANTINE_SCHEMA = pa.schema([("id", pa.string()), ("uri", pa.string()), ("reason", pa.string())])
FRAME_BINS = (1, 8, 16, 32, 64, 128, 256, 512, 1024)


class TooManyBadTracklets(ValueError):
    """More tracklets failed validation than the allowed fraction."""


def ingest(
    dataset: str,
    root: Path,
    out: Path,
    split: int = 0,
    transcode_gop: int | None = None,
    max_bad_fraction: float = 0.05,
    chunk_size: int = 64,
    min_frames: int = 1,
) -> dict[str, Any]:
    """Ingest `dataset` from `root` into `out` (see the module docstring); returns the report."""
    root, out = Path(root), Path(out)
    if dataset not in READERS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {sorted(READERS)}")
    if not 0 <= max_bad_fraction <= 1:
        raise ValueError(f"max_bad_fraction must be in [0, 1], got {max_bad_fraction}")
    tracklets = sorted(READERS[dataset](root, split=split), key=lambda t: t.id)
    if not tracklets:
        raise ValueError(f"the {dataset} reader found no tracklets under {root}")
    chunks = [tracklets[i : i + chunk_size] for i in range(0, len(tracklets), chunk_size)]
    _claim_output(out, dataset, root, split, transcode_gop, chunk_size, min_frames, tracklets)
    pending = {k: chunk for k, chunk in enumerate(chunks) if not _part(out, MANIFEST_DIR, k).exists()}
    print(f"ingest: {len(tracklets)} tracklets in {len(chunks)} chunks, {len(chunks) - len(pending)} already done")
    if pending:
        _run_chunks(pending, out, transcode_gop, min_frames, len(tracklets), max_bad_fraction)
    report = _report(out, len(tracklets))
    (out / "report.json").write_text(json.dumps(report, indent=2))
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
    bad_so_far = _count_rows(out, QUARANTINE_DIR)
    for row in checked.iter_rows():
        chunk = int(row["chunk"])
        results[chunk].append(row)
        if len(results[chunk]) < len(pending[chunk]):
            continue
        bad_so_far += _write_chunk(out, chunk, results.pop(chunk))
        print(f"ingest: chunk {chunk} done ({len(pending[chunk])} tracklets), {bad_so_far} quarantined so far")
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
    marker = out / "ingest.json"
    if marker.exists():
        previous = json.loads(marker.read_text())
        if previous != params:
            changed = sorted(k for k in params if previous.get(k) != params[k])
            raise ValueError(
                f"{out} holds an ingest with other settings ({', '.join(changed)} differ): use another --out, "
                "or delete it to start over"
            )
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(params, indent=2))


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


def _read_parts(out: Path, kind: str, schema: pa.Schema) -> pa.Table:
    parts = sorted((out / kind).glob("part-*.parquet"))
    return pa.concat_tables([pq.read_table(p, schema=schema) for p in parts]) if parts else schema.empty_table()


def _count_rows(out: Path, kind: str) -> int:
    return sum(pq.read_metadata(p).num_rows for p in (out / kind).glob("part-*.parquet"))


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, choices=sorted(READERS), help="the dataset's reader")
    parser.add_argument("--root", type=Path, required=True, help="the dataset's directory")
    parser.add_argument("--out", type=Path, required=True, help="output directory (manifest, report, quarantine)")
    parser.add_argument("--split", type=int, default=0, help="evaluation split (iLIDS-VID, PRID2011: 0-9)")
    parser.add_argument("--transcode-gop", type=int, help="re-encode frame folders as H.264 with this keyframe gap")
    parser.add_argument("--max-bad-fraction", type=float, default=0.05, help="stop past this fraction of bad ones")
    parser.add_argument("--chunk-size", type=int, default=64, help="tracklets per resumable chunk")
    parser.add_argument("--min-frames", type=int, default=1, help="quarantine tracklets shorter than this")
    parser.add_argument("--address", help="Ray cluster address (default: a local Ray started for this run)")


def run(args: argparse.Namespace) -> None:
    ray.init(address=args.address, ignore_reinit_error=True, log_to_driver=False)
    try:
        report = ingest(args.dataset, args.root, args.out, args.split, args.transcode_gop, args.max_bad_fraction,
                        args.chunk_size, args.min_frames)  # fmt: skip
        print_report(report)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    from pipelines.cli import main

    main(["ingest", *sys.argv[1:]])
