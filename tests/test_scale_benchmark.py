"""benchmarks/scale.py: its MARS-shaped dataset is read by the MARS reader as MARS's split would be, scaled; its
table shows each figure's growth."""

from collections import Counter
from pathlib import Path

import pytest

from drsta.data.datasets import mars
from tests.benchmark_scripts import load_benchmark

scale = load_benchmark("scale")


def test_the_generated_set_is_mars_scaled_down_in_mars_layout(tmp_path):
    frames = scale.generate_mars(tmp_path / "mars", fraction=128)
    tracklets = mars.scan(tmp_path / "mars")
    roles = Counter(t.role for t in tracklets)
    assert roles == {"train": 8298 // 128, "query": 1980 // 128, "gallery": (1980 + 9330) // 128 - 1980 // 128}
    assert sum(t.num_frames for t in tracklets) == frames and 16 * len(tracklets) <= frames <= 100 * len(tracklets)
    assert len({t.pid for t in tracklets if t.role == "train"}) == 625 // 128
    assert {t.camid for t in tracklets} == set(range(6))
    # Every query's identity has gallery tracklets, in another camera.
    gallery = {(t.pid, t.camid) for t in tracklets if t.role == "gallery"}
    for query in (t for t in tracklets if t.role == "query"):
        assert any(pid == query.pid and camid != query.camid for pid, camid in gallery), query.id
    first = tracklets[0]
    assert Path(first.frames[0]).is_symlink() and Path(first.frames[0]).resolve().is_file()


def test_the_table_has_a_row_per_size_and_the_growth():
    row = {key: 1.0 for key, _, _ in scale.COLUMNS}
    lines = scale.table([row | {"fraction": 16}, {key: 16 * value for key, value in row.items()} | {"fraction": 1}])
    assert lines[2].startswith("| 1/16 |") and lines[3].startswith("| 1/1 |")
    assert lines[4].startswith("| growth 1/16 → 1/1 |") and lines[4].count("16.0×") == len(scale.COLUMNS)


@pytest.mark.parametrize("fraction", [0, -4])
def test_a_fraction_below_one_is_refused(tmp_path, fraction):
    with pytest.raises(ValueError, match="fraction"):
        scale.generate_mars(tmp_path / "mars", fraction)


def test_the_scale_out_table_gives_each_phase_its_rate_against_the_first():
    alone = {"phase": "training node alone", "nodes": 1, "clips_per_s": 40.0, "decode_tasks": 80,
             "decode_elsewhere": 0, "workers_elsewhere": 0}  # fmt: skip
    joined = alone | {"phase": "+ CPU-only node", "nodes": 2, "clips_per_s": 60.0, "decode_elsewhere": 50}
    lines = scale.scale_out_table([alone, joined])
    assert lines[2] == "| training node alone | 1 | 40.0 | 1.00× | 80 | 0 | 0 |"
    assert lines[3] == "| + CPU-only node | 2 | 60.0 | 1.50× | 80 | 50 | 0 |"
