"""Configuration: strict validation, the shipped YAML files, and the round trip."""

from pathlib import Path

import pytest
import yaml

from drsta.config import ExperimentConfig

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


def test_default_yaml_is_the_serialized_default_config():
    assert ExperimentConfig.from_yaml(Path(__file__).parents[1] / "configs" / "default.yaml") == ExperimentConfig()


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads_and_round_trips(path):
    cfg = ExperimentConfig.from_yaml(path)
    assert ExperimentConfig.from_dict(cfg.to_dict()) == cfg


def test_unknown_key_is_named_with_its_section(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"model": {"num_atention_models": 4}}))
    with pytest.raises(ValueError, match=r"bad.yaml(.|\n)*model.num_atention_models: unknown key"):
        ExperimentConfig.from_yaml(path)


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"model": {"sigma": 0}}, "model.sigma"),
        ({"model": {"num_attention_models": 0}}, "model.num_attention_models"),
        ({"model": {"last_stride": 3}}, "model.last_stride"),
        ({"loss": {"diversity_weight": -1}}, "loss.diversity_weight"),
        ({"input": {"height": 8}}, "input.height"),
    ],
)
def test_bad_values_name_the_key(data, key):
    with pytest.raises(ValueError, match=key):
        ExperimentConfig.from_dict(data)


def test_missing_file_and_non_mapping_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.yaml"):
        ExperimentConfig.from_yaml(tmp_path / "nope.yaml")
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        ExperimentConfig.from_yaml(path)
