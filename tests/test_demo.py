"""`drsta demo` end to end (as the installed console script, on its own local Ray), and CLI error reporting."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import cli

SCRIPT = Path(sys.executable).parent / "drsta"  # installed beside the interpreter by `pip install -e .`
SMOKE = Path(__file__).parents[1] / "tune_spaces" / "smoke.yaml"


@pytest.mark.integration
def test_demo_runs_the_main_job_end_to_end(tmp_path):
    out = tmp_path / "demo"
    done = subprocess.run([SCRIPT, "demo", "--out", str(out), "--space", str(SMOKE), "--train-ids", "6",
                           "--test-ids", "4"], capture_output=True, text=True, timeout=1200)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = (out / "results.md").read_text()
    rows = [line for line in table.splitlines() if re.match(r"\| [0-9a-f]{5}_\d{5} \|", line)]
    assert len(rows) == 4 and sum(row.endswith("| best |") for row in rows) == 1, table
    assert "champion: models:/drsta/1" in table and "re-evaluated: rank-1" in table
    figures = [Path(line.strip()) for line in table.splitlines() if line.strip().endswith(".png")]
    assert any(path.name == "sweep.png" for path in figures) and all(path.is_file() for path in figures)
    assert (out / "champion" / "model" / "MLmodel").is_file()
    assert "=== demo: results" in done.stdout and "mlflow ui --backend-store-uri" in done.stdout


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
