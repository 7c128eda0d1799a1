"""Forward+backward throughput and peak memory of the model on the CPU.

    python benchmarks/model.py [--steps 3] [--batch-size 2] [--frames 4]

Each configuration runs in a fresh subprocess; its peak memory is the growth of the peak resident set size
(ru_maxrss) over the interpreter with torch imported, i.e. what the model, activations and gradients take.
Clips of 256×128, the paper's input; the ratio column is clips/s against the small (ResNet-18) configuration.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from drsta.config import LossConfig
from drsta.losses import build_objective
from drsta.model import VARIANTS

CONFIGS = ("small", "resnet50")


def measure(variant: str, steps: int, batch_size: int, frames: int) -> dict[str, float]:
    start_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the interpreter + torch
    torch.manual_seed(0)
    model = VARIANTS[variant](num_frames=frames).train()
    objective = build_objective(LossConfig(), model.embedding_dim, num_classes=batch_size).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    clips = torch.rand(batch_size, frames, 3, 256, 128)
    pids = torch.arange(batch_size)

    def step() -> None:
        out = model(clips)
        loss, _ = objective(out.embedding, out.logits, out.diversity, pids)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    elapsed = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return {"clips_per_s": steps * batch_size / elapsed, "peak_mib": peak_mib - start_mib, "params_m": params}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # internal: measure one variant in this process
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(measure(args.variant, args.steps, args.batch_size, args.frames)))
        return
    rows = {}
    for variant in CONFIGS:
        cmd = [sys.executable, __file__, "--variant", variant, "--steps", str(args.steps),
               "--batch-size", str(args.batch_size), "--frames", str(args.frames)]  # fmt: skip
        rows[variant] = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    base = rows[CONFIGS[0]]["clips_per_s"]
    print(f"forward+backward, B={args.batch_size}, N={args.frames}, 256×128, CPU ({torch.get_num_threads()} threads)")
    print("| config | params (M) | clips/s | ratio | peak memory (MiB) |\n|---|---|---|---|---|")
    for variant, row in rows.items():
        print(
            f"| {variant} | {row['params_m']:.1f} | {row['clips_per_s']:.2f} | {row['clips_per_s'] / base:.2f}× "
            f"| {row['peak_mib']:.0f} |"
        )


if __name__ == "__main__":
    main()
