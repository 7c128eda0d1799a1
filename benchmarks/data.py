"""Clip decoding throughput: the raw decode limit, the Ray Data stream and a PyTorch DataLoader.

    python benchmarks/data.py [--ids 40] [--frames 6] [--epochs 1]

On a synthetic set (H.264 at several keyframe intervals, and the same tracklets as JPEG frame folders), one
epoch's plan of N-frame clips (restricted random sampling, resized to 256×128, no augmentation) is decoded by:
- raw: `decode_requests` in a tight loop, one process per core, each on its share (the limit);
- ray: the Ray Data stream `drsta.ray.stream.clip_dataset`, consumed in batches of 8;
- loader: a torch DataLoader with the same decode function and one worker per core, batches of 8.
Figures are steady-state: from the first batch delivered to the last (processes, Ray workers and imports
already up), over several epochs' plans back to back.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import ray
import torch

from drsta.data.clips import decode_requests
from drsta.data.datasets import READERS
from drsta.data.plan import ClipRequest, epoch_plan
from drsta.data.synthetic import SyntheticSpec, generate
from drsta.data.tracklet import Tracklet
from drsta.data.validate import validate
from drsta.ray.stream import clip_dataset

SIZE = (256, 128)
BATCH = 8


def as_batch(requests: list[ClipRequest]) -> dict[str, np.ndarray]:
    return {key: np.array([r[key] for r in requests] + [None], dtype=object)[:-1] for key in requests[0]}


def decode_share(args: tuple[list[ClipRequest], int]) -> int:
    requests, num_frames = args
    for start in range(0, len(requests), BATCH):
        decode_requests(as_batch(requests[start : start + BATCH]), SIZE, num_frames)
    return len(requests)


def raw_limit(plan: list[ClipRequest], num_frames: int, workers: int) -> float:
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(decode_share, [(plan[:1], num_frames)] * workers)  # imports and first decode in every process
        start = time.perf_counter()
        done = sum(pool.map(decode_share, [(plan[w::workers], num_frames) for w in range(workers)]))
        return done / (time.perf_counter() - start)


def steady_rate(batches) -> float:
    """Clips per second from the first batch to the last, counting the clips after the first batch."""
    iterator = iter(batches)
    next(iterator)
    start, done = time.perf_counter(), 0
    for batch in iterator:
        done += len(batch["clip"])
    return done / (time.perf_counter() - start)


def ray_stream(plan: list[ClipRequest], num_frames: int) -> float:
    dataset = clip_dataset(plan, SIZE, num_frames, None, decode_batch_size=4, preserve_order=False)
    return steady_rate(dataset.iter_batches(batch_size=BATCH, batch_format="numpy"))


class PlanDataset(torch.utils.data.Dataset):
    def __init__(self, plan: list[ClipRequest], num_frames: int) -> None:
        self.plan, self.num_frames = plan, num_frames

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        out = decode_requests(as_batch([self.plan[i]]), SIZE, self.num_frames)
        return {"clip": torch.from_numpy(out["clip"][0]), "label": int(out["label"][0])}


def data_loader(plan: list[ClipRequest], num_frames: int, workers: int) -> float:
    loader = torch.utils.data.DataLoader(PlanDataset(plan, num_frames), batch_size=BATCH, num_workers=workers)
    return steady_rate(loader)


def make_sets(root: Path, ids: int, gops: list[int]) -> dict[str, list[Tracklet]]:
    sets = {}
    for gop in gops:
        spec = SyntheticSpec(seed=0, num_train_ids=ids, num_test_ids=2, num_cameras=2, gop=gop, min_frames=32,
                             max_frames=96)  # fmt: skip
        out = generate(spec, root / f"gop{gop}", mars_layout=gop == gops[0])
        sets[f"H.264, GOP {gop}"] = [validate(t) for t in READERS["videos"](out) if t.role == "train"]
    mars = READERS["mars"](root / f"gop{gops[0]}" / "mars")
    sets["JPEG frame folders"] = [t for t in mars if t.role == "train"]
    return sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", type=int, default=40, help="synthetic identities (2 cameras each)")
    parser.add_argument("--frames", type=int, default=6, help="N, frames per clip")
    parser.add_argument("--gops", type=int, nargs="+", default=[4, 16, 64], help="keyframe intervals")
    parser.add_argument("--epochs", type=int, default=6, help="epochs of plans decoded back to back")
    args = parser.parse_args()
    workers = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        print(f"generating {args.ids} identities × 2 cameras at GOPs {args.gops} ...", flush=True)
        sets = make_sets(Path(tmp), args.ids, args.gops)
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        rows = []
        for name, tracklets in sets.items():
            plan = [r for e in range(args.epochs) for r in epoch_plan(tracklets, args.frames, 0, e, BATCH)]
            ray_stream(plan[: 4 * BATCH], args.frames)  # warm the Ray workers' imports once
            raw = raw_limit(plan, args.frames, workers)
            stream = ray_stream(plan, args.frames)
            loader = data_loader(plan, args.frames, workers)
            rows.append((name, len(plan), raw, stream, loader))
        ray.shutdown()
    print(f"\nsteady-state clips/s, N={args.frames} frames at 256×128, {workers} CPU cores")
    print("| source | clips | raw limit | Ray Data | ratio | DataLoader | ratio |\n|---|---|---|---|---|---|---|")
    for name, count, raw, stream, loader in rows:
        ratios = f"{stream:.1f} | {stream / raw:.2f}× | {loader:.1f} | {loader / raw:.2f}×"
        print(f"| {name} | {count} | {raw:.1f} | {ratios} |")


if __name__ == "__main__":
    main()
