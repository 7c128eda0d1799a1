"""`drsta demo` end to end (as the installed console script, on its own local Ray), and CLI error reporting."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import cli
from pipelines.demo import CLAIM_GOALS, claims_table
from tests.spaces import smoke_space

SCRIPT = Path(sys.executable).parent / "drsta"  # installed beside the interpreter by `pip install -e .`


@pytest.mark.integration
def test_demo_runs_the_main_job_end_to_end(tmp_path):
    # The smoke space made smaller (sweeps themselves are tested in test_tune): 2 trials of 2 epochs, 1 worker each.
    space_path = smoke_space(tmp_path, {"optim.epochs": 2, "train.num_workers": 1}, num_samples=2)
    out = tmp_path / "demo"
    done = subprocess.run([SCRIPT, "demo", "--out", str(out), "--space", str(space_path), "--train-ids", "6",
                           "--test-ids", "4"], capture_output=True, text=True, timeout=1200)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = (out / "results.md").read_text()
    rows = [line for line in table.splitlines() if re.match(r"\| [0-9a-f]{5}_\d{5} \|", line)]
    assert len(rows) == 2 and sum(row.endswith("| best |") for row in rows) == 1, table
    assert "champion: models:/drsta/1" in table and "re-evaluated: rank-1" in table
    claims = table[table.index("the paper's claims, measured on the champion") :]
    measured = set(re.findall(r"^\| (val/\w+) \| \d", claims, flags=re.MULTILINE))
    assert len(re.findall(r"^\| val/", claims, flags=re.MULTILINE)) == len(CLAIM_GOALS), claims
    assert {"val/attn_foreground", "val/attn_distinct_parts", "val/probe_noise_ratio"} <= measured, claims
    figures = [Path(line.strip()) for line in table.splitlines() if line.strip().endswith(".png")]
    assert any(path.name == "sweep.png" for path in figures) and all(path.is_file() for path in figures)
    assert (out / "champion" / "model" / "MLmodel").is_file()
    assert "=== demo: results" in done.stdout and "mlflow ui --backend-store-uri" in done.stdout
    assert "workflowType=machine_learning" in done.stdout  # the UI opens on the runs, not on GenAI traces
    # A readable story: a screenful per stage, none of the libraries' banners and bars.
    output = done.stdout + done.stderr
    assert len(output.splitlines()) < 150, output
    for noise in ("Configuration for experiment", "A new study created", "Downloading artifacts",
                  "Token authentication is enabled", "Progress bars disabled"):  # fmt: skip
        assert noise not in output, noise


def test_claims_table_sets_each_claim_against_its_goal():
    claims = {"val/attn_foreground": 1.8, "val/attn_part_specificity": 0.61, "val/attn_distinct_parts": 3.0,
              "val/temporal_bad_ratio": 0.72, "val/probe_noise_ratio": 0.4, "val/probe_black_ratio": 1.2,
              "val/probe_shift_ratio": 0.9}  # fmt: skip
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[1:4] for line in claims_table(claims, 6) if "| val/" in line}
    assert rows == {
        "val/attn_foreground": ["1.8", "≥ 1.5", "yes"],
        "val/attn_part_specificity": ["0.61", "-", ""],
        "val/attn_distinct_parts": ["3", "= 4", "no"],  # K = 6 models, but only 4 parts to tell apart
        "val/temporal_bad_ratio": ["0.72", "≤ 0.7", "no"],
        "val/temporal_bad_auc": ["n/a", "> 0.5", ""],  # not measured: no degraded frame, say
        "val/probe_noise_ratio": ["0.4", "≤ 0.7", "yes"],
        "val/probe_black_ratio": ["1.2", "≤ 0.7", "no"],
        "val/probe_shift_ratio": ["0.9", "≤ 0.7", "no"],
    }
    assert "| val/attn_distinct_parts | 3 | = 3 | yes |" in claims_table(claims, 3)[6]
    assert claims_table(claims, 3)[-1].startswith("n/a: not measured")
    every = claims | {"val/temporal_bad_auc": 0.9}
    assert claims_table(every, 3)[-1].startswith("| val/probe_shift_ratio | 0.9 |")  # no note when all measured


def test_cli_reports_a_bad_config_without_a_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  sigma: -2\n")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--config", str(bad), "--manifest", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "model.sigma" in capsys.readouterr().err


def test_console_script_reports_bad_input_clearly(tmp_path):
    done = subprocess.run([SCRIPT, "search", "--gallery", str(tmp_path / "none.parquet"), "--query", "x.mp4"],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 2 and "none.parquet not found" in done.stderr and "Traceback" not in done.stderr
