"""`drsta train` arguments: YAML, then --set overrides, then named flags; bad settings named."""

import argparse

import pytest

from pipelines import commands, train_command


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
