"""How far the Fig. 1 claims *can* hold at a model's attention grid: the ceiling of the foreground ratio and of the
distinct dominant parts over the synthetic test set's ground truth, per grid.

    python benchmarks/claims_ceiling.py --manifest data/ablation/ingest [--grids 4x2 8x4 16x8] [--frames 2000]

A spatial attention map is a softmax over the trunk's h × w cells, and the claims are measured on the cells
(drsta.claims: each cell's person and part coverage). So no map can put more mass on the person than its best
cell holds: the foreground ratio of a map entirely on the cell with the most person, pooled over frames as
drsta.claims pools it, is the ceiling for that grid; the uniform map gives 1. Likewise a part can be a model's
dominant part only if some cell holds more of it than of any other part: the number of parts that dominate at
least one cell is the ceiling of `distinct parts`. ResNet-18 at 128×64 with last stride 2 attends over 4 × 2
cells, the paper's ResNet-50 at 256×128 with last stride 1 over 16 × 8. K maps kept apart (the diversity
regularizer's aim) cannot all take the best cell: their mean foreground ratio is at best that of the K best cells.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from drsta.claims import mask_coverage
from drsta.data.annotations import PARTS
from drsta.data.manifest import read_manifest, read_manifest_annotations


def ceilings(person: np.ndarray, parts: np.ndarray, models: int = 1) -> dict[str, float]:
    """The foreground-ratio ceiling and the distinct-part ceiling of one grid.

    Args:
        person: (F, h, w) the person's coverage of each cell, per frame.
        parts: (F, P, h, w) each part's coverage of each cell.
        models: K maps that do not overlap (what the diversity regularizer drives them to): their mean foreground
            ratio is at best that of the K best cells, one map on each.
    """
    cells = person.reshape(len(person), -1)
    top = -np.sort(-cells, axis=1)[:, : min(models, cells.shape[1])]  # each frame's K best cells
    best = top.mean(axis=1).sum() / cells.mean(axis=1).sum()  # pooled over frames as drsta.claims pools it
    part_cells = parts.sum(axis=0).reshape(parts.shape[1], -1)  # (P, h·w) part coverage summed over frames
    dominating = {int(part_cells[:, cell].argmax()) for cell in range(part_cells.shape[1]) if part_cells[:, cell].any()}
    return {"foreground_ceiling": float(best), "distinct_parts_ceiling": float(len(dominating))}


def grid(text: str) -> tuple[int, int]:
    rows, _, columns = text.partition("x")
    if not (rows.isdigit() and columns.isdigit()) or int(rows) < 1 or int(columns) < 1:
        raise argparse.ArgumentTypeError(f"expected ROWSxCOLUMNS, e.g. 4x2, got {text!r}")
    return int(rows), int(columns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, required=True, help="an ingested synthetic set (with ground truth)")
    parser.add_argument("--grids", type=grid, nargs="+", default=[(4, 2), (8, 4), (16, 8)], help="h x w cell grids")
    parser.add_argument("--frames", type=int, default=2000, help="test frames sampled (evenly over tracklets)")
    parser.add_argument("--models", type=int, default=4, help="K, for the ceiling of K maps on distinct cells")
    args = parser.parse_args()
    annotations = read_manifest_annotations(args.manifest)
    if annotations is None:
        raise SystemExit(f"{args.manifest} has no ground truth (annotations.parquet): ingest a drsta synth set")
    tracklets = [t for t in read_manifest(args.manifest) if t.role in ("query", "gallery") and t in annotations]
    per_tracklet = max(1, args.frames // max(1, len(tracklets)))
    masks = []
    for tracklet in tracklets:
        count = annotations.num_frames(tracklet)
        truth = annotations.lookup(tracklet, np.linspace(0, count - 1, min(count, per_tracklet)).round().astype(int))
        masks.append((truth.person_mask, truth.part_masks))
    person = np.concatenate([m[0] for m in masks])
    parts = np.concatenate([m[1] for m in masks])
    print(f"{len(person)} frames of {len(tracklets)} test tracklets; person area {person.mean():.1%} of the frame; "
          f"{len(PARTS)} parts ({', '.join(PARTS)})")  # fmt: skip
    print(f"| grid (h × w) | cells | foreground ratio ceiling | the same, {args.models} maps on distinct cells | "
          "distinct parts ceiling |")  # fmt: skip
    print("|---|---|---|---|---|")
    for rows, columns in args.grids:
        person_cells, part_cells = mask_coverage(person, (rows, columns)), mask_coverage(parts, (rows, columns))
        one, disjoint = ceilings(person_cells, part_cells), ceilings(person_cells, part_cells, args.models)
        print(f"| {rows} × {columns} | {rows * columns} | {one['foreground_ceiling']:.2f} | "
              f"{disjoint['foreground_ceiling']:.2f} | {one['distinct_parts_ceiling']:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
