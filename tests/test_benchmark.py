"""`drsta benchmark`: the iLIDS-VID protocol (splits ingested, trained in parallel, mean ± std) on a tiny
iLIDS-VID-layout set with 3 splits; its --splits parser, table and summary; its errors before any work."""

import json
import re
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import ray
from PIL import Image
from scipy.io import savemat

from drsta.config import ExperimentConfig
from drsta.resources import CONFIG_DIR
from pipelines import benchmark, cli
from pipelines.benchmark import format_table, parse_splits, summarize

TINY = CONFIG_DIR / "tiny.yaml"
PERSONS = [1, 2, 4, 5, 7, 9, 10, 12]  # numbers with gaps, as in the real set
NUM_SPLITS = 3


def ilids_set(root: Path) -> Path:
    """8 persons in cam1 and cam2, 8-12 frames of 64×32 each, coloured by identity (top and bottom halves), and a
    split file of 3 random half/half splits (`ls_set`: 1-based indices into the sorted person folders)."""
    rng = np.random.default_rng(11)
    for person in PERSONS:
        top, bottom = np.random.default_rng(person).integers(0, 256, (2, 3))
        for camid, camera in enumerate(("cam1", "cam2")):
            folder = root / "i-LIDS-VID" / "sequences" / camera / f"person{person:03d}"
            folder.mkdir(parents=True)
            for frame in range(int(rng.integers(8, 13))):
                image = np.empty((64, 32, 3))
                image[:32], image[32:] = top, bottom
                image += rng.normal(0, 8, image.shape) + 10 * camid  # noise; the second camera a little brighter
                name = f"{camera}_person{person:03d}_{frame:05d}.png"
                Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(folder / name)
    ls_set = np.stack([rng.permutation(len(PERSONS)) + 1 for _ in range(NUM_SPLITS)]).astype(float)
    (root / "train-test people splits").mkdir()
    savemat(root / "train-test people splits" / "train_test_splits_ilidsvid.mat", {"ls_set": ls_set})
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return ilids_set(tmp_path_factory.mktemp("ilids"))


# --- the whole protocol on a real cluster -----------------------------------------------------------------------


@pytest.fixture
def reconnect(ray_cluster):
    """The command ends its Ray connection, as every drsta command does: give the session's back afterwards."""
    yield ray_cluster
    if not ray.is_initialized():
        ray.init(address=ray_cluster.address, log_to_driver=False)


def table_rows(text: str) -> dict[str, list[str]]:
    """The table of results.md as {first cell: the other cells}, for the split and mean ± std rows."""
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("|")]
    return {row[0]: row[1:] for row in rows[2:]}


@pytest.mark.integration
def test_benchmark_trains_each_chosen_split_once_and_reports_mean_and_std(dataset, tmp_path, reconnect, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "bench"
    # Two of the 3 splits, a list with a gap: they train at once (--max-concurrent 2).
    argv = ["benchmark", "--dataset", "ilidsvid", "--root", str(dataset), "--out", str(out), "--splits", "0,2",
            "--config", str(TINY), "--set", "optim.epochs=2", "--max-concurrent", "2",
            "--address", reconnect.address, "--tracking-uri", uri]  # fmt: skip
    start = time.perf_counter()
    cli.main(argv)
    first_s = time.perf_counter() - start
    printed = capsys.readouterr().out
    assert "the middle frame of each of N = 4 equal chunks" in printed and "mean ± std" in printed

    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("drsta").experiment_id
    parents = client.search_runs([experiment], "tags.drsta_benchmark = 'ilidsvid'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0].info.run_id
    children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent}'")
    assert sorted(c.info.run_name for c in children) == ["ilidsvid-split0", "ilidsvid-split2"]
    assert all(c.info.status == "FINISHED" for c in children)
    assert len(client.search_runs([experiment])) == 3

    # Each split's final-epoch evaluation, from its own run: the table's rows; numpy's mean and std: its last row.
    final = {int(c.info.run_name[-1]): {column: [m for m in client.get_metric_history(c.info.run_id, key)
                                                 if m.step == 1][-1].value
                                        for column, key in benchmark.METRICS.items()}
             for c in children}  # fmt: skip
    rows = table_rows((out / "results.md").read_text())
    assert sorted(rows) == ["0", "2", "mean ± std"]
    for split, metrics in final.items():
        expected = [100 * value for value in metrics.values()]
        assert [float(cell) for cell in rows[str(split)]] == pytest.approx(expected, abs=0.051)
    logged = client.get_run(parent).data.metrics
    for i, column in enumerate(benchmark.METRICS):
        values = np.array([metrics[column] for metrics in final.values()])
        mean, std = (float(x) for x in re.fullmatch(r"(\S+) ± (\S+)", rows["mean ± std"][i]).groups())
        assert (mean, std) == pytest.approx((100 * values.mean(), 100 * values.std()), abs=0.051), column
        assert logged[f"benchmark/{column}_mean"] == pytest.approx(values.mean(), abs=1e-9)
        assert logged[f"benchmark/{column}_std"] == pytest.approx(values.std(), abs=1e-9)
    assert rows["mean ± std"][1:4] == ["100.0 ± 0.0"] * 3  # 4 gallery tracklets: rank 5, 10, 20 always find it
    assert json.loads((out / "results.json").read_text())["per_split"]["2"] == pytest.approx(final[2])

    # The same command again: every split is evaluated already, so nothing is ingested or trained again.
    start = time.perf_counter()
    cli.main(argv)
    again_s = time.perf_counter() - start
    printed = capsys.readouterr().out
    assert "split(s) 0, 2 already evaluated" in printed and "training split" not in printed
    assert printed.count("ingest: 16 tracklets in 1 chunks, 1 already done") == 2
    children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent}'")
    assert len(children) == 2 and len(client.search_runs([experiment])) == 3
    assert all(len(client.get_metric_history(c.info.run_id, "train/loss")) == 2 for c in children)
    assert table_rows((out / "results.md").read_text()) == rows
    with capsys.disabled():
        print(f"\nbenchmark: {first_s:.0f} s, again {again_s:.0f} s")


# --- the pieces -------------------------------------------------------------------------------------------------


def test_parse_splits_all_and_lists():
    assert parse_splits("all", 10) == list(range(10))
    assert parse_splits("5, 0,3", 10) == [0, 3, 5]
    assert parse_splits("2", 3) == [2]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0,10", r"--splits '0,10': split 10 is out of range; iLIDS-VID has 10 split\(s\) here, 0\.\.9"),
        ("-1", r"split -1 is out of range"),
        ("0,3,3", r"--splits '0,3,3': split 3 is listed twice"),
        ("0,x", r"--splits '0,x': 'x' is not a split index; give 'all' or indices like 0,3,5"),
        ("1.5", r"'1\.5' is not a split index"),
        ("0,,1", r"'' is not a split index"),
        ("", r"'' is not a split index"),
    ],
)
def test_parse_splits_refuses_bad_lists(text, message):
    with pytest.raises(ValueError, match=message):
        parse_splits(text, 10, "iLIDS-VID")


PER_SPLIT = {
    1: {"rank1": 0.5, "rank5": 0.75, "rank10": 1.0, "rank20": 1.0, "mAP": 0.4},
    0: {"rank1": 0.25, "rank5": 0.5, "rank10": 0.75, "rank20": 1.0, "mAP": 0.3},
    2: {"rank1": 1.0, "rank5": 1.0, "rank10": 1.0, "rank20": 1.0, "mAP": 0.9},
}


def test_summary_is_numpys_mean_and_population_std():
    summary = summarize(PER_SPLIT)
    for column in benchmark.METRICS:
        values = [metrics[column] for metrics in PER_SPLIT.values()]
        assert summary[column] == pytest.approx((np.mean(values), np.std(values)))


def test_table_has_a_row_per_split_in_order_then_mean_and_std():
    table = format_table(PER_SPLIT, summarize(PER_SPLIT))
    assert table.splitlines() == [
        "| split | rank-1 | rank-5 | rank-10 | rank-20 | mAP |",
        "|---:|---:|---:|---:|---:|---:|",
        "| 0 | 25.0 | 50.0 | 75.0 | 100.0 | 30.0 |",
        "| 1 | 50.0 | 75.0 | 100.0 | 100.0 | 40.0 |",
        "| 2 | 100.0 | 100.0 | 100.0 | 100.0 | 90.0 |",
        "| mean ± std | 58.3 ± 31.2 | 75.0 ± 20.4 | 91.7 ± 11.8 | 100.0 ± 0.0 | 53.3 ± 26.2 |",
    ]
    assert "mean" not in format_table(PER_SPLIT, {})


def test_the_descriptor_protocol_is_stated():
    assert "middle frame of each of N = 6 equal chunks" in benchmark.descriptor_protocol(6, 1)
    assert "3 clips per tracklet" in benchmark.descriptor_protocol(6, 3) and "averaged" in (
        benchmark.descriptor_protocol(6, 3)
    )


# --- bad input: one line, exit status 2, before Ray starts ------------------------------------------------------


class RayStarted(Exception):
    """Raised by the patched ray.init: the command got past its checks."""


@pytest.fixture
def no_ray(monkeypatch):
    def init(*args, **kwargs):
        raise RayStarted

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)


def fail(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err, err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--root": "missing"}, r"dataset root .*missing is not a folder"),
        ({"--splits": "0,3"}, r"--splits '0,3': split 3 is out of range; iLIDS-VID has 3 split\(s\) here, 0\.\.2"),
        ({"--splits": "1,1"}, r"split 1 is listed twice"),
        ({"--splits": "one"}, r"'one' is not a split index"),
        ({"--out": "a-file"}, r"--out .*a-file is a file"),
        ({"--out": "full"}, r"--out .*full is not empty and holds no benchmark\.json"),
        ({"--dataset": "mars"}, r"argument --dataset: invalid choice: 'mars'"),
        ({"--max-concurrent": "0"}, r"--max-concurrent must be >= 1"),
        ({"--set": "optim.epochs=0"}, r"optim\.epochs: Input should be greater than or equal to 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_any_work(dataset, tmp_path, capsys, no_ray, change, message):
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    flags = {"--dataset": "ilidsvid", "--root": str(dataset), "--out": str(tmp_path / "out"), "--splits": "0,1"}
    flags |= {key: str(tmp_path / value) if key in ("--root", "--out") else value for key, value in change.items()}
    argv = ["benchmark", *(item for pair in flags.items() for item in pair), "--config", str(TINY)]
    assert re.search(message, fail(argv, capsys))
    assert not (tmp_path / "out").exists()  # nothing claimed


def test_unknown_dataset_is_refused_by_the_function_too(dataset, tmp_path):
    with pytest.raises(ValueError, match=r"unknown dataset 'mars': the split protocol is for ilidsvid, prid2011"):
        benchmark.prepare("mars", dataset, tmp_path / "out", "all", ExperimentConfig())


def test_an_out_of_another_config_is_refused_and_the_same_one_continues(dataset, tmp_path, capsys, no_ray):
    argv = ["benchmark", "--dataset", "ilidsvid", "--root", str(dataset), "--out", str(tmp_path / "out"),
            "--config", str(TINY), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]  # fmt: skip
    with pytest.raises(RayStarted):  # past every check: OUT and each split's ingest directory are claimed
        cli.main(argv)
    record = json.loads((tmp_path / "out" / "benchmark.json").read_text())
    assert record["dataset"] == "ilidsvid" and record["config"]["train"]["storage_path"] == str(tmp_path / "out/runs")
    assert sorted(p.name for p in (tmp_path / "out" / "ingest").iterdir()) == ["split-0", "split-1", "split-2"]
    with pytest.raises(RayStarted):  # the same benchmark again, fewer splits: continues
        cli.main([*argv, "--splits", "1"])
    message = fail([*argv, "--set", "optim.epochs=3", "--set", "model.sigma=2"], capsys)
    assert re.search(r"holds a benchmark with other settings \(model\.sigma, optim\.epochs differ\): .* another --out",
                     message)  # fmt: skip
