"""The demo and the `drsta` command, in-process and as the installed console script."""

import math
import subprocess
import sys
from pathlib import Path

import pytest

from drsta.config import ExperimentConfig
from pipelines import cli
from pipelines.demo import run_demo

TINY = Path(__file__).parents[1] / "configs" / "tiny.yaml"


def test_demo_runs_every_loss_on_the_tiny_config(capsys):
    losses = run_demo(ExperimentConfig.from_yaml(TINY), batch_size=4)
    assert set(losses) == {"total", "oim", "triplet", "xent", "diversity"}
    assert all(math.isfinite(v) for v in losses.values())
    printed = capsys.readouterr().out
    assert "spatial maps     (4, 4, 3, 2, 1)" in printed and "diversity penalty" in printed


def test_cli_reports_a_bad_config_without_a_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  sigma: -2\n")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "--config", str(bad)])
    assert exit_info.value.code == 2
    assert "model.sigma" in capsys.readouterr().err


def test_console_script_runs():
    script = Path(sys.executable).parent / "drsta"  # installed beside the interpreter by `pip install -e .`
    done = subprocess.run([script, "demo", "--config", str(TINY)], capture_output=True, text=True, check=True)
    assert "embedding" in done.stdout
