"""Clip decoding throughput: the raw decode limit, the Ray Data stream and a PyTorch DataLoader, bare and with
training alongside.

    python benchmarks/data.py [--ids 40] [--frames 6] [--epochs 6] [--repeats 2] [--decode-batch 16]

On a synthetic set (H.264 at several keyframe intervals, and the same tracklets as JPEG frame folders), `--epochs`
epochs' plans of N-frame clips (restricted random sampling, resized to 256×128, no augmentation) are decoded by:
- raw: `decode_requests` in a tight loop, one process per core, each on its share (the limit);
- Ray Data: the training stream `drsta.ray.stream.clip_dataset` at the default CPUs per task and decode batch (or
  `--decode-batch`), in plan order, on the private Ray every drsta command starts
  (`pipelines.ray_runtime.connect`), consumed in batches of 8;
- DataLoader: a torch DataLoader with the same decode function and one worker per core, batches of 8.
Rates are clips/s over whole passes, from asking for the first batch to the last (processes started and imports
done beforehand), the best of --repeats. The "with training" columns are seconds per epoch when every batch is
also trained on, the stream competing with training for the same cores: the tiny model's training step at
256×128 in this process on one thread (a one-CPU Ray Train worker), against that training alone on a batch
already in memory.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from drsta.config import DataConfig, ExperimentConfig
from drsta.data.clips import decode_requests
from drsta.data.datasets import READERS
from drsta.data.plan import ClipRequest, epoch_plan
from drsta.data.synthetic import SyntheticSpec, generate
from drsta.data.tracklet import Tracklet
from drsta.data.validate import validate
from drsta.engine import build_optimizer, clips_to_input, train_step
from drsta.losses import build_objective
from drsta.model import build_model
from drsta.ray.stream import clip_dataset
from drsta.resources import resolve_config
from pipelines.ray_runtime import connect, disconnect

SIZE = (256, 128)
BATCH = 8
Batch = dict[str, np.ndarray]


def as_batch(requests: list[ClipRequest]) -> Batch:
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


def consume(batches: Iterable[Batch], step: Callable[[Batch], None] | None = None) -> tuple[int, float]:
    """(clips, seconds) of one pass over `batches`, from asking for the first batch to the last, with `step`
    run on each batch if given."""
    start, done = time.perf_counter(), 0
    for batch in batches:
        if step is not None:
            step(batch)
        done += len(batch["clip"])
    return done, time.perf_counter() - start


def ray_batches(plan: list[ClipRequest], num_frames: int, decode_batch: int) -> Iterable[Batch]:
    """The stream as training consumes it (`drsta.ray.stream.train_stream`, less the augmentation), `decode_batch`
    clips a decode task."""
    dataset = clip_dataset(plan, SIZE, num_frames, None, decode_batch, DataConfig().decode_cpus)
    return dataset.iter_batches(batch_size=BATCH, batch_format="numpy")


class PlanDataset(torch.utils.data.Dataset):
    def __init__(self, plan: list[ClipRequest], num_frames: int) -> None:
        self.plan, self.num_frames = plan, num_frames

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, i: int) -> Batch:
        out = decode_requests(as_batch([self.plan[i]]), SIZE, self.num_frames)
        return {"clip": out["clip"][0], "label": int(out["label"][0])}


def loader_batches(plan: list[ClipRequest], num_frames: int, workers: int) -> Iterable[Batch]:
    return torch.utils.data.DataLoader(PlanDataset(plan, num_frames), batch_size=BATCH, num_workers=workers)


class TrainingStep:
    """The tiny model's training step at SIZE: what a training worker does with each batch."""

    def __init__(self, num_frames: int, num_classes: int) -> None:
        cfg = ExperimentConfig.from_yaml(resolve_config("tiny")).with_overrides(
            {"model.num_frames": num_frames, "input.height": SIZE[0], "input.width": SIZE[1]}
        )
        torch.manual_seed(0)
        self.model = build_model(cfg.model, num_classes)
        self.objective = build_objective(cfg.loss, self.model.embedding_dim, num_classes, num_frames=num_frames)
        self.optimizer = build_optimizer(self.model, cfg.optim)

    def __call__(self, batch: Batch) -> None:
        clips = clips_to_input(batch["clip"], torch.device("cpu"))
        train_step(self.model, self.objective, self.optimizer, clips, torch.as_tensor(batch["label"]))


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


def measure(
    plan: list[ClipRequest], num_frames: int, epochs: int, workers: int, repeats: int, decode_batch: int
) -> dict[str, float]:
    """Clips/s of each decoder (best of `repeats`), and seconds per epoch with training alongside (best of
    `repeats`) against training alone."""
    num_classes = 1 + max(int(request["label"]) for request in plan)
    step = TrainingStep(num_frames, num_classes)
    one_batch = next(iter(loader_batches(plan[:BATCH], num_frames, 0)))
    step(one_batch)  # the first step's one-off set-up
    steps = len(plan) // BATCH
    start = time.perf_counter()
    for _ in range(steps):
        step(one_batch)
    row = {"train_alone": (time.perf_counter() - start) / epochs}
    sources = {
        "ray": lambda: ray_batches(plan, num_frames, decode_batch),
        "loader": lambda: loader_batches(plan, num_frames, workers),
    }
    for _ in range(repeats):
        row["raw"] = max(row.get("raw", 0.0), raw_limit(plan, num_frames, workers))
        for name, batches in sources.items():
            clips, seconds = consume(batches())
            row[name] = max(row.get(name, 0.0), clips / seconds)
            seconds = consume(batches(), step)[1] / epochs
            row[f"{name}_train"] = min(row.get(f"{name}_train", np.inf), seconds)
    return row


def table(rows: dict[str, dict[str, float]], clips: dict[str, int]) -> list[str]:
    lines = [
        "| source | clips | raw limit | Ray Data | ×raw | ×DataLoader | DataLoader | ×raw "
        "| epoch s, training alone | with Ray Data | with DataLoader |",
        "|---" * 11 + "|",
    ]
    for name, row in rows.items():
        raw, ray_rate, loader = row["raw"], row["ray"], row["loader"]
        cells = [f"{clips[name]}", f"{raw:.1f}", f"{ray_rate:.1f}", f"{ray_rate / raw:.2f}×",
                 f"{ray_rate / loader:.2f}×", f"{loader:.1f}", f"{loader / raw:.2f}×", f"{row['train_alone']:.2f}",
                 f"{row['ray_train']:.2f}", f"{row['loader_train']:.2f}"]  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", type=int, default=40, help="synthetic identities (2 cameras each)")
    parser.add_argument("--frames", type=int, default=6, help="N, frames per clip")
    parser.add_argument("--gops", type=int, nargs="+", default=[4, 16, 64], help="keyframe intervals")
    parser.add_argument("--epochs", type=int, default=6, help="epochs of plans decoded back to back")
    parser.add_argument("--repeats", type=int, default=2, help="passes of each measurement (the best is kept)")
    parser.add_argument("--decode-batch", type=int, default=DataConfig().decode_batch_size,
                        help="clips a Ray decode task (data.decode_batch_size; default: its default)")  # fmt: skip
    args = parser.parse_args()
    workers = os.cpu_count() or 1
    torch.set_num_threads(1)  # the training step: a one-CPU training worker (Ray sets OMP_NUM_THREADS so)
    rows, clips = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        print(f"generating {args.ids} identities × 2 cameras at GOPs {args.gops} ...", flush=True)
        sets = make_sets(Path(tmp), args.ids, args.gops)
        connect(None, "benchmark", log_to_driver=False)
        try:
            for name, tracklets in sets.items():
                plan = [r for e in range(args.epochs) for r in epoch_plan(tracklets, args.frames, 0, e, BATCH)]
                consume(ray_batches(plan[: 4 * BATCH], args.frames, args.decode_batch))  # start the decode workers
                row = measure(plan, args.frames, args.epochs, workers, args.repeats, args.decode_batch)
                rows[name], clips[name] = row, len(plan)
                print(f"{name}: " + ", ".join(f"{k} {v:.3g}" for k, v in rows[name].items()), flush=True)
        finally:
            disconnect()
    print(f"\nclips/s, N = {args.frames} frames at 256×128, {workers} CPU cores, {args.ids} identities, "
          f"{args.epochs} epochs, {args.decode_batch} clips a decode task; epoch s with the tiny model's training "
          "step on one thread")  # fmt: skip
    print("\n".join(table(rows, clips)))


if __name__ == "__main__":
    main()
