"""What drsta prints while it works: a line per epoch (or per trial result in a sweep), progress bars, and Ray's
own logging kept to warnings unless `drsta --verbose`.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import sys
from collections.abc import Mapping
from typing import Any

from tqdm import tqdm

from pipelines.commands import VERBOSE_VARIABLE

RAY_LOGGERS = ("ray", "ray.data", "ray.train", "ray.tune", "ray.serve")
# Warnings of Ray's that say nothing to act on, kept for --verbose: a local Ray's token authentication being on
# (Ray's default), and Ray Data's progress bars being off (drsta turns them off).
RAY_NOTICES = ("ray._private.authentication.authentication_token_setup", "ray.data._internal.progress")
# Ray Train logs every report, its whole metrics dict, at INFO on a logger named by its file path (not "ray.train").
RAY_TRAIN_REPORTS = "ray.train.v2._internal.execution.context"
PARTS_SKIPPED = {"train/loss", "train/lr", "train/diversity"}  # shown on their own, or not at all


def verbose() -> bool:
    """Whether `drsta --verbose` asked for Ray's own output (inherited by a local Ray's processes)."""
    return os.environ.get(VERBOSE_VARIABLE) == "1"


def ray_logging_level() -> int:
    """The level of Ray's loggers: INFO with --verbose, else WARNING."""
    return logging.INFO if verbose() else logging.WARNING


def quiet_ray_loggers() -> None:
    """Ray's loggers in this process (a driver or a Ray Train worker) at `ray_logging_level`, its notices and
    Optuna's study lines (a sweep's searcher) off unless --verbose."""
    for name in RAY_LOGGERS:
        logging.getLogger(name).setLevel(ray_logging_level())
    for name in RAY_NOTICES:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose() else logging.ERROR)
    if (reports := importlib.util.find_spec(RAY_TRAIN_REPORTS)) and reports.origin:
        logging.getLogger(reports.origin).setLevel(ray_logging_level())
    # Optuna sets its logger to INFO when imported (with Ray Tune's searchers): set again here, after that.
    logging.getLogger("optuna").setLevel(ray_logging_level())


def progress_bar(description: str, total: int, unit: str) -> tqdm:
    """A tqdm bar on stderr (`with progress_bar(...) as bar: ... bar.update(n)`), redrawn at most twice a second
    and erased when done; none where stderr is not a terminal (logs keep the commands' own summary lines)."""
    return tqdm(total=total, desc=description, unit=f" {unit}", file=sys.stderr, mininterval=0.5, disable=None,
                leave=False, dynamic_ncols=True)  # fmt: skip


def duration(seconds: float) -> str:
    """`seconds` as 42s, 3m05s or 2h07m."""
    if not math.isfinite(seconds):
        return "?"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def epoch_line(epoch: int, epochs: int, metrics: Mapping[str, float], eta_s: float | None = None) -> str:
    """One line for a finished epoch: loss and its parts, diversity, clips/s, val mAP and rank-1 when
    evaluated, and the time left.

        epoch 3/25  loss 5.812 (oim 5.301 triplet 0.511)  diversity 0.021  10.9 clips/s  mAP 45.1% rank-1 60.2%
          ETA 3m12s            (all on one line)
    """
    words = [f"epoch {epoch + 1}/{epochs}"]
    if "train/loss" in metrics:
        parts = " ".join(f"{key.removeprefix('train/')} {value:.3f}" for key, value in metrics.items()
                         if key.startswith("train/") and key not in PARTS_SKIPPED)  # fmt: skip
        words.append(f"loss {metrics['train/loss']:.3f}" + (f" ({parts})" if parts else ""))
    if "train/diversity" in metrics:
        words.append(f"diversity {metrics['train/diversity']:.3f}")
    if "data/clips_per_s" in metrics:
        words.append(f"{metrics['data/clips_per_s']:.1f} clips/s")
    if metrics.get("val/mAP", -1.0) >= 0:
        words.append(f"mAP {metrics['val/mAP']:.1%} rank-1 {metrics.get('val/rank1', math.nan):.1%}")
    if eta_s is not None:
        words.append(f"ETA {duration(eta_s)}")
    return "  ".join(words)


def trial_line(trial_id: str, params: Mapping[str, Any], epochs: int, metrics: Mapping[str, float]) -> str:
    """A sweep's line for one trial's epoch: which trial, its searched values, then `epoch_line`."""
    values = " ".join(f"{key}={_short(value)}" for key, value in params.items())
    epoch = int(metrics.get("epoch", 0))
    return f"trial {trial_id} ({values})  {epoch_line(epoch, epochs, metrics)}"


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
