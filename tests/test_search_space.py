"""Search spaces: every shipped space builds; bad spaces are refused with the file, the key and what is allowed."""

from pathlib import Path

import pytest
import yaml

from drsta.config import ExperimentConfig
from drsta.resources import CONFIG_DIR, SPACE_DIR
from drsta.search_space import SearchSpace, expand_bundles

SPACES = sorted(SPACE_DIR.glob("*.yaml"))


@pytest.mark.parametrize("path", SPACES, ids=[p.name for p in SPACES])
def test_every_shipped_space_builds(path):
    space, base = SearchSpace.from_yaml(path)
    assert space.params
    for key, distribution in space.params.items():
        for value in distribution.extremes():
            base.with_overrides(space.expand({key: value}))


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
    with pytest.raises(FileNotFoundError, match=r"space\.yaml: base_config \.\./nope\.yaml not found: .*relative to"):
        SearchSpace.from_yaml(path)


def test_base_config_is_a_path_relative_to_the_space_file_or_a_built_in_name(tmp_path):
    params = {"model.sigma": {"choice": [1.0]}}
    (tmp_path / "mine.yaml").write_text("optim: {epochs: 3}\n")
    _, base = SearchSpace.from_yaml(write(tmp_path, {"base_config": "mine.yaml", "params": params}))
    assert base.optim.epochs == 3
    _, base = SearchSpace.from_yaml(write(tmp_path, {"base_config": "tiny", "params": params}))
    assert base == ExperimentConfig.from_yaml(CONFIG_DIR / "tiny.yaml")


# --- Bundles: one param setting several keys at once (an ablation's variants, seeds) --------------------------------

VARIANTS = {
    "baseline": {
        "model.spatial_pooling": "average",
        "model.num_attention_models": 1,
        "model.feature_enhancement": False,
    },
    "full": {},
}
SEEDS = {"seed0": {"train.model_seed": 0, "data.seed": 0}, "seed1": {"train.model_seed": 1, "data.seed": 1}}


def test_bundles_grid_over_names_and_expand_into_plain_overrides(tmp_path):
    path = write(tmp_path, {"searcher": "grid", "params": {"variant": {"bundles": VARIANTS}, "seed": {"bundles": SEEDS},
                                                           "model.sigma": {"choice": [0.5, 2.0]}}})  # fmt: skip
    space, base = SearchSpace.from_yaml(path)
    assert space.params["variant"].choice == ["baseline", "full"]  # what Tune samples: the names
    assert space.params["variant"].kind == "bundles"
    assert space.bundles == {"variant": VARIANTS, "seed": SEEDS}
    grid = space.grid()
    assert len(grid) == 2 * 2 * 2 and grid[0] == {"variant": "baseline", "seed": "seed0", "model.sigma": 0.5}
    overrides = space.expand({"variant": "baseline", "seed": "seed1", "model.sigma": 2.0})
    assert overrides == VARIANTS["baseline"] | SEEDS["seed1"] | {"model.sigma": 2.0}
    cfg = base.with_overrides(overrides)
    assert (cfg.model.spatial_pooling, cfg.train.model_seed, cfg.data.seed, cfg.model.sigma) == ("average", 1, 1, 2.0)
    assert space.expand({"variant": "full", "seed": "seed0"}) == SEEDS["seed0"]  # an empty bundle: the base
    # The space as logged (bundles and their derived choice) validates again, as pipelines.tune.load_space does.
    assert SearchSpace.model_validate(space.model_dump()) == space


def test_expanding_an_unknown_bundle_names_the_param_and_the_bundles():
    with pytest.raises(ValueError, match=r"params.variant: no bundle named 'nope' \(the bundles are baseline, full\)"):
        expand_bundles({"variant": "nope"}, {"variant": VARIANTS})
    assert expand_bundles({"model.sigma": 1.0}, {}) == {"model.sigma": 1.0}


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"variant": {"bundles": {"a": {"model.num_atention_models": 2}}}},
         r"params.variant: 'a' is not allowed(.|\n)*unknown config key 'model.num_atention_models'"),
        ({"variant": {"bundles": {"a": {"model.sigma": -1.0}}}}, r"params.variant: 'a' is not allowed(.|\n)*sigma"),
        ({"model.sigma": {"bundles": {"a": {"model.sigma": 1.0}}}}, "a param with bundles is named by a word without"),
        ({"variant": {"bundles": {"a": {"model.sigma": 1.0}}}, "model.sigma": {"choice": [2.0]}},
         "params.variant and params.model.sigma both set model.sigma"),
        ({"variant": {"bundles": {"a": {"data.seed": 1}}}, "seed": {"bundles": {"s": {"data.seed": 0}}}},
         "params.variant and params.seed both set data.seed"),
        ({"variant": {"bundles": {}}}, "bundles needs at least one value"),
        ({"variant": {"bundles": {"a": {}}, "choice": ["b"]}}, "give bundles alone"),
        ({"variant": {"bundles": {"a": {}}, "uniform": [0, 1]}}, "exactly one"),
        ({"variant": {"choice": ["a"]}}, "unknown config key 'variant'"),
    ],
)  # fmt: skip
def test_bad_bundles_name_the_file_the_param_and_the_key(tmp_path, params, match):
    path = write(tmp_path, {"params": params})
    with pytest.raises(ValueError, match=match) as err:
        SearchSpace.from_yaml(path)
    assert str(path) in str(err.value)


def test_grid_validates_every_combination(tmp_path):
    # Each value is fine alone (the base has K = 1), but average pooling with K = 2 is not a model.
    data = {"searcher": "grid", "overrides": {"model.num_attention_models": 1},
            "params": {"variant": {"bundles": {"average": {"model.spatial_pooling": "average"}, "attention": {}}},
                       "model.num_attention_models": {"choice": [1, 2]}}}  # fmt: skip
    with pytest.raises(
        ValueError, match=r"the grid's trial model.num_attention_models=2, variant='average' is not all"
    ):
        SearchSpace.from_yaml(write(tmp_path, data))
    data["searcher"] = "random"  # no grid: only each value alone is checked
    assert len(SearchSpace.from_yaml(write(tmp_path, data))[0].params) == 2


def test_grace_period_is_at_most_the_epochs_and_equal_means_no_early_stopping(tmp_path):
    data = {
        "overrides": {"optim.epochs": 4},
        "scheduler": {"grace_period": 5},
        "params": {"model.sigma": {"choice": [1.0]}},
    }
    with pytest.raises(
        ValueError, match=r"space.yaml: scheduler.grace_period 5 is more than optim.epochs 4 .*set it to at"
    ):
        SearchSpace.from_yaml(write(tmp_path, data))
    data["scheduler"] = {"grace_period": 4}
    assert SearchSpace.from_yaml(write(tmp_path, data))[0].scheduler.grace_period == 4


def test_a_grid_needs_choices_only(tmp_path):
    space, _ = SearchSpace.from_yaml(write(tmp_path, {"params": {"model.sigma": {"uniform": [1.0, 2.0]}}}))
    with pytest.raises(ValueError, match=r"model\.sigma are not choice lists"):
        space.grid()
