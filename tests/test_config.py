"""Configuration: strict validation, the shipped YAML files, and the round trip."""

import pytest
import yaml

from drsta.config import ExperimentConfig, ModelConfig
from drsta.resources import CONFIG_DIR

CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))


def test_default_yaml_is_the_serialized_default_config():
    assert ExperimentConfig.from_yaml(CONFIG_DIR / "default.yaml") == ExperimentConfig()


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads_and_round_trips(path):
    cfg = ExperimentConfig.from_yaml(path)
    assert ExperimentConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("name", ["default.yaml", "paper.yaml", "authors_code.yaml"])
def test_recipes_list_every_key_and_say_where_each_value_comes_from(name):
    text = (CONFIG_DIR / name).read_text()
    data = yaml.safe_load(text)
    for section, fields in ExperimentConfig.model_fields.items():
        assert sorted(data[section]) == sorted(fields.annotation.model_fields), section
    if name != "default.yaml":  # the recipes: a source or "our choice" on every value
        values = [line for line in text.splitlines() if line.startswith("  ") and not line.lstrip().startswith("#")]
        assert [line for line in values if "#" not in line] == []


def test_authors_code_recipe_is_the_authors_code():
    cfg = ExperimentConfig.from_yaml(CONFIG_DIR / "authors_code.yaml")
    model, loss, optim = cfg.model, cfg.loss, cfg.optim
    assert (model.backbone, model.num_frames, model.num_attention_models) == ("resnet50", 6, 3)
    assert (model.attention_head, model.attention_hidden_dim, model.component_dim) == ("shared", 64, 128)
    assert (loss.diversity_reduction, loss.diversity_weight) == ("authors_sqrt_sum", 1.0)
    assert (loss.oim_weight, loss.oim_scale, loss.oim_momentum) == (1.0, 30.0, 0.5)
    assert (optim.optimizer, optim.momentum, optim.weight_decay) == ("sgd", 0.9, 5e-4)
    assert (optim.lr, optim.lr * optim.trunk_lr_scale) == (0.1, pytest.approx(0.01))
    assert (optim.step_size, optim.gamma, optim.epochs) == (40, 0.1, 50)


def test_paper_recipe_is_the_papers_architecture_with_open_reid_training():
    cfg = ExperimentConfig.from_yaml(CONFIG_DIR / "paper.yaml")
    # The library's defaults are the paper's architecture, but for Eq. 1's scale: the printed one is one-hot at ResNet
    # scale, so the defaults divide Φ by √D (ModelConfig.enhancement_similarity).
    assert cfg.model == ModelConfig(enhancement_similarity="inner_product")
    assert (cfg.loss.diversity_reduction, cfg.loss.triplet_weight, cfg.loss.xent_weight) == ("mean_squared", 0, 0)
    assert (cfg.data.crop_p, cfg.data.flip_p, cfg.data.erase_p) == (1.0, 0.5, 0.0)  # open-reid's augmentation


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
        ({"model": {"spatial_pooling": "max"}}, "model.spatial_pooling"),
        ({"model": {"attention_head": "both"}}, "model.attention_head"),
        ({"model": {"temporal_pooling": "lstm"}}, "model.temporal_pooling"),
        ({"model": {"component_dim": 0}}, "model.component_dim"),
        ({"model": {"spatial_pooling": "average"}}, "model: .*num_attention_models to 1"),
        ({"loss": {"diversity_reduction": "sum"}}, "loss.diversity_reduction"),
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


def test_yaml_syntax_error_names_the_file_line_and_column(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("model:\n  sigma: 1.0\n  num_frames: [4\ntrain:\n  name: x\n")
    with pytest.raises(ValueError, match=r"broken\.yaml line 4 column 6: not valid YAML \(.*\); fix the file") as err:
        ExperimentConfig.from_yaml(path)
    assert "\n" not in str(err.value)


def test_a_file_that_is_not_text_is_named(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"model:\n  sigma: \xff\xfe\x00\x81\n")
    with pytest.raises(ValueError, match=r"binary\.yaml.*not valid YAML"):
        ExperimentConfig.from_yaml(path)


def test_scalar_top_level_and_empty_file(tmp_path):
    path = tmp_path / "scalar.yaml"
    path.write_text("3\n")
    with pytest.raises(ValueError, match=r"scalar\.yaml must hold a mapping of sections .* got a YAML int"):
        ExperimentConfig.from_yaml(path)
    path.write_text("")
    assert ExperimentConfig.from_yaml(path) == ExperimentConfig()


def test_one_problem_is_one_line_and_an_unknown_key_lists_the_known_ones():
    with pytest.raises(ValueError) as err:
        ExperimentConfig.from_dict({"optim": {"learning_rate": 0.1}}, source="x.yaml")
    assert str(err.value).startswith("invalid x.yaml: optim.learning_rate: unknown key")
    assert "the known keys are optimizer, lr, " in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"modle: unknown key .*known keys are model, input"):
        ExperimentConfig.from_dict({"modle": {}})
    with pytest.raises(ValueError, match=r"invalid config:\n  model\.sigma: .*\n  loss\.oim_scale: "):
        ExperimentConfig.from_dict({"model": {"sigma": 0}, "loss": {"oim_scale": 0}})
