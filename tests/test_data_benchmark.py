"""benchmarks/data.py: its table puts the Ray Data stream against the raw decode limit and the DataLoader."""

from tests.benchmark_scripts import load_benchmark

data = load_benchmark("data")


def test_the_table_gives_the_stream_against_the_raw_limit_and_the_dataloader():
    row = {"raw": 100.0, "ray": 90.0, "loader": 80.0, "train_alone": 1.5, "ray_train": 1.75, "loader_train": 1.8}
    lines = data.table({"H.264 GOP 4": row}, {"H.264 GOP 4": 480})
    assert len(lines[0].split("|")) == len(lines[1].split("|")) == len(lines[2].split("|"))
    assert lines[2] == "| H.264 GOP 4 | 480 | 100.0 | 90.0 | 0.90× | 1.12× | 80.0 | 0.80× | 1.50 | 1.75 | 1.80 |"
