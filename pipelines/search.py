"""Find a person: rank a gallery written by `drsta embed` against query footage.

The query is embedded with the model that embedded the gallery (recorded in the gallery file; a different
--model is refused, its descriptors would not be comparable). Without --model, the gallery's model is used only
if it is a registry URI: a local directory named by a gallery file is never loaded unless --model names it.
Distances are Euclidean between L2-normalised descriptors, as in evaluation. Prints the top-k gallery
tracklets and, when the gallery knows identities, the identities ranked by their closest tracklet.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.embed import read_embeddings
from pipelines.inference import embed_footage, footage, load_model


def normalised(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


def rank(gallery: dict[str, Any], query: np.ndarray, top_k: int) -> dict[str, list[dict[str, Any]]]:
    """The `top_k` nearest gallery tracklets of one query descriptor, and the identities by nearest tracklet."""
    distances = np.linalg.norm(normalised(gallery["embedding"]) - normalised(query[None]), axis=1)
    order = np.argsort(distances, kind="stable")
    tracklets = [{"path": gallery["path"][i], "identity": gallery["identity"][i], "camera": gallery["camera"][i],
                  "distance": float(distances[i])} for i in order[:top_k]]  # fmt: skip
    identities: dict[int, float] = {}
    for i in order:
        identity = gallery["identity"][i]
        if identity is not None and identity not in identities:
            identities[identity] = float(distances[i])
    ranked = [{"identity": identity, "distance": distance} for identity, distance in identities.items()][:top_k]
    return {"tracklets": tracklets, "identities": ranked}


def registry_model(gallery_path: Path, gallery_model: str) -> str:
    """The gallery's model when --model is not given: only a registry URI (the file's metadata is not trusted to
    point at a directory on this machine, whose contents it does not vouch for)."""
    if not gallery_model.startswith("models:/"):
        raise ValueError(f"{gallery_path} was embedded with the local model {gallery_model}: a gallery file does not "
                         "choose a local model; pass --model with that directory if you trust it")  # fmt: skip
    print(f"search: using the gallery's model {gallery_model}", file=sys.stderr)
    return gallery_model


def search(gallery_path: Path, queries: list[Path], top_k: int, model_spec: str | None,
           tracking_uri: str | None) -> dict[str, dict[str, list[dict[str, Any]]]]:  # fmt: skip
    """Rank the gallery for each query; {query path: rank(...)}."""
    if top_k < 1:
        raise ValueError(f"--top-k {top_k}: must be at least 1")
    table, gallery_model = read_embeddings(gallery_path)
    items = footage(queries)
    model = load_model(model_spec or registry_model(gallery_path, gallery_model), tracking_uri)
    if model.uri != gallery_model:
        raise ValueError(f"--model {model_spec} is {model.uri}, but {gallery_path} was embedded with {gallery_model}: "
                         "search with that model, or embed the gallery again")  # fmt: skip
    gallery = table.to_pydict()
    gallery["embedding"] = np.asarray(gallery["embedding"], dtype=np.float32)
    embedded = embed_footage(model, items)
    if embedded.failures:
        raise ValueError(f"cannot decode the query:\n  {embedded.failure_report()}")
    return {path: rank(gallery, emb, top_k) for path, emb in zip(embedded.paths, embedded.embeddings, strict=True)}


def run(args: argparse.Namespace) -> None:
    for query, found in search(args.gallery, args.query, args.top_k, args.model, args.tracking_uri).items():
        print(f"search: {query}")
        print(f"  {'rank':>4}  {'distance':>8}  {'identity':>8}  {'camera':>6}  path")
        for i, hit in enumerate(found["tracklets"], 1):
            identity = "-" if hit["identity"] is None else hit["identity"]
            camera = "-" if hit["camera"] is None else hit["camera"]
            print(f"  {i:>4}  {hit['distance']:>8.4f}  {identity:>8}  {camera:>6}  {hit['path']}")
        if found["identities"]:
            ranked = ", ".join(f"{hit['identity']} ({hit['distance']:.3f})" for hit in found["identities"])
            print(f"  identities, nearest first: {ranked}")


if __name__ == "__main__":
    from pipelines.cli import main

    main(["search", *sys.argv[1:]])
