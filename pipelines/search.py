"""Find a person: rank a gallery written by `drsta embed` against query footage.

The query is embedded with the model that embedded the gallery (recorded in the gallery file; a different
--model is refused, its descriptors would not be comparable). Without --model, the gallery's model is used only
if it is a registry URI: a local directory named by a gallery file is never loaded unless --model names it.
Distances are Euclidean between L2-normalised descriptors, as in evaluation. Prints the top-k gallery
tracklets and, when the gallery knows identities, the identities ranked by their closest tracklet.

With --figure it also draws them (`drsta.viz.ranked_results_figure`): a row per query, its test-time frames then
its top-k tracklets, each read again from its path in the gallery file with the readers that embedded it and
framed green (the query's identity), red (another) or grey (unknown). A query's identity is --query-identity,
else the gallery's identity of the query's own path when the gallery holds it. A gallery tracklet that cannot be
read any more (moved, deleted, a path relative to another directory) is a tile saying why.

    drsta search --gallery gallery.parquet --query clip.mp4 --top-k 5 --figure ranks.png --query-identity 12
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from drsta import viz
from drsta.io import check_new_figure
from pipelines.embed import read_embeddings
from pipelines.inference import Footage, LoadedModel, embed_footage, footage, load_model, read_footage

FIGURE_DPI = 100


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


def search(
    gallery_path: Path,
    queries: list[Path],
    top_k: int,
    model_spec: str | None,
    tracking_uri: str | None,
    figure: Path | None = None,
    query_identity: Sequence[int] | None = None,
    force: bool = False,
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Rank the gallery for each query; {query path: rank(...)}. With `figure`, also draw them there
    (`write_figure`; `query_identity`: --query-identity, `force`: overwrite it)."""
    if top_k < 1:
        raise ValueError(f"--top-k {top_k}: must be at least 1")
    if figure is not None:
        check_new_figure(figure, force, "--figure")
    elif query_identity:
        raise ValueError("--query-identity only colours the borders of --figure: give --figure PATH too")
    identities = query_identities(query_identity, len(queries))
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
    found = {path: rank(gallery, emb, top_k) for path, emb in zip(embedded.paths, embedded.embeddings, strict=True)}
    if figure is not None:
        known = [given if given is not None else gallery_identity(gallery, item.path)
                 for given, item in zip(identities, items, strict=True)]  # fmt: skip
        write_figure(figure, model, items, found, known)
    return found


def query_identities(given: Sequence[int] | None, num_queries: int) -> list[int | None]:
    """Each query's identity from --query-identity: one per --query, or one for all; None where not given."""
    if not given:
        return [None] * num_queries
    if len(given) == 1:
        return [given[0]] * num_queries
    if len(given) != num_queries:
        raise ValueError(f"--query-identity: give one identity per --query ({num_queries}) or one for all of them, "
                         f"got {len(given)}")  # fmt: skip
    return list(given)


def gallery_identity(gallery: dict[str, Any], query_path: str) -> int | None:
    """The identity the gallery gives the query's own path (the same file or folder), or None."""
    wanted = Path(query_path).resolve()
    for path, identity in zip(gallery["path"], gallery["identity"], strict=True):
        if identity is not None and Path(path).resolve() == wanted:
            return identity
    return None


def write_figure(
    out: Path,
    model: LoadedModel,
    items: list[Footage],
    found: dict[str, dict[str, list[dict[str, Any]]]],
    identities: list[int | None],
) -> None:
    """Draw each query's row of ranked tracklets into `out` (written whole or not at all)."""
    clips: dict[str, np.ndarray | str] = {}  # a gallery tracklet in several rows is read once
    queries, matches = [], []
    for item, identity in zip(items, identities, strict=True):
        queries.append(figure_tracklet(figure_clip(item, model), identity=identity, name=item.path))
        row = []
        for hit in found[item.path]["tracklets"]:
            if hit["path"] not in clips:
                clips[hit["path"]] = gallery_clip(hit["path"], model)
            row.append(figure_tracklet(clips[hit["path"]], hit["identity"], hit["camera"], hit["distance"]))
        matches.append(row)
    fig = viz.ranked_results_figure(queries, matches)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.stem}.partial{out.suffix}")
    fig.savefig(partial, dpi=FIGURE_DPI, format=out.suffix.lower().lstrip("."))
    os.replace(partial, out)


def figure_clip(item: Footage, model: LoadedModel) -> np.ndarray | str:
    """A tracklet's test-time clip as the model sees it, (N, H, W, 3) uint8, or why it cannot be read: the figure
    then shows a placeholder rather than failing for one file."""
    try:
        return read_footage(item, model.config.model.num_frames, model.size)
    except (OSError, ValueError) as err:  # DecodeError and PIL's errors among them
        return _reason(err, item.path)


def gallery_clip(path: str, model: LoadedModel) -> np.ndarray | str:
    """`figure_clip` of a gallery tracklet by its path in the gallery file, which may have moved since."""
    try:
        (item,) = footage([path])
    except FileNotFoundError as err:
        return _reason(err, path)
    return figure_clip(item, model)


def _reason(err: Exception, path: str) -> str:
    """The last line of an error about `path`, without the path (the tile is small)."""
    return str(err).splitlines()[-1].strip().removeprefix(f"{path}: ")


def figure_tracklet(
    clip: np.ndarray | str, identity: int | None = None, camera: int | None = None, distance: float | None = None,
    name: str = "",
) -> viz.RankedTracklet:  # fmt: skip
    """A tracklet of the figure: its clip, or the reason it has none."""
    if isinstance(clip, str):
        return viz.RankedTracklet(None, identity, camera, distance, name, unreadable=clip)
    return viz.RankedTracklet(clip, identity, camera, distance, name)


def run(args: argparse.Namespace) -> None:
    found = search(args.gallery, args.query, args.top_k, args.model, args.tracking_uri, figure=args.figure,
                   query_identity=args.query_identity, force=args.force)  # fmt: skip
    for query, ranked in found.items():
        print(f"search: {query}")
        print(f"  {'rank':>4}  {'distance':>8}  {'identity':>8}  {'camera':>6}  path")
        for i, hit in enumerate(ranked["tracklets"], 1):
            identity = "-" if hit["identity"] is None else hit["identity"]
            camera = "-" if hit["camera"] is None else hit["camera"]
            print(f"  {i:>4}  {hit['distance']:>8.4f}  {identity:>8}  {camera:>6}  {hit['path']}")
        if ranked["identities"]:
            listed = ", ".join(f"{hit['identity']} ({hit['distance']:.3f})" for hit in ranked["identities"])
            print(f"  identities, nearest first: {listed}")
    if args.figure is not None:
        print(f"search: wrote {args.figure}")


if __name__ == "__main__":
    from pipelines.cli import main

    main(["search", *sys.argv[1:]])
