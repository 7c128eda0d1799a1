"""The model registry from the command line: list versions and aliases, promote a version to champion.

Promotion evaluates the candidate and the current champion on the same data (the manifest's query and
gallery, the standard protocol) and moves `champion` only when the candidate's mAP is higher; the old
champion keeps the alias `previous`. Both evaluations are recorded as version tags, and every promotion is
kept in the registered model's history (`models history`). Two promotions never interleave: the alias moves
under a registry-wide lock, after checking that the champion compared against is still the champion.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, RESOURCE_DOES_NOT_EXIST, ErrorCode

from drsta.data.manifest import fingerprint, read_manifest
from drsta.io import write_atomic
from pipelines.evaluate import evaluate_program, registered_program
from pipelines.model_files import load_model_dir
from pipelines.ray_runtime import connect, disconnect
from pipelines.tracking import (
    LOCK_SUFFIX,
    download_registered,
    existing_tracking_uri,
    get_alias_version,
    get_registered_model,
    set_alias,
)
from pipelines.uris import redact_credentials

log = logging.getLogger(__name__)

PROTOCOL = "cmc-map/same-camera-ignored/chunk-middle-frames"
HISTORY_TAG = "promotion."  # registered-model tags promotion.000001, promotion.000002, ...: one per promotion
ATTEMPTS = 3


def evaluation_tags(name: str, version: int, manifest: Path, tracking_uri: str) -> float:
    """Evaluate a registered version on `manifest`; record mAP, data fingerprint and protocol as its tags."""
    program, cfg = registered_program(f"models:/{name}/{version}", tracking_uri)
    result = evaluate_program(program, cfg, manifest)
    client = mlflow.MlflowClient(tracking_uri)
    tags = {"eval.mAP": f"{result.mAP:.6f}", "eval.rank1": f"{result.cmc[0]:.6f}",
            "eval.data_fingerprint": fingerprint(read_manifest(manifest)), "eval.protocol": PROTOCOL}  # fmt: skip
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, value)
    return result.mAP


def promote(name: str, version: int, manifest: Path, tracking_uri: str) -> dict[str, Any]:
    """Make `version` the champion if it beats the current one on `manifest`; returns what was decided.

    The evaluations run without the lock (they take minutes); the decision and the alias move run under it,
    and only if the champion is still the one evaluated: if another promotion moved it meanwhile, the new
    champion is evaluated and compared instead.
    """
    client = mlflow.MlflowClient(tracking_uri)
    get_registered_model(client, name)  # a clear error for an unknown name, before any evaluation
    candidate = evaluation_tags(name, version, manifest, tracking_uri)
    for _ in range(ATTEMPTS):
        champion = get_alias_version(name, "champion", tracking_uri)
        compare = champion is not None and champion != version
        incumbent = evaluation_tags(name, champion, manifest, tracking_uri) if compare else None
        with promotion_lock(client, name):
            if get_alias_version(name, "champion", tracking_uri) != champion:
                continue  # another promotion moved the champion while we evaluated: compare with the new one
            promoted = champion != version and (incumbent is None or candidate > incumbent)
            if promoted:
                if champion is not None:
                    set_alias(name, "previous", champion, tracking_uri)
                set_alias(name, "champion", version, tracking_uri)
                record_promotion(client, name, version, candidate, champion, incumbent, manifest)
        return {"version": version, "mAP": candidate, "champion": champion, "champion_mAP": incumbent,
                "promoted": promoted}  # fmt: skip
    raise RuntimeError(f"the champion of {name!r} moved {ATTEMPTS} times while v{version} was compared with it; "
                       "run drsta models promote again when the other promotions are done")  # fmt: skip


@contextlib.contextmanager
def promotion_lock(
    client: mlflow.MlflowClient, name: str, timeout_s: float = 900.0, stale_s: float = 3600.0
) -> Iterator[None]:
    """Hold the registry-wide promotion lock of `name` for the block.

    The lock is a registered model `NAME.promotion-lock`: creating a registered model is atomic in every
    MLflow store (a unique name), so exactly one promoter gets it, on any host that reaches the registry. A
    lock older than `stale_s` (its holder died) is broken with a warning.
    """
    lock = f"{name}{LOCK_SUFFIX}"
    deadline = time.monotonic() + timeout_s
    holder = f"{socket.gethostname()} pid {os.getpid()}"
    while True:
        try:
            client.create_registered_model(
                lock, tags={"holder": holder, "since": f"{time.time():.3f}"},
                description=f"held while drsta promotes a version of {name}; delete it if no promotion runs",
            )  # fmt: skip
            break
        except MlflowException as err:
            if err.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                raise
        held = _lock_holder(client, lock)
        if held is not None and time.time() - held[1] > stale_s:
            log.warning("breaking the promotion lock %s held by %s for %.0f s", lock, held[0], time.time() - held[1])
            _delete_lock(client, lock)
        elif time.monotonic() > deadline:
            who = held[0] if held else "unknown holder"
            raise TimeoutError(f"another promotion of {name!r} holds the registered model {lock!r} ({who}); "
                               "if none runs, delete that model")  # fmt: skip
        else:
            time.sleep(0.5)
    try:
        yield
    finally:
        _delete_lock(client, lock)


def _lock_holder(client: mlflow.MlflowClient, lock: str) -> tuple[str, float] | None:
    try:
        tags = client.get_registered_model(lock).tags
    except MlflowException as err:
        if err.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            raise
        return None  # released meanwhile
    return tags.get("holder", "unknown holder"), float(tags.get("since", 0))


def _delete_lock(client: mlflow.MlflowClient, lock: str) -> None:
    try:
        client.delete_registered_model(lock)
    except MlflowException as err:
        if err.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            raise


def record_promotion(
    client: mlflow.MlflowClient, name: str, version: int, mAP: float, replaced: int | None,
    replaced_mAP: float | None, manifest: Path,
) -> None:  # fmt: skip
    """Append one entry to the registered model's promotion history (a tag per promotion, never overwritten)."""
    number = len(promotion_history(client, name)) + 1
    entry = {"version": version, "mAP": round(mAP, 6), "replaced": replaced,
             "replaced_mAP": None if replaced_mAP is None else round(replaced_mAP, 6),
             "data_fingerprint": fingerprint(read_manifest(manifest)),
             "at": datetime.now(UTC).isoformat(timespec="seconds"), "by": socket.gethostname()}  # fmt: skip
    client.set_registered_model_tag(name, f"{HISTORY_TAG}{number:06d}", json.dumps(entry))


def promotion_history(client: mlflow.MlflowClient, name: str) -> list[dict[str, Any]]:
    """Every promotion of `name`, oldest first."""
    tags = get_registered_model(client, name).tags
    return [json.loads(tags[key]) for key in sorted(tags) if key.startswith(HISTORY_TAG)]


def list_models(name: str, tracking_uri: str) -> list[dict[str, Any]]:
    client = mlflow.MlflowClient(tracking_uri)
    aliases: dict[int, list[str]] = {}
    for alias, version in get_registered_model(client, name).aliases.items():
        aliases.setdefault(int(version), []).append(alias)
    rows = []
    for version in sorted(client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version)):
        rows.append({"version": int(version.version), "alias": ",".join(sorted(aliases.get(int(version.version), []))),
                     "mAP": version.tags.get("eval.mAP") or version.tags.get("val/mAP", ""),
                     "run_id": version.run_id})  # fmt: skip
    return rows


def pull(model: str, out: Path, tracking_uri: str) -> dict[str, Any]:
    """Download a registered version into `out/model` (pt2 program, config.yaml, metadata.json, state dict),
    checked and loaded once on the way; returns its metadata. `model` is NAME@ALIAS, NAME/VERSION or a
    models:/ URI. A failed pull leaves `out` as it found it (absent, or empty)."""
    uri = model if model.startswith("models:/") else f"models:/{model}"
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file: pull into a new or empty directory")
    if out.is_dir() and any(out.iterdir()):
        raise FileExistsError(f"--out {out} is not empty: pull into a new or empty directory")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(dir=out) as staging:
            local, identity = download_registered(uri, tracking_uri, staging)
            _, metadata = load_model_dir(local, uri)  # refuses anything but drsta's pt2 flavour
            shutil.move(local, out / "model")
        pinned = f"models:/{identity['registered_name']}/{identity['version']}"
        source = {"requested": uri, "model_uri": pinned, "tracking_uri": redact_credentials(tracking_uri)}
        write_atomic(out / "source.json", json.dumps(source))
    except BaseException:
        shutil.rmtree(out / "model", ignore_errors=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    return metadata | identity | {"model_uri": pinned}


def run(args: argparse.Namespace) -> None:
    tracking_uri = existing_tracking_uri(args.tracking_uri)
    if args.action == "history":
        for entry in promotion_history(mlflow.MlflowClient(tracking_uri), args.name):
            replaced = "none" if entry["replaced"] is None else f"v{entry['replaced']} ({entry['replaced_mAP']})"
            print(f"{entry['at']}  {args.name} v{entry['version']} (mAP {entry['mAP']}) replaced {replaced} "
                  f"on {entry['by']}")  # fmt: skip
        return
    if args.action == "list":
        for row in list_models(args.name, tracking_uri):
            print(
                f"{args.name} v{row['version']:<4} {row['alias']:<10} mAP {row['mAP'] or '-':<10} run {row['run_id']}"
            )
        return
    if args.action == "pull":
        metadata = pull(args.model, args.out, tracking_uri)
        print(f"models: pulled {metadata['model_uri']} into {args.out / 'model'}")
        return
    connect(args.address, "models")
    try:
        outcome = promote(args.name, args.version, args.manifest, tracking_uri)
    finally:
        disconnect()
    verdict = "promoted to champion" if outcome["promoted"] else "not promoted"
    print(f"models: v{args.version} mAP {outcome['mAP']:.3f} vs champion {outcome['champion']} "
          f"({outcome['champion_mAP']}): {verdict}")  # fmt: skip


if __name__ == "__main__":
    from pipelines.cli import main

    main(["models", *sys.argv[1:]])
