"""What drsta prints: the epoch and trial lines, durations, and Ray kept quiet unless --verbose."""

import logging
import math
import os

import pytest

from pipelines import cli, commands, console

EPOCH = {"val/mAP": 0.4512, "train/loss": 5.8124, "train/diversity": 0.0213, "train/oim": 5.3011,
         "train/triplet": 0.5113, "train/lr": 3e-4, "data/clips_per_s": 10.94, "val/rank1": 0.6024}  # fmt: skip


def test_epoch_line_has_loss_parts_diversity_speed_scores_and_eta():
    line = console.epoch_line(2, 25, EPOCH, eta_s=192)
    assert line == ("epoch 3/25  loss 5.812 (oim 5.301 triplet 0.511)  diversity 0.021  10.9 clips/s  "
                    "mAP 45.1% rank-1 60.2%  ETA 3m12s")  # fmt: skip


def test_epoch_line_without_evaluation_or_eta():
    line = console.epoch_line(0, 4, EPOCH | {"val/mAP": -1.0})  # how Ray Train gets an epoch without evaluation
    assert "mAP" not in line and "ETA" not in line and line.startswith("epoch 1/4  loss 5.812")


def test_trial_line_names_the_trial_and_its_values():
    line = console.trial_line("a1b2_00003", {"model.sigma": 0.123456, "variant": "drsta"}, 4, EPOCH | {"epoch": 1})
    assert line.startswith("trial a1b2_00003 (model.sigma=0.123 variant=drsta)  epoch 2/4  loss 5.812")


@pytest.mark.parametrize(("seconds", "text"), [(0.4, "0s"), (42, "42s"), (185, "3m05s"), (7620, "2h07m"),
                                               (math.inf, "?")])  # fmt: skip
def test_duration(seconds, text):
    assert console.duration(seconds) == text


def test_ray_is_quiet_unless_verbose(monkeypatch):
    for key in (*cli.QUIET_LIBRARIES, commands.VERBOSE_VARIABLE):
        monkeypatch.delenv(key, raising=False)
    cli.configure_logging("info", verbose=False)
    assert os.environ["RAY_DATA_DISABLE_PROGRESS_BARS"] == "1" and os.environ["RAY_DATA_LOG_LEVEL"] == "WARNING"
    assert not console.verbose() and console.ray_logging_level() == logging.WARNING
    console.quiet_ray_loggers()
    assert logging.getLogger("ray.train").level == logging.WARNING
    assert all(logging.getLogger(name).level == logging.ERROR for name in console.RAY_NOTICES)

    for key in cli.QUIET_LIBRARIES:
        monkeypatch.delenv(key)
    cli.configure_logging("info", verbose=True)
    assert console.verbose() and console.ray_logging_level() == logging.INFO
    assert not any(key in os.environ for key in cli.QUIET_LIBRARIES)
    console.quiet_ray_loggers()
    assert logging.getLogger("ray.train").level == logging.INFO
    assert all(logging.getLogger(name).getEffectiveLevel() == logging.INFO for name in console.RAY_NOTICES)


def test_progress_bar_stays_out_of_logs(capsys):
    """Where stderr is no terminal (a log file, CI), the bar prints nothing: the commands' summary lines remain."""
    with console.progress_bar("ingest", total=3, unit="tracklets") as bar:
        bar.update(3)
    assert capsys.readouterr().err == ""
