"""`drsta train` arguments: YAML, then --set overrides, then named flags; bad settings named."""

import argparse

import pytest

from pipelines import commands, train_command
from pipelines.tune import sweep
from tests.spaces import SMOKE


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    commands.train_arguments(parser)
    return parser.parse_args(argv)


def test_set_and_flags_override_the_yaml_in_order():
    args = parse("--config", "synthetic_cpu", "--set", "loss.diversity_weight=0", "--set",
                 "train.registered_model=null", "--set", "train.num_workers=3", "--num-workers", "4")  # fmt: skip
    cfg = train_command.config_from_args(args)
    assert cfg.loss.diversity_weight == 0 and cfg.train.registered_model is None
    assert cfg.train.num_workers == 4  # the named flag wins over --set
    assert cfg.model.backbone == "resnet18"  # from the YAML


@pytest.mark.parametrize(("setting", "match"), [("lossdiversity=1", "SECTION.KEY=VALUE"),
                                                ("loss.nope=1", "unknown config key"),
                                                ("model.sigma=-1", "model.sigma")])  # fmt: skip
def test_bad_settings_are_named(setting, match):
    with pytest.raises(ValueError, match=match):
        train_command.config_from_args(parse("--set", setting))


def test_worker_node_labels_take_a_ray_label_selector_and_a_bad_one_is_refused_before_any_run(tmp_path):
    cfg = train_command.config_from_args(parse("--set", "train.worker_node_labels={drsta-role: train}"))
    assert cfg.train.worker_node_labels == {"drsta-role": "train"}
    cfg.with_overrides({"train.worker_node_labels": {"drsta-role": "in(train,both)", "zone": "!a"}})
    with pytest.raises(ValueError, match=r"train.worker_node_labels .*train node.*ray start --labels"):
        cfg.with_overrides({"train.worker_node_labels": {"drsta-role": "train node"}, "data.manifest": str(tmp_path),
                            "train.tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"})  # fmt: skip
    with pytest.raises(ValueError, match=r"train.worker_node_labels .*train node"):
        sweep(SMOKE, tmp_path, "labelled", overrides={"train.worker_node_labels": {"drsta-role": "train node"},
                                                      "train.storage_path": str(tmp_path / "trials")})  # fmt: skip
    assert list(tmp_path.iterdir()) == []  # no manifest read, no MLflow store, no run or sweep started
