"""Bad inputs to the registry and consumer commands: one-line errors naming the input, nothing lost or left
behind (no stray store, no half-pulled model, no overwritten output)."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from drsta.config import ExperimentConfig
from drsta.model import build_model
from drsta.resources import CONFIG_DIR
from pipelines.cli import main
from pipelines.run import TrainingRun, resolve_paths
from pipelines.tracking import RunTracker, default_tracking_uri, log_model, set_alias

pytestmark = pytest.mark.integration

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
TINY = CONFIG_DIR / "tiny.yaml"


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    root = tmp_path_factory.mktemp("consumer-errors")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    cfg = ExperimentConfig.from_yaml(TINY).with_overrides({"loss.xent_weight": 0.0})
    tracker = RunTracker(uri, "drsta", "errors", artifact_location=str(root / "artifacts"))
    tracker.start()
    clips = torch.rand(2, cfg.model.num_frames, 3, cfg.input.height, cfg.input.width)
    version = log_model(tracker, build_model(cfg.model).eval(), clips, cfg.to_dict(), {}, "fingerprint")
    set_alias("drsta", "champion", version.version, uri)
    frames = root / "frames"
    frames.mkdir()
    for i in range(6):
        pixels = np.random.default_rng(i).integers(0, 255, (cfg.input.height, cfg.input.width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(frames / f"{i}.png")
    return {"uri": uri, "frames": frames}


def fail(argv: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return exit_info.value.code, err


def test_models_list_of_an_unknown_name(registry, capsys):
    code, err = fail(["models", "list", "--name", "nope", "--tracking-uri", registry["uri"]], capsys)
    assert code == 2 and "no registered model 'nope'" in err and "drsta" in err


def test_pull_into_a_file_or_of_an_unknown_alias_leaves_nothing(registry, tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("keep me")
    code, err = fail(["models", "pull", "drsta@champion", "--out", str(target), "--tracking-uri", registry["uri"]],
                     capsys)  # fmt: skip
    assert code == 2 and "is a file" in err and target.read_text() == "keep me"
    new = tmp_path / "new" / "dir"
    code, err = fail(["models", "pull", "drsta@nope", "--out", str(new), "--tracking-uri", registry["uri"]], capsys)
    assert code == 2 and "no alias 'nope'" in err and not new.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    fail(["models", "pull", "drsta/9", "--out", str(empty), "--tracking-uri", registry["uri"]], capsys)
    assert empty.is_dir() and not any(empty.iterdir())  # kept, as it was


def test_a_read_only_command_never_creates_a_store(registry, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    code, err = fail(["embed", str(registry["frames"]), "--model", "models:/nope/1", "--out", "e.parquet"], capsys)
    assert code == 2 and "no MLflow store" in err and "--tracking-uri" in err
    code, err = fail(["models", "list"], capsys)
    assert code == 2 and "no MLflow store" in err
    assert list(tmp_path.iterdir()) == []


def test_explain_refuses_an_existing_or_unnamed_output(registry, tmp_path, capsys):
    base = [str(registry["frames"]), "--model", "models:/drsta@champion", "--tracking-uri", registry["uri"]]
    code, err = fail(["explain", *base, "--out", str(tmp_path / "noext")], capsys)
    assert code == 2 and "noext" in err and ".png" in err
    existing = tmp_path / "fig.png"
    existing.write_bytes(b"keep me")
    code, err = fail(["explain", *base, "--out", str(existing)], capsys)
    assert code == 2 and "--force" in err and existing.read_bytes() == b"keep me"
    main(["explain", *base, "--out", str(existing), "--force"])
    assert Image.open(existing).size[0] > 100


def test_search_refuses_a_negative_top_k(registry, tmp_path, capsys):
    code, err = fail(["search", "--gallery", str(tmp_path / "g.parquet"), "--query", str(registry["frames"]),
                      "--top-k", "-1"], capsys)  # fmt: skip
    assert code == 2 and "--top-k -1" in err


@pytest.mark.parametrize("kind", ["file", "foreign", "cwd"])
def test_demo_never_writes_into_an_output_it_did_not_create(tmp_path, capsys, monkeypatch, kind):
    out = tmp_path / "out"
    if kind == "file":
        out.write_text("keep me")
    else:
        out.mkdir()
        (out / "synth").mkdir()
        (out / "synth" / "precious.txt").write_text("keep me")
        (out / "champion").mkdir()
    if kind == "cwd":
        monkeypatch.chdir(out)
        out = Path(".")
    code, err = fail(["demo", "--out", str(out)], capsys)
    assert code == 2 and ("not created by drsta demo" in err or "is a file" in err), err
    if kind == "file":
        assert (tmp_path / "out").read_text() == "keep me"
    else:
        assert (tmp_path / "out" / "synth" / "precious.txt").read_text() == "keep me"
        assert (tmp_path / "out" / "champion").is_dir() and not (tmp_path / "out" / ".drsta-demo").exists()


def test_tracking_uri_credentials_go_to_the_environment_not_the_config(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    secret_uri = "https://alice:s%40cret@mlflow.example:5000"
    assert default_tracking_uri(secret_uri) == "https://mlflow.example:5000"
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "alice" and os.environ["MLFLOW_TRACKING_PASSWORD"] == "s@cret"
    cfg = ExperimentConfig().with_overrides({"data.manifest": str(tmp_path), "train.tracking_uri": secret_uri,
                                             "train.storage_path": str(tmp_path / "results")})  # fmt: skip
    assert "cret" not in json.dumps(resolve_paths(cfg).to_dict())
    with pytest.raises(ValueError, match="differ from") as error:
        default_tracking_uri("https://bob:other@mlflow.example:5000")
    assert "other" not in str(error.value)


def test_a_damaged_run_record_is_named(tmp_path):
    run = TrainingRun(str(tmp_path), "run-1")
    run.write_record({"mlflow_run_id": "abc"})
    assert run.read_record() == {"mlflow_run_id": "abc"}
    assert [p.name for p in (tmp_path / ".drsta-runs").iterdir()] == ["run-1.json"]  # no temporary file left
    (tmp_path / ".drsta-runs" / "run-1.json").write_text('{"mlflow_run')
    with pytest.raises(ValueError, match=r"run-1\.json is damaged"):
        run.read_record()
