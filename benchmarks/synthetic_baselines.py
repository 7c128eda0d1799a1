"""Retrieval baselines on the synthetic benchmark: colour histograms, an untrained DRSTA, and chance.

    python benchmarks/synthetic_baselines.py [--ids 60] [--cameras 3] [--seed 0] [--out DIR]

Generates `--ids` train and `--ids` test identities with `drsta.data.synthetic` (128×64 frames; about a minute
on a 2-core CPU at the defaults), decodes the test tracklets with decord and ranks the gallery for every query
with `drsta.metrics.evaluate` (same-identity same-camera gallery items ignored). None of the methods learns
anything: they say how hard the set is before training. The untrained model runs on the frames as generated.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from matplotlib.colors import rgb_to_hsv

# decord2 dlopens every nvidia/*/lib/*.so it finds with RTLD_GLOBAL, libnvblas among them, which then takes over
# sgemm: imported before torch, torch's CPU matmuls go to NVBLAS and segfault on a machine without a GPU.
# isort: split
import decord

from drsta.data.sampling import evaluation_indices
from drsta.data.synthetic import SyntheticSpec, generate
from drsta.metrics import evaluate
from drsta.model import drsta_small

NUM_FRAMES = 6  # N of the untrained model's clips


def read_split(out_dir: Path) -> dict[str, dict[str, list]]:
    """tracklets.csv's query and gallery rows: {"query": {"path": [...], "pid": [...], "camid": [...]}, ...}."""
    split: dict[str, dict[str, list]] = {role: {"path": [], "pid": [], "camid": []} for role in ("query", "gallery")}
    with (out_dir / "tracklets.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            if row["role"] in split:
                split[row["role"]]["path"].append(out_dir / row["path"])
                split[row["role"]]["pid"].append(int(row["pid"]))
                split[row["role"]]["camid"].append(int(row["camid"]))
    return split


def colour_histogram(frames: np.ndarray, space: str, bins: tuple[int, int, int]) -> np.ndarray:
    """Mean over frames (T, H, W, 3) uint8 of each frame's normalised joint colour histogram: (prod(bins),)."""
    values = frames / 255.0 if space == "rgb" else rgb_to_hsv(frames / 255.0)
    cells = np.minimum((values * bins).astype(np.int64), np.array(bins) - 1)  # (T, H, W, 3)
    joint = (cells[..., 0] * bins[1] + cells[..., 1]) * bins[2] + cells[..., 2]
    num_bins = int(np.prod(bins))
    per_frame = np.stack([np.bincount(frame.ravel(), minlength=num_bins) for frame in joint]).astype(np.float64)
    return (per_frame / per_frame.sum(axis=1, keepdims=True)).mean(axis=0)


def chi_square(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """χ² distances between histogram rows of a (Q, B) and b (G, B): (Q, G)."""
    a, b = a[:, None, :], b[None, :, :]
    return 0.5 * np.sum((a - b) ** 2 / (a + b + 1e-10), axis=-1)


def l1(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a[:, None, :] - b[None, :, :]).sum(axis=-1)


def decode(paths: list[Path]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per tracklet: the two colour histograms, and its evaluation clip (B, N, H, W, 3) uint8."""
    histograms: dict[str, list[np.ndarray]] = {"hsv": [], "rgb": []}
    clips = []
    for path in paths:
        reader = decord.VideoReader(str(path))
        frames = reader.get_batch(list(range(len(reader)))).asnumpy()
        histograms["hsv"].append(colour_histogram(frames, "hsv", (16, 4, 4)))
        histograms["rgb"].append(colour_histogram(frames, "rgb", (8, 8, 8)))
        clips.append(frames[evaluation_indices(len(frames), NUM_FRAMES)[0]])
    return {space: np.stack(rows) for space, rows in histograms.items()}, np.stack(clips)


@torch.no_grad()
def untrained_embeddings(clips: np.ndarray, seed: int, batch_size: int = 16) -> torch.Tensor:
    """L2-normalised embeddings (B, E) of clips (B, N, H, W, 3) uint8 by a randomly initialised drsta_small."""
    torch.manual_seed(seed)
    model = drsta_small(num_frames=NUM_FRAMES).eval()
    embeddings = []
    for start in range(0, len(clips), batch_size):
        batch = torch.from_numpy(clips[start : start + batch_size]).permute(0, 1, 4, 2, 3).float() / 255
        embeddings.append(torch.nn.functional.normalize(model(batch).embedding, dim=1))
    return torch.cat(embeddings)


def chance(q_pids, g_pids, q_camids, g_camids, draws: int = 50, seed: int = 0) -> tuple[np.ndarray, float]:
    """Expected CMC and mAP of a random ranking (mean over `draws` random distance matrices)."""
    rng = np.random.default_rng(seed)
    results = [
        evaluate(rng.random((len(q_pids), len(g_pids))), q_pids, g_pids, q_camids, g_camids) for _ in range(draws)
    ]
    return np.mean([cmc for cmc, _ in results], axis=0), float(np.mean([m for _, m in results]))


def run(out_dir: Path, args: argparse.Namespace) -> None:
    spec = SyntheticSpec(seed=args.seed, num_train_ids=args.ids, num_test_ids=args.ids, num_cameras=args.cameras)
    start = time.perf_counter()
    generate(spec, out_dir)
    generated = time.perf_counter() - start
    split = read_split(out_dir)
    query, gallery = split["query"], split["gallery"]
    start = time.perf_counter()
    q_hist, q_clips = decode(query["path"])
    g_hist, g_clips = decode(gallery["path"])
    decoded = time.perf_counter() - start
    labels = [np.array(x) for x in (query["pid"], gallery["pid"], query["camid"], gallery["camid"])]

    rows = {
        "colour histogram, HSV 16×4×4, χ²": evaluate(chi_square(q_hist["hsv"], g_hist["hsv"]), *labels),
        "colour histogram, RGB 8×8×8, L1": evaluate(l1(q_hist["rgb"], g_hist["rgb"]), *labels),
    }
    start = time.perf_counter()
    embeddings = untrained_embeddings(np.concatenate([q_clips, g_clips]), args.seed)
    dist = torch.cdist(embeddings[: len(q_clips)], embeddings[len(q_clips) :]).numpy()
    rows[f"untrained drsta_small (N = {NUM_FRAMES}), Euclidean"] = evaluate(dist, *labels)
    embedded = time.perf_counter() - start
    rows["chance (random ranking)"] = chance(*labels)

    num_tracklets = len(query["path"]) + len(gallery["path"])
    print(
        f"synthetic set: seed {spec.seed}, {spec.num_test_ids} test ids, {spec.num_cameras} cameras, "
        f"{spec.height}×{spec.width}; {len(query['path'])} queries × {len(gallery['path'])} gallery tracklets"
    )
    print(
        f"generated {spec.num_train_ids}+{spec.num_test_ids} ids in {generated:.0f} s; decoded {num_tracklets} "
        f"test tracklets in {decoded:.0f} s; model embeddings in {embedded:.0f} s\n"
    )
    print("| method | mAP | rank-1 | rank-5 |\n|---|---|---|---|")
    for name, (cmc, mean_ap) in rows.items():
        print(f"| {name} | {100 * mean_ap:.1f}% | {100 * cmc[0]:.1f}% | {100 * cmc[4]:.1f}% |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", type=int, default=60, help="identities in each of train and test")
    parser.add_argument("--cameras", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="keep the generated set here (default: temporary)")
    args = parser.parse_args()
    out_dir = args.out if args.out is not None else Path(tempfile.mkdtemp(prefix="drsta-synthetic-"))
    try:
        run(out_dir, args)
    finally:
        if args.out is None:
            shutil.rmtree(out_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
