"""benchmarks/gpu.py: the smoke run end to end on the CPU (every figure in its JSON), its FLOP count against the
forward/backward rule of thumb, its peak table; the real run where there is a GPU."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from drsta.config import ExperimentConfig
from tests.benchmark_scripts import load_benchmark

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu.py"


gpu = load_benchmark("gpu")


def run_script(tmp_path: Path, *args: str, timeout: int) -> tuple[dict, str]:
    out = tmp_path / "report.json"
    done = subprocess.run([sys.executable, str(SCRIPT), *args, "--json", str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text()), done.stdout


def test_smoke_run_reports_every_figure_and_no_mfu_on_the_cpu(tmp_path):
    report, printed = run_script(tmp_path, "--smoke", "--device", "cpu", timeout=300)
    rows = {row["variant"]: row for row in report["train"]}
    assert list(rows) == [variant.name for variant in gpu.VARIANTS]
    for name, row in rows.items():
        if name.endswith("compile") and row["status"] == "skipped":
            continue
        assert row["status"] == "ok", row
        assert row["clips_per_s"] > 0 and row["first_step_s"] > 0
        assert row["frames_per_s"] == pytest.approx(row["clips_per_s"] * report["setting"]["num_frames"])
        assert row["mfu"] is None and row["tflops"] > 0
    assert rows["bf16 + channels_last + compile"]["status"] == "skipped"  # compile is off on the CPU by default
    assert [row["source"] for row in report["decode"]] == ["H.264, GOP 4", "JPEG frame folders"]
    for row in report["decode"]:
        assert row["frames_per_s"] > 0 and row["cores_to_feed_best"] > 0
    assert report["eval"]["clips_per_s"] > 0
    assert report["peak_tflops"] is None and report["goal"]["verdict"] == "n/a"
    assert report["flops_per_step"]["training"] > report["flops_per_step"]["forward"] > 0
    assert "| eager fp32 |" in printed and "peak unknown" in printed and "-> n/a" in printed


def test_flop_count_is_linear_in_the_batch_and_training_about_three_forwards():
    cfg = ExperimentConfig.from_yaml("tiny")
    cpu = torch.device("cpu")
    two, four = gpu.count_flops(cfg, 2, cpu), gpu.count_flops(cfg, 4, cpu)
    assert two["forward"] > 0
    assert four["forward"] == 2 * two["forward"]  # convolutions and matmuls scale with the clips, nothing else
    # Backward ≈ 2 × forward (gradients of inputs and of weights), less the first convolution's input gradient.
    assert 2 < two["training"] / two["forward"] < 4


@pytest.mark.parametrize(
    ("name", "peak", "anchor"),
    [
        ("NVIDIA H100 80GB HBM3", 989.0, True),
        ("NVIDIA H100 PCIe", 756.0, True),
        ("NVIDIA H100 NVL", 835.0, True),
        ("NVIDIA H200", 989.0, True),
        ("NVIDIA A100-SXM4-80GB", 312.0, False),
        ("NVIDIA A100 80GB PCIe", 312.0, False),
        ("NVIDIA L4", 121.0, False),
        ("NVIDIA L40S", None, False),
        ("NVIDIA GeForce RTX 4090", None, False),
    ],
)
def test_peak_and_the_goal_follow_the_device_name(name, peak, anchor):
    assert gpu.peak_tflops(name) == peak
    assert gpu.is_anchor_gpu(name) is anchor


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_paper_setting_runs_on_the_gpu(tmp_path):
    report, _ = run_script(tmp_path, "--batch-size", "4", "--warmup", "1", "--steps", "2", "--eval-batch-size", "8",
                           timeout=900)  # fmt: skip
    assert report["device"]["type"] == "cuda" and report["setting"]["backbone"] == "resnet50"
    eager = [row for row in report["train"] if "compile" not in row["variant"]]
    assert all(row["status"] == "ok" and row["clips_per_s"] > 0 for row in eager), eager
    if report["peak_tflops"] is not None:
        assert all(0 < row["mfu"] < 1 for row in eager)
    assert report["goal"]["verdict"] in ("PASS", "FAIL", "n/a")
