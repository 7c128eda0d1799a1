"""The model registry from the command line: list versions and aliases, promote a version to champion.

    drsta models list [--name drsta] [--tracking-uri URI]
    drsta models promote --version 7 --manifest data/synth-ingest [--name drsta] [--tracking-uri URI]
    drsta models pull drsta@champion --out models/champion [--tracking-uri URI]

Promotion evaluates the candidate and the current champion on the same data (the manifest's query and
gallery, the standard protocol) and moves `champion` only when the candidate's mAP is higher; the old
champion keeps the alias `previous`. Both evaluations are recorded as version tags.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import ray

from drsta.data.manifest import fingerprint, read_manifest
from pipelines.evaluate import evaluate_program, registered_program
from pipelines.tracking import default_tracking_uri, get_alias_version, load_registered, set_alias

PROTOCOL = "cmc-map/same-camera-ignored/chunk-middle-frames"


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
    """Make `version` the champion if it beats the current one on `manifest`; returns what was decided."""
    candidate = evaluation_tags(name, version, manifest, tracking_uri)
    champion = get_alias_version(name, "champion", tracking_uri)
    incumbent = None if champion is None else evaluation_tags(name, champion, manifest, tracking_uri)
    promoted = champion != version and (incumbent is None or candidate > incumbent)
    if promoted:
        if champion is not None:
            set_alias(name, "previous", champion, tracking_uri)
        set_alias(name, "champion", version, tracking_uri)
    return {"version": version, "mAP": candidate, "champion": champion, "champion_mAP": incumbent,
            "promoted": promoted}  # fmt: skip


def list_models(name: str, tracking_uri: str) -> list[dict[str, Any]]:
    client = mlflow.MlflowClient(tracking_uri)
    aliases = {int(v): a for a, v in client.get_registered_model(name).aliases.items()}
    rows = []
    for version in sorted(client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version)):
        rows.append({"version": int(version.version), "alias": aliases.get(int(version.version), ""),
                     "mAP": version.tags.get("eval.mAP") or version.tags.get("val/mAP", ""),
                     "run_id": version.run_id})  # fmt: skip
    return rows


def pull(model: str, out: Path, tracking_uri: str) -> dict[str, Any]:
    """Download a registered version into `out/model` (pt2 program, config.yaml, metadata.json, state dict),
    loaded once on the way to check it; returns its metadata. `model` is NAME@ALIAS, NAME/VERSION or a models:/ URI."""
    uri = model if model.startswith("models:/") else f"models:/{model}"
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"--out {out} is not empty: pull into a new or empty directory")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as staging:
        _, metadata = load_registered(uri, tracking_uri, staging)
        downloaded = next(Path(staging).rglob("MLmodel")).parent
        shutil.move(downloaded, out / "model")
    pinned = f"models:/{metadata['registered_name']}/{metadata['version']}"
    (out / "source.json").write_text(json.dumps({"requested": uri, "model_uri": pinned, "tracking_uri": tracking_uri}))
    return metadata | {"model_uri": pinned}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["list", "promote", "pull"])
    parser.add_argument("model", nargs="?", help="pull: NAME@ALIAS or NAME/VERSION, e.g. drsta@champion")
    parser.add_argument("--out", type=Path, help="pull: directory to write the model into")
    parser.add_argument("--name", default="drsta", help="registered model name")
    parser.add_argument("--version", type=int, help="promote: the candidate version")
    parser.add_argument("--manifest", type=Path, help="promote: the data both models are evaluated on")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///mlflow.db here)")
    parser.add_argument("--address", help="Ray cluster address for the evaluations")


def run(args: argparse.Namespace) -> None:
    tracking_uri = default_tracking_uri(args.tracking_uri)
    if args.action == "list":
        for row in list_models(args.name, tracking_uri):
            print(
                f"{args.name} v{row['version']:<4} {row['alias']:<10} mAP {row['mAP'] or '-':<10} run {row['run_id']}"
            )
        return
    if args.action == "pull":
        if args.model is None or args.out is None:
            raise ValueError("models pull needs a model and --out, e.g. drsta models pull drsta@champion --out DIR")
        metadata = pull(args.model, args.out, tracking_uri)
        print(f"models: pulled {metadata['model_uri']} into {args.out / 'model'}")
        return
    if args.version is None or args.manifest is None:
        raise ValueError("models promote needs --version and --manifest (the data to compare on)")
    ray.init(address=args.address, ignore_reinit_error=True)
    try:
        outcome = promote(args.name, args.version, args.manifest, tracking_uri)
    finally:
        ray.shutdown()
    verdict = "promoted to champion" if outcome["promoted"] else "not promoted"
    print(f"models: v{args.version} mAP {outcome['mAP']:.3f} vs champion {outcome['champion']} "
          f"({outcome['champion_mAP']}): {verdict}")  # fmt: skip


if __name__ == "__main__":
    from pipelines.cli import main

    main(["models", *sys.argv[1:]])
