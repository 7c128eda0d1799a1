"""MARS at scale, simulated: how drsta's stages grow from 1/16 to 1/1 of MARS's tracklet count.

    python benchmarks/scale.py [--fractions 16,4,1] [--out DIR]

A MARS-shaped dataset in MARS's own layout (bbox_train/, bbox_test/, info/ with the name lists, track tables and
query index) at each fraction of MARS's 8,298 training, 1,980 query and 9,330 gallery tracklets (625 training
and 636 test identities, 6 cameras, 16-100 frames a tracklet, 58 on average: 1.2 M frames at 1/1). Every frame
is a symbolic link to one of six small JPEGs (64×32, one per camera) inside the dataset's root: the file system
sees MARS's file count and names, the decoder small images. Per size, with this driver's peak resident memory
over each stage (Ray's workers are other processes):
- scan: the MARS reader; ingest: validation on Ray Data and the Parquet manifest (frames kept, not transcoded);
- plan: the epoch plan (restricted random sampling over every training tracklet);
- stream: one training epoch's clips decoded by the Ray Data stream at the tiny model's input (nothing trained);
- evaluate: an untrained tiny model embeds every query and gallery tracklet, then CMC/mAP, as `drsta evaluate`;
- registry: the model logged, registered and pulled back (independent of the data: a control).
Then each figure's growth from the smallest size to the largest, against the growth in tracklets.

Scale-out (`--scale-out`, on by default): the decode tasks of a training run move onto a CPU-only node when one
joins. On a `ray.cluster_utils.Cluster`, a training node (labelled drsta-role=train) whose logical CPUs leave room
for one decode task next to the training worker, as a GPU node's CPUs are mostly spoken for, runs a `drsta train`
run (tiny model, H.264 at GOP 16, one worker kept on the labelled node by `train.worker_node_labels`); then a
CPU-only node (no label) joins and the same run is repeated. Per phase: the stream's clips/s in training (the
run's `data/clips_per_s`, epochs after the first), and where the decode tasks and the training worker ran (Ray's
State API). The nodes share this machine's cores: the figures show that the stream takes the new node's CPUs,
not what a real node adds (`benchmarks/gpu.py` measures a core's decode rate for sizing real CPU nodes).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import ray
import torch
from mlflow import MlflowClient
from PIL import Image
from ray.cluster_utils import Cluster
from ray.util.state import list_actors, list_tasks
from scipy.io import savemat

from drsta.config import ExperimentConfig
from drsta.data.datasets import READERS
from drsta.data.manifest import fingerprint, read_manifest
from drsta.data.plan import epoch_plan
from drsta.data.synthetic import SyntheticSpec, generate
from drsta.model import build_model
from drsta.ray.stream import ValidBatches, train_stream
from drsta.resources import resolve_config
from pipelines.evaluate import evaluate_program, model_program, registered_program
from pipelines.ingest import ingest
from pipelines.ray_runtime import connect, disconnect, set_local_ray_env
from pipelines.tracking import RunTracker, log_model
from pipelines.train import train

MARS_TRAIN, MARS_QUERY, MARS_GALLERY = 8298, 1980, 9330
MARS_TRAIN_IDS, MARS_TEST_IDS, CAMERAS = 625, 636, 6
FRAMES = (16, 100)  # frames a tracklet, uniform: 58 on average (MARS: 1,191,003 frames in 20,478 tracklets)
FRAME_SIZE = (64, 32)


def generate_mars(root: Path, fraction: int, seed: int = 0) -> int:
    """A MARS-shaped dataset at 1/`fraction` of MARS's tracklet counts under `root`; returns its frame count."""
    if not 1 <= fraction <= MARS_TRAIN_IDS:
        raise ValueError(f"fraction must be 1 to {MARS_TRAIN_IDS} (1/F of MARS, one identity at least), got {fraction}")
    rng = np.random.default_rng(seed)
    images = root / "_images"
    images.mkdir(parents=True)
    for camera in range(1, CAMERAS + 1):
        pixels = rng.integers(0, 256, (*FRAME_SIZE, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"c{camera}.jpg", quality=90)
    num_train_ids, num_test_ids = MARS_TRAIN_IDS // fraction, MARS_TEST_IDS // fraction
    train = _tracks(range(1, num_train_ids + 1), MARS_TRAIN // fraction)
    test = _tracks(range(num_train_ids + 1, num_train_ids + num_test_ids + 1),
                   (MARS_QUERY + MARS_GALLERY) // fraction)  # fmt: skip
    (root / "info").mkdir()
    frames = 0
    for part, tracks in (("train", train), ("test", test)):
        names: list[str] = []
        rows = []
        for pid, camera, number in tracks:
            length = int(rng.integers(FRAMES[0], FRAMES[1] + 1))
            folder = root / f"bbox_{part}" / f"{pid:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            track_names = [f"{pid:04d}C{camera}T{number:04d}F{frame:03d}.jpg" for frame in range(1, length + 1)]
            for name in track_names:
                (folder / name).symlink_to(images / f"c{camera}.jpg")
            rows.append([len(names) + 1, len(names) + length, pid, camera])
            names += track_names
        frames += len(names)
        (root / "info" / f"{part}_name.txt").write_text("\n".join(names) + "\n")
        savemat(root / "info" / f"tracks_{part}_info.mat", {f"track_{part}_info": np.array(rows, dtype=np.int32)})
    # The first test tracks are the queries, one per identity and camera; their gallery is in the other cameras.
    query = np.arange(1, MARS_QUERY // fraction + 1, dtype=np.int32)
    savemat(root / "info" / "query_IDX.mat", {"query_IDX": query[None]})
    return frames


def _tracks(pids: range, count: int) -> list[tuple[int, int, int]]:
    """`count` tracks (pid, camera, tracklet number) over `pids`, the cameras in turn."""
    numbers: dict[tuple[int, int], int] = {}
    tracks = []
    for i in range(count):
        pid, camera = pids[i % len(pids)], (i // len(pids)) % CAMERAS + 1
        numbers[pid, camera] = numbers.get((pid, camera), 0) + 1
        tracks.append((pid, camera, numbers[pid, camera]))
    return tracks


class PeakMemory:
    """This process's peak resident memory (MB) while a stage runs, sampled every 20 ms."""

    def __init__(self) -> None:
        self.peak_mb = 0.0

    @contextmanager
    def measure(self) -> Iterator[None]:
        process, done = psutil.Process(), threading.Event()
        self.peak_mb = process.memory_info().rss / 2**20

        def sample() -> None:
            while not done.wait(0.02):
                self.peak_mb = max(self.peak_mb, process.memory_info().rss / 2**20)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            yield
        finally:
            done.set()
            sampler.join()


@contextmanager
def timed(stage: str, figures: dict[str, float], memory: PeakMemory) -> Iterator[None]:
    """Record the seconds of `stage`, and this process's peak memory over it, into `figures`."""
    start = time.perf_counter()
    with memory.measure():
        yield
    figures[stage] = time.perf_counter() - start
    figures[f"{stage}_mb"] = memory.peak_mb


def measure(fraction: int, work: Path, cfg: ExperimentConfig) -> dict[str, float]:
    """Every stage at 1/`fraction` of MARS, in `work`."""
    figures: dict[str, float] = {"fraction": fraction}
    memory = PeakMemory()
    root, manifest = work / f"mars-1-{fraction}", work / f"ingest-1-{fraction}"
    with timed("generate", figures, memory):
        figures["frames"] = generate_mars(root, fraction)
    with timed("scan", figures, memory):
        figures["tracklets"] = len(READERS["mars"](root))
    with timed("ingest", figures, memory):
        ingest("mars", root, manifest, chunk_size=256)
    tracklets = read_manifest(manifest)
    data, size, num_frames = cfg.data, (cfg.input.height, cfg.input.width), cfg.model.num_frames
    with timed("plan", figures, memory):
        epoch_plan(tracklets, num_frames, data.seed, 0, data.batch_size_per_worker, data.sampler, data.tracklets_per_id)
    with timed("stream", figures, memory):
        batches = ValidBatches(train_stream(tracklets, data, size, num_frames, 0), batch_size=32)
        clips = sum(len(batch["id"]) for batch in batches)
    figures["stream_clips_per_s"] = clips / figures["stream"]
    torch.manual_seed(0)
    model = build_model(cfg.model)
    with timed("evaluate", figures, memory):
        evaluate_program(model_program(model, cfg), cfg, manifest)
    uri = f"sqlite:///{work / 'mlflow.db'}"
    with timed("registry", figures, memory):
        tracker = RunTracker(uri, "scale", f"scale-1-{fraction}")
        tracker.start()
        example = torch.rand(1, num_frames, 3, *size)
        version = log_model(tracker, model, example, cfg.to_dict(), {}, fingerprint(tracklets), registered_name="scale")
        tracker.end("FINISHED")
        registered_program(f"models:/scale/{version.version}", uri)
    return figures


COLUMNS = (("tracklets", "tracklets", "{:.0f}"), ("frames", "frames", "{:.0f}"), ("generate", "generate s", "{:.1f}"),
           ("scan", "scan s", "{:.2f}"), ("scan_mb", "scan MB", "{:.0f}"), ("ingest", "ingest s", "{:.1f}"),
           ("ingest_mb", "ingest MB", "{:.0f}"), ("plan", "plan s", "{:.3f}"), ("stream", "epoch stream s", "{:.1f}"),
           ("stream_clips_per_s", "clips/s", "{:.0f}"), ("evaluate", "evaluate s", "{:.1f}"),
           ("evaluate_mb", "evaluate MB", "{:.0f}"), ("registry", "registry s", "{:.1f}"))  # fmt: skip


def table(rows: list[dict[str, float]]) -> list[str]:
    """One row per size, then each figure's growth from the first size to the last."""
    lines = ["| size | " + " | ".join(title for _, title, _ in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for row in rows:
        cells = [fmt.format(row[key]) for key, _, fmt in COLUMNS]
        lines.append(f"| 1/{row['fraction']:.0f} | " + " | ".join(cells) + " |")
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        growth = [f"{last[key] / first[key]:.1f}×" if first[key] else "-" for key, _, _ in COLUMNS]
        lines.append(f"| growth 1/{first['fraction']:.0f} → 1/{last['fraction']:.0f} | " + " | ".join(growth) + " |")
    return lines


TRAIN_LABELS = {"drsta-role": "train"}
DECODE_TASK = "MapBatches(decode_requests)"


def scale_out(work: Path, cfg: ExperimentConfig, epochs: int = 4) -> list[dict[str, Any]]:
    """The same training run on a training node alone, then with a CPU-only node joined (see the docstring)."""
    root = work / "scale-out"
    spec = SyntheticSpec(seed=0, num_train_ids=40, num_test_ids=4, num_cameras=2, tracklets_per_id_per_camera=2,
                         min_frames=32, max_frames=96, height=256, width=128, gop=16)  # fmt: skip
    generate(spec, root / "videos")
    set_local_ray_env()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "labels": TRAIN_LABELS})
    ray.init(address=cluster.address, log_to_driver=False)
    dashboard = f"http://{cluster.head_node.address_info['webui_url']}"
    try:
        ingest("videos", root / "videos", root / "ingest")
        phases = []
        for phase in ("training node alone", "+ a CPU-only node"):
            if phases:
                cluster.add_node(num_cpus=2)
                cluster.wait_for_nodes()
            run_cfg = cfg.with_overrides({
                "data.manifest": str(root / "ingest"), "data.sampler": "random", "data.decode_batch_size": 8,
                "optim.epochs": epochs, "train.eval_every": epochs, "train.num_workers": 1,
                "train.cpus_per_worker": 1.0, "train.worker_node_labels": TRAIN_LABELS,
                "train.storage_path": str(root / "runs"), "train.name": f"scale-out-{len(phases)}",
                "train.tracking_uri": f"sqlite:///{root / 'mlflow.db'}", "train.registered_model": None,
                "train.system_metrics_s": None,
            })  # fmt: skip
            decode_before = _decode_tasks_per_node(dashboard)
            outcome = train(run_cfg)
            history = MlflowClient(run_cfg.train.tracking_uri).get_metric_history(outcome["mlflow_run_id"],
                                                                                   "data/clips_per_s")  # fmt: skip
            rates = [m.value for m in sorted(history, key=lambda m: m.step)[1:]]
            decoded = _decode_tasks_per_node(dashboard) - decode_before
            head = cluster.head_node.node_id
            phases.append({
                "phase": phase, "nodes": len(ray.nodes()), "clips_per_s": float(np.mean(rates)),
                "decode_tasks": sum(decoded.values()), "decode_elsewhere": sum(decoded.values()) - decoded[head],
                "workers_elsewhere": _train_workers_outside(dashboard, head),
            })  # fmt: skip
            print(f"scale-out, {phase}: " + ", ".join(f"{k} {v}" for k, v in phases[-1].items()), flush=True)
        return phases
    finally:
        ray.shutdown()
        cluster.shutdown()


def _decode_tasks_per_node(dashboard: str) -> Counter:
    tasks = list_tasks(dashboard, filters=[("name", "=", DECODE_TASK)], limit=10_000, raise_on_missing_output=False)
    return Counter(task.node_id for task in tasks if task.node_id)


def _train_workers_outside(dashboard: str, head: str) -> int:
    actors = list_actors(dashboard, filters=[("class_name", "=", "RayTrainWorker")], limit=10_000,
                         raise_on_missing_output=False)  # fmt: skip
    return sum(actor.node_id != head for actor in actors)


def scale_out_table(phases: list[dict[str, Any]]) -> list[str]:
    lines = ["| cluster | nodes | stream clips/s in training | rate | decode tasks | on the CPU-only node "
             "| Train workers there |", "|---" * 7 + "|"]  # fmt: skip
    for phase in phases:
        cells = [f"{phase['nodes']}", f"{phase['clips_per_s']:.1f}",
                 f"{phase['clips_per_s'] / phases[0]['clips_per_s']:.2f}×", f"{phase['decode_tasks']}",
                 f"{phase['decode_elsewhere']}", f"{phase['workers_elsewhere']}"]  # fmt: skip
        lines.append(f"| {phase['phase']} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fractions", default="16,4,1", help="sizes as 1/F of MARS, smallest first")
    parser.add_argument("--out", type=Path, help="keep the datasets here (default: a temporary directory)")
    parser.add_argument("--scale-out", action=argparse.BooleanOptionalAction, default=True,
                        help="also show the decode moving onto a joining CPU-only node (a few minutes)")  # fmt: skip
    args = parser.parse_args()
    try:
        fractions = [int(f) for f in args.fractions.split(",")]
    except ValueError:
        parser.error(f"--fractions: whole numbers separated by commas (16,4,1), got {args.fractions!r}")
    if not all(1 <= fraction <= MARS_TRAIN_IDS for fraction in fractions):
        parser.error(f"--fractions: each must be 1 to {MARS_TRAIN_IDS}, got {args.fractions!r}")
    cfg = ExperimentConfig.from_yaml(resolve_config("tiny")).with_overrides(
        {"data.sampler": "identity", "data.tracklets_per_id": 2, "loss.xent_weight": 0.0}
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = args.out or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        connect(None, "benchmark", log_to_driver=False)
        try:
            rows = []
            for fraction in fractions:
                rows.append(measure(fraction, work, cfg))
                print(f"1/{fraction}: " + ", ".join(f"{k} {v:.3g}" for k, v in rows[-1].items()), flush=True)
        finally:
            disconnect()
    print(f"\nMARS-shaped data at {', '.join(f'1/{f}' for f in fractions)} of MARS (tiny model, "
          f"{cfg.input.height}×{cfg.input.width}, N = {cfg.model.num_frames}), CPU")  # fmt: skip
    print("\n".join(table(rows)))
    if args.scale_out:
        with tempfile.TemporaryDirectory() as tmp:
            phases = scale_out(Path(tmp), ExperimentConfig.from_yaml(resolve_config("tiny")))
        print("\nA training run's stream before and after a CPU-only node joins (tiny model, H.264 at 256×128, "
              "GOP 16; the nodes share this machine's cores)")  # fmt: skip
        print("\n".join(scale_out_table(phases)))


if __name__ == "__main__":
    main()
