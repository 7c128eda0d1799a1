"""benchmarks/claims_ceiling.py: the best foreground ratio and distinct-part count any map can reach on a grid."""

import numpy as np
import pytest

from tests.benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def ceiling():
    return load_benchmark("claims_ceiling")


def test_a_person_filling_one_of_two_cells_allows_twice_the_uniform_mass(ceiling):
    person = np.array([[[1.0], [0.0]], [[0.5], [0.5]]])  # 2 frames of a 2 × 1 grid
    parts = np.zeros((2, 4, 2, 1))
    parts[0, 0, 0, 0] = 1.0  # frame 0: the head fills the top cell
    parts[1, 1, 0, 0] = parts[1, 2, 1, 0] = 0.5  # frame 1: torso top, legs bottom
    result = ceiling.ceilings(person, parts)
    # (1 + 0.5) / (0.5 + 0.5): all mass on each frame's best cell, pooled over frames as drsta.claims pools
    assert result["foreground_ceiling"] == pytest.approx(1.5)
    assert result["distinct_parts_ceiling"] == 2  # top cell: head (1.0) beats torso (0.5); bottom cell: legs
    # Two maps on distinct cells: each frame's two cells, (1 + 0) / 2 and (0.5 + 0.5) / 2, over the same area.
    assert ceiling.ceilings(person, parts, models=2)["foreground_ceiling"] == pytest.approx(1.0)


def test_grid_flag(ceiling):
    assert ceiling.grid("16x8") == (16, 8)
    with pytest.raises(Exception, match="ROWSxCOLUMNS"):
        ceiling.grid("16by8")
