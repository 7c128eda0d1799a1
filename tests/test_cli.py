"""The `drsta` command line: help that describes every command with examples and defaults, and imports nothing
heavy; real subcommands for `models` and `jobs`; `--set`, `--version`, `--log-level`; exit statuses."""

import argparse
import dataclasses
import json
import logging
import subprocess
import sys

import pytest

from pipelines import cli, commands

HEAVY = ("torch", "ray", "mlflow", "pyarrow", "decord", "av", "scipy", "matplotlib")
HELP_PROBE = """
import json, sys
from pipelines import cli
for argv in json.loads(sys.argv[1]):
    try:
        cli.main([*argv, "--help"])
    except SystemExit as exit:
        assert exit.code == 0, (argv, exit.code)
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules} & set(json.loads(sys.argv[2])))))
"""


# Imports every command's module (and the modules that `pipelines.cli` does not): none may import the cli.
IMPORT_PROBE = """
import importlib, sys
from pipelines.commands import COMMANDS
for name in [command.module for command in COMMANDS.values()] + ["pipelines.run", "pipelines.train"]:
    importlib.import_module(name)
print("pipelines.cli" in sys.modules)
"""


def every_help() -> list[list[str]]:
    """`drsta --help`, each command's, and each action's of `models` and `jobs`."""
    actions = {"models": ["list", "history", "pull", "promote"], "jobs": ["list", "logs", "stop"]}
    return [[], *([name] for name in commands.COMMANDS), *([name, a] for name, acts in actions.items() for a in acts)]


def subparser(name: str) -> argparse.ArgumentParser:
    choices = next(a for a in commands.build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    return choices[name]


def help_of(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_help_imports_no_torch_ray_or_mlflow():
    """Every help screen, in a fresh interpreter: none of the heavy libraries is imported (help in well under 1 s
    instead of the 6 s their imports take)."""
    probe = subprocess.run([sys.executable, "-c", HELP_PROBE, json.dumps(every_help()), json.dumps(HEAVY)],
                           capture_output=True, text=True, check=True)  # fmt: skip
    assert json.loads(probe.stdout.splitlines()[-1]) == []


def test_no_command_imports_the_cli():
    """The cli imports the commands (to run one), so no command imports the cli: `pipelines.commands` holds what
    they share with it (`WorkFailed`, the --verbose variable)."""
    probe = subprocess.run([sys.executable, "-c", IMPORT_PROBE], capture_output=True, text=True, check=True)
    assert probe.stdout.splitlines()[-1] == "False"


@pytest.mark.parametrize("name", list(commands.COMMANDS))
def test_every_command_has_a_description_examples_and_documented_options(name, capsys):
    out = help_of([name], capsys)
    command = commands.COMMANDS[name]
    assert command.summary in out and "examples:\n  drsta " in out
    for line in command.examples.splitlines():
        assert line in out
    for action in subparser(name)._actions:
        if not isinstance(action, argparse._SubParsersAction):
            assert action.help, f"drsta {name} {action.option_strings or action.dest} has no help"


def test_defaults_are_shown(capsys):
    out = help_of(["synth"], capsys)
    assert "--seed SEED" in out and "(default: 0)" in out and "(default: 60)" in out
    assert "--mars-layout" in out and "(default: False)" not in out  # a flag's default says nothing
    assert "(default: 10)" in help_of(["search"], capsys)


def test_synth_defaults_and_datasets_match_the_library():
    from drsta.data.datasets import READERS
    from drsta.data.synthetic import SyntheticSpec

    spec = dataclasses.asdict(SyntheticSpec())
    fields = {"train_ids": "num_train_ids", "test_ids": "num_test_ids", "cameras": "num_cameras",
              "tracklets_per_camera": "tracklets_per_id_per_camera"}  # fmt: skip
    assert {flag: spec[fields.get(flag, flag)] for flag in commands.SYNTH_DEFAULTS} == commands.SYNTH_DEFAULTS
    assert set(commands.DATASETS) == set(READERS)


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == "drsta 0.1.0"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["models", "pull", "drsta@champion"], "the following arguments are required: --out"),
        (["models", "promote", "--version", "3"], "the following arguments are required: --manifest"),
        (["models", "pull", "--out", "x", "drsta@champion", "--version", "3"], "unrecognized arguments: --version"),
        (["models", "rename"], "invalid choice: 'rename'"),
        (["jobs", "logs"], "the following arguments are required: job_id"),
        (["jobs", "list", "--follow"], "unrecognized arguments: --follow"),
    ],
)
def test_models_and_jobs_actions_have_their_own_options(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_models_and_jobs_parse_into_an_action():
    parser = commands.build_parser()
    args = parser.parse_args(["models", "pull", "drsta@champion", "--out", "m", "--name", "reid"])
    assert (args.subcommand, args.action, args.model, str(args.out), args.name) == ("models", "pull", "drsta@champion",
                                                                                "m", "reid")  # fmt: skip
    args = parser.parse_args(["jobs", "logs", "raysubmit_1", "--follow", "--address", "http://h:8265"])
    assert (args.action, args.job_id, args.follow, args.address) == ("logs", "raysubmit_1", True, "http://h:8265")


def test_submit_keeps_its_own_command_apart_from_drsta_s():
    """`drsta submit ... train ...` runs submit, whose `command` (train) is what the cluster runs."""
    args = commands.build_parser().parse_args(["submit", "--no-wait", "train", "--config", "tiny", "--epochs", "2"])
    assert (args.subcommand, args.command, args.args) == ("submit", "train", ["--config", "tiny", "--epochs", "2"])


@pytest.mark.parametrize("name", ["train", "tune", "evaluate", "demo", "benchmark"])
def test_set_is_on_every_command_that_reads_a_config(name):
    assert "--set" in subparser(name)._option_string_actions


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (["loss.diversity_weight=0", "train.registered_model=null"],
         {"loss.diversity_weight": 0, "train.registered_model": None}),
        (["model.backbone=resnet50", "optim.lr=0.0003"], {"model.backbone": "resnet50", "optim.lr": 0.0003}),
    ],
)  # fmt: skip
def test_parse_settings_reads_values_as_yaml(settings, expected):
    assert commands.parse_settings(settings) == expected


def test_log_level_sets_drsta_loggers():
    root = logging.getLogger().level
    try:
        cli.configure_logging("debug")
        assert logging.getLogger("drsta.data").getEffectiveLevel() == logging.DEBUG
        assert logging.getLogger("pipelines.tune").getEffectiveLevel() == logging.DEBUG
    finally:
        for name in ("drsta", "pipelines"):
            logging.getLogger(name).setLevel(logging.NOTSET)
        logging.getLogger().setLevel(root)


def test_work_failed_exits_1_and_usage_errors_2(monkeypatch, capsys):
    import pipelines.jobs

    def failing(args):
        raise commands.WorkFailed("2 of 3 trials errored")

    monkeypatch.setattr(pipelines.jobs, "run", failing)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["jobs", "list"])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == "drsta jobs: error: 2 of 3 trials errored\n"
