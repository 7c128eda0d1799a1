"""One GPU at the paper's setting: training-step throughput and MFU, decode rate per CPU core, eval throughput.

    python benchmarks/gpu.py [--batch-size 32] [--warmup 5] [--steps 20] [--json gpu.json]
    python benchmarks/gpu.py --smoke [--json smoke.json]      # the same code path on the CPU, tiny model, seconds

The model, objective and optimiser are the `paper` config's (ResNet-50 from scratch, 256×128, N = 6, K = 6, OIM
over MARS's 625 training identities, SGD), built as `pipelines/train.py`'s TrainLoop builds them, and each timed
step is `drsta.engine.train_batch` on a fixed batch of random uint8 clips already on the device (the data path
is measured on its own, below), converted by `clips_to_input` as in the training loop. Variants, each on a fresh
model: eager fp32 (cuDNN's TF32 convolutions, torch's default), eager bf16 autocast, bf16 + channels_last,
bf16 + channels_last + `torch.compile` (default mode; compile is off on the CPU unless --compile). The first step
(cuDNN setup, and the whole compilation for the compiled model) is timed apart; then warm-up steps, then the timed
steps between two `torch.cuda.synchronize`. A variant that fails (a compile error, out of memory) is a row with
its error. The ratio column is clips/s against eager fp32 of the same run.

MFU: the model FLOPs of one training step (forward and backward of `train_batch`, counted by
`torch.utils.flop_counter.FlopCounterMode`, eager fp32) × steps/s over the device's dense bf16 peak
(`PEAK_BF16_TFLOPS`; --peak-tflops overrides it; no MFU where the peak is unknown).

Decode: frames/s one process on one core turns into training clips, as the stream's decode stage does
(`drsta.data.clips.decode_requests`: decord for H.264, PIL for JPEG, the `paper` config's flip and crop), over
epochs of sampling plans of a small synthetic set at the model's input size (`drsta.data.synthetic`, H.264 with
a keyframe every 4 frames, and the same tracklets as MARS-layout JPEG folders); hence the cores needed to feed
the best training frames/s. Eval: clips/s of `drsta.engine.embed` (eval mode, no grad, bf16 autocast on a GPU).

The goal: ≥ 6,000 training frames/s (1,000 clips of N = 6) on one H100/H200; PASS/FAIL there, n/a elsewhere.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from drsta.config import ExperimentConfig
from drsta.data.augment import AugmentSpec
from drsta.data.clips import decode_requests
from drsta.data.datasets import READERS
from drsta.data.plan import ClipRequest, epoch_plan
from drsta.data.synthetic import SyntheticSpec, generate
from drsta.data.tracklet import Tracklet
from drsta.data.validate import validate
from drsta.engine import build_optimizer, clips_to_input, embed, train_batch
from drsta.losses import ReIDObjective, build_objective
from drsta.model import build_model
from drsta.model.drsta import DRSTA

GOAL_FRAMES_PER_S = 6000.0  # 1,000 clips of N = 6 per second on one H100/H200 (issue 14)
NUM_CLASSES = 625  # OIM's table: MARS's training identities, the paper's largest set
DECODE_GOP = 4
# Dense bf16 tensor-core peaks in TFLOP/s (NVIDIA's datasheets print them "with sparsity", twice these), matched
# against torch's device name in order: the H100's PCIe and NVL parts before the SXM part, plain "H100".
PEAK_BF16_TFLOPS = (
    (r"\bH100\b.*\bPCIe\b", 756.0),
    (r"\bH100\b.*\bNVL\b", 835.0),
    (r"\bH100\b", 989.0),
    (r"\bH200\b", 989.0),
    (r"\bA100\b", 312.0),
    (r"\bL4\b", 121.0),
)
ANCHOR_GPU = r"\bH[12]00\b"


@dataclass(frozen=True)
class Variant:
    """One way to run the same training step."""

    name: str
    bf16: bool
    channels_last: bool
    compile: bool


VARIANTS = (
    Variant("eager fp32", bf16=False, channels_last=False, compile=False),
    Variant("eager bf16", bf16=True, channels_last=False, compile=False),
    Variant("bf16 + channels_last", bf16=True, channels_last=True, compile=False),
    Variant("bf16 + channels_last + compile", bf16=True, channels_last=True, compile=True),
)


@dataclass(frozen=True)
class Settings:
    """What one run measures.

    Attributes:
        cfg: model, input, loss and optimiser (the `paper` config, or its tiny version with --smoke).
        batch_size: clips per training step (one worker).
        eval_batch_size: clips per evaluation forward.
        warmup: untimed steps after the first one.
        steps: timed steps (training and evaluation).
        compile: run the compiled variant (else its row says skipped).
        decode_ids: training identities of the synthetic decode set (2 cameras each).
        decode_frames: (shortest, longest) tracklet of the decode set, in frames.
        decode_seconds: decoding time measured per source, at least.
    """

    cfg: ExperimentConfig
    batch_size: int
    eval_batch_size: int
    warmup: int
    steps: int
    compile: bool
    decode_ids: int
    decode_frames: tuple[int, int]
    decode_seconds: float


# ---------------------------------------------------------------------------------------------------------------
# Device facts


def peak_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of the GPU called `device_name` (torch's name for it), None when not in the table."""
    for pattern, tflops in PEAK_BF16_TFLOPS:
        if re.search(pattern, device_name, re.IGNORECASE):
            return tflops
    return None


def is_anchor_gpu(device_name: str) -> bool:
    """Whether the goal applies: an H100 or H200."""
    return re.search(ANCHOR_GPU, device_name, re.IGNORECASE) is not None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.machine()} ({torch.get_num_threads()} threads)"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step: Callable[[], Any], count: int, device: torch.device) -> float:
    """Seconds `count` calls of `step` take, from an idle device to an idle device."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(count):
        step()
    synchronize(device)
    return time.perf_counter() - start


# ---------------------------------------------------------------------------------------------------------------
# Training step


def build_training(
    cfg: ExperimentConfig, device: torch.device, channels_last: bool = False
) -> tuple[DRSTA, ReIDObjective, torch.optim.Optimizer]:
    """Model, objective and optimiser as TrainLoop builds them (one worker, no DDP), in training mode."""
    torch.manual_seed(cfg.train.model_seed)
    model = build_model(cfg.model, NUM_CLASSES if cfg.loss.xent_weight > 0 else None).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    objective = build_objective(cfg.loss, model.embedding_dim, NUM_CLASSES, num_frames=cfg.model.num_frames)
    objective = objective.to(device).train()
    return model.train(), objective, build_optimizer(model, cfg.optim)


def random_batch(cfg: ExperimentConfig, batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 clips (B, N, H, W, 3) as the stream delivers them, and labels (B,) in [0, NUM_CLASSES), on `device`."""
    generator = torch.Generator().manual_seed(0)
    shape = (batch_size, cfg.model.num_frames, cfg.input.height, cfg.input.width, 3)
    clips = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, NUM_CLASSES, (batch_size,), generator=generator)
    return clips.to(device), labels.to(device)


def count_flops(cfg: ExperimentConfig, batch_size: int, device: torch.device) -> dict[str, int]:
    """Model FLOPs of one training step on a fresh model: `forward` (the model alone) and `training` (forward,
    objective and backward of `train_batch`; the optimiser's elementwise update is not counted)."""
    model, objective, optimizer = build_training(cfg, device)
    clips_u8, labels = random_batch(cfg, batch_size, device)
    clips = clips_to_input(clips_u8, device)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(clips)
    forward = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        train_batch(model, objective, optimizer, clips, labels, valid=True)
    return {"forward": forward, "training": counter.get_total_flops()}


def time_training(settings: Settings, variant: Variant, device: torch.device) -> dict[str, Any]:
    """clips/s and frames/s of `train_batch` for one variant, and how long its first step took."""
    cfg = settings.cfg
    model, objective, optimizer = build_training(cfg, device, variant.channels_last)
    stepped = torch.compile(model) if variant.compile else model
    clips_u8, labels = random_batch(cfg, settings.batch_size, device)

    def step() -> None:
        clips = clips_to_input(clips_u8, device)  # (B, N, 3, H, W) float, as the training loop feeds it
        train_batch(stepped, objective, optimizer, clips, labels, valid=True, amp=variant.bf16)

    first_step_s = timed(step, 1, device)
    timed(step, settings.warmup, device)
    elapsed = timed(step, settings.steps, device)
    clips_per_s = settings.steps * settings.batch_size / elapsed
    return {
        "variant": variant.name,
        "status": "ok",
        "clips_per_s": clips_per_s,
        "frames_per_s": clips_per_s * cfg.model.num_frames,
        "step_ms": 1000 * elapsed / settings.steps,
        "first_step_s": first_step_s,
    }


def training_rows(
    settings: Settings, device: torch.device, training_flops: int, peak: float | None
) -> list[dict[str, Any]]:
    """One row per variant: its throughput, achieved TFLOP/s and MFU, or why it was skipped or failed."""
    rows = []
    for variant in VARIANTS:
        if variant.compile and not settings.compile:
            reason = "compile is off on the CPU (--compile runs it)"
            rows.append({"variant": variant.name, "status": "skipped", "reason": reason})
            continue
        try:
            row = time_training(settings, variant, device)
        except Exception as err:  # a benchmark reports a failing variant (a compile error, out of memory), goes on
            message = str(err).strip().splitlines()[0] if str(err).strip() else ""
            rows.append({"variant": variant.name, "status": "error", "error": f"{type(err).__name__}: {message}"})
            continue
        finally:
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
        tflops = training_flops * row["clips_per_s"] / settings.batch_size / 1e12
        row |= {"tflops": tflops, "mfu": None if peak is None else tflops / peak}
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------------------------
# Evaluation and decoding


def time_eval(settings: Settings, device: torch.device) -> dict[str, Any]:
    """clips/s of the eval-mode forward `drsta.engine.embed` (no grad; bf16 autocast on a GPU when amp is on)."""
    cfg = settings.cfg
    torch.manual_seed(cfg.train.model_seed)
    model = build_model(cfg.model).to(device)
    clips_u8, _ = random_batch(cfg, settings.eval_batch_size, device)
    clips = clips_to_input(clips_u8, device)

    def step() -> None:
        embed(model, clips, amp=cfg.train.amp)

    timed(step, 1 + settings.warmup, device)
    clips_per_s = settings.steps * settings.eval_batch_size / timed(step, settings.steps, device)
    bf16 = cfg.train.amp and device.type == "cuda"
    return {"batch_size": settings.eval_batch_size, "bf16": bf16, "clips_per_s": clips_per_s,
            "frames_per_s": clips_per_s * cfg.model.num_frames}  # fmt: skip


def synthetic_sources(settings: Settings, root: Path) -> dict[str, list[Tracklet]]:
    """The training tracklets of a small synthetic set at the model's input size, as H.264 (GOP 4) and as JPEG
    frame folders (the same tracklets, MARS's layout)."""
    cfg = settings.cfg
    spec = SyntheticSpec(seed=0, num_train_ids=settings.decode_ids, num_test_ids=1, num_cameras=2,
                         min_frames=settings.decode_frames[0], max_frames=settings.decode_frames[1],
                         height=cfg.input.height, width=cfg.input.width, gop=DECODE_GOP)  # fmt: skip
    out = generate(spec, root / "synth", mars_layout=True)
    videos = [validate(t) for t in READERS["videos"](out) if t.role == "train"]  # ingest fills in frame counts
    folders = [t for t in READERS["mars"](out / "mars") if t.role == "train"]
    return {f"H.264, GOP {DECODE_GOP}": videos, "JPEG frame folders": folders}


def _columns(requests: list[ClipRequest]) -> dict[str, list[Any]]:
    return {key: [request[key] for request in requests] for key in requests[0]}


def decode_rate(tracklets: list[Tracklet], settings: Settings) -> dict[str, float]:
    """Frames/s one process on one core decodes and augments into training clips, over epochs of sampling plans
    (each epoch samples other frames) until `settings.decode_seconds` of decoding."""
    cfg = settings.cfg
    size, num_frames, per_task = (cfg.input.height, cfg.input.width), cfg.model.num_frames, cfg.data.decode_batch_size
    augment = AugmentSpec(flip_p=cfg.data.flip_p, crop_p=cfg.data.crop_p, erase_p=cfg.data.erase_p)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the crop's resize runs in torch: one core, as decord and PIL here
    try:
        plan = epoch_plan(tracklets, num_frames, seed=0, epoch=0, global_batch_size=1)
        decode_requests(_columns(plan[:1]), size, num_frames, augment)  # the decoders' first use, untimed
        clips, elapsed, epoch = 0, 0.0, 0
        while elapsed < settings.decode_seconds:
            plan = epoch_plan(tracklets, num_frames, seed=0, epoch=epoch, global_batch_size=1)
            start = time.perf_counter()
            for first in range(0, len(plan), per_task):
                decode_requests(_columns(plan[first : first + per_task]), size, num_frames, augment)
            elapsed += time.perf_counter() - start
            clips, epoch = clips + len(plan), epoch + 1
    finally:
        torch.set_num_threads(threads)
    return {"clips_per_s": clips / elapsed, "frames_per_s": clips * num_frames / elapsed}


# ---------------------------------------------------------------------------------------------------------------
# The run


def run(settings: Settings, device: torch.device, peak_override: float | None = None) -> dict[str, Any]:
    """Every figure of the benchmark, as the JSON it writes."""
    cfg = settings.cfg
    name = device_name(device)
    peak = peak_override or (peak_tflops(name) if device.type == "cuda" else None)
    flops = count_flops(cfg, settings.batch_size, device)
    rows = training_rows(settings, device, flops["training"], peak)
    best = max((row["frames_per_s"] for row in rows if row["status"] == "ok"), default=None)
    with tempfile.TemporaryDirectory() as tmp:
        sources = synthetic_sources(settings, Path(tmp))
        decode = [{"source": source} | decode_rate(tracklets, settings) for source, tracklets in sources.items()]
    for row in decode:
        row["cores_to_feed_best"] = None if best is None else best / row["frames_per_s"]
    verdict = "n/a"
    if is_anchor_gpu(name) and cfg.model.num_frames == 6 and best is not None:
        verdict = "PASS" if best >= GOAL_FRAMES_PER_S else "FAIL"
    m = cfg.model
    facts = {"name": name, "type": device.type, "torch": torch.__version__, "cuda": torch.version.cuda,
             "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None}  # fmt: skip
    setting = {"backbone": m.backbone, "height": cfg.input.height, "width": cfg.input.width,
               "num_frames": m.num_frames, "num_attention_models": m.num_attention_models,
               "batch_size": settings.batch_size, "warmup": settings.warmup, "steps": settings.steps}  # fmt: skip
    return {
        "device": facts,
        "setting": setting,
        "flops_per_step": flops,
        "peak_tflops": peak,
        "train": rows,
        "decode": decode,
        "eval": time_eval(settings, device),
        "goal": {"frames_per_s": GOAL_FRAMES_PER_S, "best_frames_per_s": best, "verdict": verdict},
    }


def _fmt(value: float | None, spec: str = ".1f", suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{suffix}"


def print_report(report: dict[str, Any]) -> None:
    device, setting, flops = report["device"], report["setting"], report["flops_per_step"]
    frames = setting["batch_size"] * setting["num_frames"]
    peak = report["peak_tflops"]
    print(f"device: {device['name']} | torch {device['torch']} | CUDA {device['cuda']} | cuDNN {device['cudnn']}")
    print(f"peak bf16 dense: {_fmt(peak, '.0f', ' TFLOP/s') if peak else 'peak unknown (no MFU; --peak-tflops)'}")
    print(f"\ntraining step (train_batch), {setting['backbone']} at {setting['height']}×{setting['width']}, "
          f"N = {setting['num_frames']}, K = {setting['num_attention_models']}, {setting['batch_size']} clips "
          f"({frames} frames) a step, 1 + {setting['warmup']} warm-up + {setting['steps']} timed steps")  # fmt: skip
    print(f"model FLOPs a step: forward {flops['forward'] / 1e9:,.4g} GFLOP, training {flops['training'] / 1e9:,.4g} "
          f"GFLOP ({flops['training'] / flops['forward']:.2f}× forward)")  # fmt: skip
    if device["type"] == "cpu":
        print("(on the CPU, bf16 autocast is off: drsta.engine.autocast runs it on CUDA only)")
    first = report["train"][0]  # eager fp32, the ratio's baseline
    base = first["clips_per_s"] if first["status"] == "ok" else None
    print("\n| variant | clips/s | frames/s | step (ms) | first step (s) | TFLOP/s | MFU | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for row in report["train"]:
        if row["status"] != "ok":
            cells = [f"{row['status']}: {row.get('error') or row.get('reason')}", *["—"] * 6]
        else:
            ratio = None if base is None else row["clips_per_s"] / base
            cells = [f"{row['clips_per_s']:.1f}", f"{row['frames_per_s']:.0f}", f"{row['step_ms']:.1f}",
                     f"{row['first_step_s']:.2f}", f"{row['tflops']:.3g}", _fmt(row["mfu"], ".1%"),
                     _fmt(ratio, ".2f", "×")]  # fmt: skip
        print(f"| {row['variant']} | {' | '.join(cells)} |")
    best = report["goal"]["best_frames_per_s"]
    print(f"\ndecode + augment, one process on one CPU core, {setting['height']}×{setting['width']}")
    print(f"| source | frames/s | clips/s | cores to feed {_fmt(best, '.0f')} frames/s |\n|---|---|---|---|")
    for row in report["decode"]:
        print(f"| {row['source']} | {row['frames_per_s']:.1f} | {row['clips_per_s']:.1f} "
              f"| {_fmt(row['cores_to_feed_best'])} |")  # fmt: skip
    ev = report["eval"]
    print(f"\nevaluation (embed, eval mode, no grad{', bf16' if ev['bf16'] else ''}, batch {ev['batch_size']}): "
          f"{ev['clips_per_s']:.1f} clips/s ({ev['frames_per_s']:.0f} frames/s)")  # fmt: skip
    goal = report["goal"]
    print(f"goal ≥ {goal['frames_per_s']:,.0f} training frames/s (1,000 clips of N = 6) on one H100/H200: "
          f"best {_fmt(best, ',.0f')} frames/s -> {goal['verdict']}")  # fmt: skip


def settings_from_args(args: argparse.Namespace, device: torch.device) -> Settings:
    """The paper's setting, or with --smoke its tiny CPU version (64×40: a width decord decodes, see
    drsta.data.decode.decord_decodes_width, so the decode set needs no resize either)."""
    cfg = ExperimentConfig.from_yaml("paper")
    if args.smoke:
        cfg = cfg.with_overrides({"model.backbone": "tiny", "model.num_frames": 4, "model.num_attention_models": 2,
                                  "model.attention_hidden_dim": 16, "input.height": 64, "input.width": 40})  # fmt: skip
    return Settings(
        cfg=cfg,
        batch_size=args.batch_size or (2 if args.smoke else 32),
        eval_batch_size=args.eval_batch_size or (4 if args.smoke else 64),
        warmup=args.warmup if args.warmup is not None else (1 if args.smoke else 5),
        steps=args.steps or (2 if args.smoke else 20),
        compile=args.compile or device.type == "cuda",
        decode_ids=2 if args.smoke else 8,
        decode_frames=(8, 12) if args.smoke else (32, 64),
        decode_seconds=0.3 if args.smoke else 3.0,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny model, 64×40, N=4, K=2, batch 2, 2 steps")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, help="clips per training step (default 32; smoke 2)")
    parser.add_argument("--eval-batch-size", type=int, help="clips per eval forward (default 64; smoke 4)")
    parser.add_argument("--warmup", type=int, help="warm-up steps after the first (default 5; smoke 1)")
    parser.add_argument("--steps", type=int, help="timed steps per variant (default 20; smoke 2)")
    parser.add_argument("--compile", action="store_true", help="run the torch.compile variant on the CPU too")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak, for MFU")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here (use --device cpu, or --smoke)")
    if args.smoke and device.type == "cpu":
        # The smoke run checks the code path, not speed: on a busy machine torch's 2+ OpenMP threads wait for each
        # other at every barrier (measured here at load 15 on 2 cores: 7.6 s a tiny step, 6 ms with one thread).
        torch.set_num_threads(1)
    report = run(settings_from_args(args, device), device, args.peak_tflops)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
