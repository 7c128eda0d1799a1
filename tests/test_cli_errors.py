"""Every bad input to `drsta` gets a one-line error naming the input, exit status 2, and no traceback; failed work
exits with 1. The real console entry runs in-process (`pipelines.cli.main`); Ray must not start for bad input.
Last, `drsta.io.write_atomic`, which keeps a failed write from leaving a damaged file for the next run."""

import json
import os
import re
from pathlib import Path

import pytest
import ray

from drsta.io import write_atomic
from pipelines import cli, ingest


class RayStarted(Exception):
    """Raised by the patched ray.init: the command got past its checks."""


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    def init(*args, **kwargs):
        raise RayStarted

    monkeypatch.setattr(ray, "init", init)
    # As in a fresh process: a Ray connection of the test session must not let a command skip ray.init.
    monkeypatch.setattr(ray, "is_initialized", lambda: False)


def fail(argv: list[str], capsys) -> tuple[int, str]:
    """Run `drsta argv`, expecting an error exit; returns (exit status, stderr) after checking it is clean."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith(f"drsta {argv[0]}: error: "), err
    return exit_info.value.code, err


def test_help_documents_the_exit_statuses(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "exit status:" in out and "1  the work failed" in out and "2  bad usage" in out


# --- config and search-space files ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("model:\n  sigma: 1\n bad: [\n", r"bad\.yaml line 3 column 2: not valid YAML"),
        (b"model:\n  sigma: \xff\xfe\x00\n", r"bad\.yaml.*not valid YAML"),
        ("- 1\n- 2\n", r"bad\.yaml must hold a mapping of sections .*got a YAML list; .*default\.yaml shows every key"),
        ("model:\n  num_atention_models: 4\n", r"model\.num_atention_models: unknown key .*known keys are backbone"),
    ],
    ids=["syntax", "not-text", "not-a-mapping", "unknown-key"],
)
def test_bad_config_file(tmp_path, capsys, content, message):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    code, err = fail(["train", "--config", str(path), "--manifest", str(tmp_path)], capsys)
    assert code == 2
    assert err.count("\n") == 1  # one line
    assert re.search(message, err), err


def test_missing_config_file(tmp_path, capsys):
    code, err = fail(["train", "--config", str(tmp_path / "nope.yaml"), "--manifest", str(tmp_path)], capsys)
    assert code == 2 and "nope.yaml not found" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("params:\n  model.sigma: {choice: [1.0\n", r"space\.yaml line 3 column 1: not valid YAML"),
        ("", r"space\.yaml: expected a mapping with params .*got an empty file"),
        ("params: {model.sigma: {choice: [1.0]}}\nnum_sample: 3\n", r"num_sample: unknown key .*num_samples"),
        ("base_config: nope.yaml\nparams: {model.sigma: {choice: [1.0]}}\n", r"base_config nope\.yaml not found"),
    ],
    ids=["syntax", "empty", "unknown-key", "missing-base"],
)
def test_bad_search_space_file(tmp_path, capsys, content, message):
    path = tmp_path / "space.yaml"
    path.write_text(content)
    code, err = fail(["tune", "--space", str(path), "--manifest", str(tmp_path)], capsys)
    assert code == 2 and err.count("\n") == 1
    assert re.search(message, err), err


# --- synth ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--cameras", "0"], "--cameras must be in 2..9"),
        (["--train-ids", "-1"], "--train-ids must be >= 0, got -1"),
        (["--test-ids", "-3"], "--test-ids must be >= 0, got -3"),
        (["--train-ids", "0", "--test-ids", "0"], "--train-ids + --test-ids must be in 1..9999"),
        (["--seed", "-1"], "--seed must be >= 0"),
        (["--height", "0"], "--height must be even and >= 32, got 0"),
        (["--width", "15"], "--width must be even and >= 16"),
        (["--min-frames", "0"], "--min-frames must be >= 1"),
        (["--min-frames", "10", "--max-frames", "5"], "--max-frames must be >= --min-frames (10), got 5"),
        (["--max-frames", "1000"], "--max-frames must be <= 999"),
        (["--gop", "0"], "--gop must be >= 1"),
        (["--tracklets-per-camera", "0"], "--tracklets-per-camera must be >= 1"),
    ],
)
def test_synth_values_out_of_range_name_the_flag(tmp_path, capsys, flags, message):
    code, err = fail(["synth", "--out", str(tmp_path / "set"), *flags], capsys)
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "set").exists()


def test_synth_out_that_is_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    code, err = fail(["synth", "--out", str(tmp_path / "file")], capsys)
    assert code == 2 and f"{tmp_path / 'file'} is a file" in err
    assert (tmp_path / "file").read_text() == "mine"


# --- ingest -----------------------------------------------------------------------------------------------------


def videos_root(root: Path, rows: list[str]) -> Path:
    """A videos dataset whose tracklets.csv lists `rows` (the listed files exist but are never opened here)."""
    (root / "a").mkdir(parents=True)
    for name in ("x.mp4", "y.mp4"):
        (root / "a" / name).write_bytes(b"not opened")
    (root / "tracklets.csv").write_text("path,pid,camid,role\n" + "".join(row + "\n" for row in rows))
    return root


@pytest.fixture
def dataset(tmp_path) -> Path:
    return videos_root(tmp_path / "videos", ["a/x.mp4,1,0,query", "a/y.mp4,1,1,gallery"])


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--chunk-size", "0"], "--chunk-size must be >= 1 (tracklets per resumable chunk), got 0"),
        (["--chunk-size", "-5"], "--chunk-size must be >= 1"),
        (["--max-bad-fraction", "1.5"], "--max-bad-fraction must be in [0, 1]"),
        (["--max-bad-fraction", "-0.1"], "--max-bad-fraction must be in [0, 1]"),
        (["--max-bad-fraction", "nan"], "--max-bad-fraction must be in [0, 1]"),
        (["--min-frames", "0"], "--min-frames must be >= 1"),
        (["--transcode-gop", "0"], "--transcode-gop must be >= 1"),
        (["--transcode-gop", "-4"], "--transcode-gop must be >= 1"),
        (["--split", "3"], "split must be in 0..0, got 3"),
    ],
)
def test_ingest_values_out_of_range_name_the_flag_before_ray_starts(tmp_path, dataset, capsys, flags, message):
    argv = ["ingest", "--dataset", "videos", "--root", str(dataset), "--out", str(tmp_path / "out"), *flags]
    code, err = fail(argv, capsys)
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_ingest_allow_outside_root_is_for_videos_only(tmp_path, capsys):
    argv = ["ingest", "--dataset", "mars", "--root", str(tmp_path), "--out", str(tmp_path / "o")]
    code, err = fail([*argv, "--allow-outside-root"], capsys)
    assert code == 2 and "--allow-outside-root is for --dataset videos" in err


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_ingest_root_that_is_not_a_folder(tmp_path, capsys, kind):
    root = tmp_path / "root"
    if kind == "file":
        root.write_text("")
    code, err = fail(["ingest", "--dataset", "videos", "--root", str(root), "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and f"dataset root {root} is not a folder" in err


def test_ingest_out_that_is_a_file_or_a_foreign_directory_is_left_alone(tmp_path, dataset, capsys):
    (tmp_path / "file").write_text("mine")
    code, err = fail(["ingest", "--dataset", "videos", "--root", str(dataset), "--out", str(tmp_path / "file")], capsys)
    assert code == 2 and f"--out {tmp_path / 'file'} is a file" in err
    assert (tmp_path / "file").read_text() == "mine"

    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"mine")
    code, err = fail(["ingest", "--dataset", "videos", "--root", str(dataset), "--out", str(tmp_path / "photos")],
                     capsys)  # fmt: skip
    assert code == 2 and "is not empty and holds no ingest.json" in err
    assert sorted(p.name for p in (tmp_path / "photos").iterdir()) == ["holiday.jpg"]


def test_ingest_damaged_ingest_json_is_named(tmp_path, dataset, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "ingest.json").write_text('{"dataset": "videos", "ro')  # cut short
    code, err = fail(["ingest", "--dataset", "videos", "--root", str(dataset), "--out", str(out)], capsys)
    assert code == 2 and err.count("\n") == 1
    assert f"{out / 'ingest.json'} is damaged (not valid JSON" in err and "delete it and run drsta ingest again" in err


def test_ingest_csv_path_outside_the_root_is_refused_unless_allowed(tmp_path, capsys):
    (tmp_path / "outside.mp4").write_bytes(b"not opened")
    root = videos_root(tmp_path / "videos", ["a/x.mp4,1,0,query", "../outside.mp4,1,1,gallery"])
    argv = ["ingest", "--dataset", "videos", "--root", str(root), "--out", str(tmp_path / "out")]
    code, err = fail(argv, capsys)
    assert code == 2 and "tracklets.csv line 3: " in err and "outside.mp4 leads outside the dataset root" in err
    with pytest.raises(RayStarted):  # past every check
        cli.main([*argv, "--allow-outside-root"])


def test_ingest_one_video_listed_twice_under_two_spellings_is_refused(tmp_path, capsys):
    root = videos_root(tmp_path / "videos", ["a/x.mp4,1,0,query", "a/../a/x.mp4,1,1,gallery"])
    code, err = fail(["ingest", "--dataset", "videos", "--root", str(root), "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "tracklets.csv line 3: " in err and "is already listed on line 2 as a/x.mp4" in err


def test_too_many_bad_tracklets_is_failed_work_exit_1(tmp_path, dataset, capsys, monkeypatch):
    def process(*args, **kwargs):
        raise ingest.TooManyBadTracklets("3 of 4 tracklets failed validation")

    monkeypatch.setattr(ray, "init", lambda *args, **kwargs: None)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setattr(ingest, "process", process)
    code, err = fail(["ingest", "--dataset", "videos", "--root", str(dataset), "--out", str(tmp_path / "out")], capsys)
    assert code == 1 and "3 of 4 tracklets failed validation" in err
    assert json.loads((tmp_path / "out" / "ingest.json").read_text())["dataset"] == "videos"


# --- atomic writes ----------------------------------------------------------------------------------------------


def test_write_atomic_writes_text_and_bytes_and_creates_parents(tmp_path):
    path = write_atomic(tmp_path / "a" / "b" / "record.json", '{"ok": true}')
    assert path.read_text() == '{"ok": true}'
    write_atomic(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    (tmp_path / "plain.txt").write_text("x")
    assert path.stat().st_mode == (tmp_path / "plain.txt").stat().st_mode  # the umask applies, not mkstemp's 0600
    assert sorted(p.name for p in path.parent.iterdir()) == ["record.json"]


def test_write_atomic_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "ingest.json"
    path.write_text("old")

    def replace(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, "new")
    monkeypatch.undo()
    with pytest.raises(TypeError):
        write_atomic(path, ["not", "str", "or", "bytes"])  # fails inside the write
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["ingest.json"]
