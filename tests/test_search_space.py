"""Search spaces: every shipped space builds; bad spaces are refused with the file, the key and what is allowed."""

from pathlib import Path

import pytest
import yaml

from drsta.search_space import SearchSpace

SPACES = sorted((Path(__file__).parents[1] / "tune_spaces").glob("*.yaml"))


@pytest.mark.parametrize("path", SPACES, ids=[p.name for p in SPACES])
def test_every_shipped_space_builds(path):
    space, base = SearchSpace.from_yaml(path)
    assert space.params
    for key, distribution in space.params.items():
        for value in distribution.extremes():
            base.with_overrides({key: value})


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"model.num_atention_models": {"choice": [1, 2]}}, r"params.model.num_atention_models(.|\n)*unknown"),
        ({"model.sigma": {"loguniform": [0.0, 1.0]}}, "low > 0"),
        ({"model.sigma": {"uniform": [-1.0, 1.0]}}, r"params.model.sigma: -1.0 is not allowed(.|\n)*greater than 0"),
        ({"model.num_attention_models": {"choice": []}}, "at least one value"),
        ({"model.num_attention_models": {"choice": [0, 2]}}, "params.model.num_attention_models: 0 is not allowed"),
        ({"model.sigma": {"gauss": [1, 2]}}, "gauss"),
        ({"model.sigma": {"uniform": [2.0, 1.0]}}, "low < high"),
        ({"model.sigma": {"uniform": [1.0, 2.0], "choice": [1.0]}}, "exactly one"),
    ],
)
def test_bad_spaces_name_the_file_and_key(tmp_path, params, match):
    path = write(tmp_path, {"params": params})
    with pytest.raises(ValueError, match=match) as err:
        SearchSpace.from_yaml(path)
    assert str(path) in str(err.value)


def test_grid_needs_choices_and_unknown_top_level_keys_are_refused(tmp_path):
    with pytest.raises(ValueError, match="grid searcher needs choice"):
        SearchSpace.from_yaml(write(tmp_path, {"searcher": "grid", "params": {"model.sigma": {"uniform": [1, 2]}}}))
    with pytest.raises(ValueError, match="num_sample"):
        SearchSpace.from_yaml(write(tmp_path, {"num_sample": 3, "params": {"model.sigma": {"choice": [1.0]}}}))
    with pytest.raises(ValueError, match="overrides"):
        SearchSpace.from_yaml(write(tmp_path, {"overrides": {"x.y": 1}, "params": {"model.sigma": {"choice": [1.0]}}}))


def test_yaml_syntax_error_names_the_file_line_and_column(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("params:\n  model.sigma: {choice: [1.0, 2.0}\n")
    with pytest.raises(ValueError, match=r"space\.yaml line 2 column \d+: not valid YAML") as err:
        SearchSpace.from_yaml(path)
    assert "\n" not in str(err.value)


def test_empty_or_non_mapping_space_is_refused(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("")
    with pytest.raises(ValueError, match=r"space\.yaml: expected a mapping with params .*, got an empty file"):
        SearchSpace.from_yaml(path)
    path.write_text("- model.sigma\n")
    with pytest.raises(ValueError, match=r"got a YAML list"):
        SearchSpace.from_yaml(path)


def test_unknown_top_level_key_lists_the_known_ones(tmp_path):
    path = write(tmp_path, {"num_sample": 3, "params": {"model.sigma": {"choice": [1.0]}}})
    with pytest.raises(ValueError, match=r"num_sample: unknown key .*known keys are base_config, searcher, num_samp"):
        SearchSpace.from_yaml(path)


def test_missing_base_config_names_the_space_file(tmp_path):
    path = write(tmp_path, {"base_config": "../nope.yaml", "params": {"model.sigma": {"choice": [1.0]}}})
    with pytest.raises(FileNotFoundError, match=r"space\.yaml: base_config \.\./nope\.yaml not found .*relative to"):
        SearchSpace.from_yaml(path)
