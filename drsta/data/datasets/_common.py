"""Helpers the dataset readers share: checked paths, .mat loading, frame listing in temporal order.

Every `layout` argument is a one-line description of the dataset's expected on-disk layout; errors quote it so
a user who pointed `root` at the wrong folder sees what should be there.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import scipy.io


def dataset_root(root: str | Path, layout: str) -> Path:
    """`root` as an absolute path (symlinks kept, `~` expanded), checked to be a folder."""
    path = Path(root).expanduser().absolute()
    if not path.is_dir():
        raise FileNotFoundError(f"dataset root {path} is not a folder; point root at the folder holding the {layout}")
    return path


def resolve_under_root(root: Path, path: Path, where: str, allow_outside_root: bool = False) -> Path:
    """`path` with `..` and symlinks resolved, checked to lie under `root` (also resolved) unless allowed.

    Two spellings of one file (`a/x.mp4`, `a/../a/x.mp4`, `b/x.mp4` through a symlinked `b`) resolve to the same
    path, so readers key tracklets on the result; `where` (e.g. "<csv> line N") starts the error message.
    """
    resolved = path.resolve()
    if not allow_outside_root and not resolved.is_relative_to(root.resolve()):
        raise ValueError(
            f"{where}: {path} leads outside the dataset root {root} (to {resolved}); list files under the root, or "
            "accept this with allow_outside_root=True (drsta ingest --allow-outside-root)"
        )
    return resolved


def require(path: Path, layout: str) -> Path:
    """`path` itself, after checking that it exists."""
    if not path.exists():
        raise FileNotFoundError(f"expected {path} ({layout}); point root at the folder holding this layout")
    return path


def check_split(split: int, num_splits: int, dataset: str) -> None:
    """Raise if `split` is not one of the dataset's split indices."""
    if not 0 <= split < num_splits:
        raise ValueError(f"{dataset} has {num_splits} split(s): split must be in 0..{num_splits - 1}, got {split}")


def load_mat(path: Path, key: str, layout: str) -> np.ndarray:
    """The variable `key` of the MATLAB file at `path`."""
    variables = scipy.io.loadmat(require(path, layout))
    if key not in variables:
        found = sorted(k for k in variables if not k.startswith("__"))
        raise ValueError(f"{path} has no variable {key!r} (found {found}); is it the dataset's original file?")
    return variables[key]


def subfolders(folder: Path) -> list[Path]:
    """The non-hidden subfolders of `folder`, sorted by name."""
    with os.scandir(folder) as entries:
        return sorted(Path(e.path) for e in entries if e.is_dir() and not e.name.startswith("."))


def list_files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """The non-hidden files of `folder` whose suffix (any case) is in `suffixes`, in no particular order."""
    with os.scandir(folder) as entries:
        return [
            Path(e.path)
            for e in entries
            if e.is_file() and not e.name.startswith(".") and Path(e.name).suffix.lower() in suffixes
        ]


def sort_by_frame(paths: Iterable[Path], pattern: re.Pattern[str]) -> tuple[str, ...]:
    """`paths` in temporal order: by the integer in the `frame` group of `pattern` (which must match each name).

    Directory listings come in arbitrary order and frame numbers are not always zero-padded, so neither listing
    order nor name order is temporal order (e.g. 1.png, 10.png, 2.png).
    """
    keyed = []
    for path in paths:
        match = pattern.fullmatch(path.name)
        if match is None:
            raise ValueError(f"frame file {path} does not match the expected name pattern {pattern.pattern!r}")
        keyed.append((int(match["frame"]), path.name, str(path)))
    return tuple(path for _, _, path in sorted(keyed))


def frames_in_folder(folder: Path, suffixes: tuple[str, ...], pattern: re.Pattern[str]) -> tuple[str, ...]:
    """The frame files of `folder` in temporal order; a folder with none is an error."""
    frames = sort_by_frame(list_files(folder, suffixes), pattern)
    if not frames:
        raise ValueError(f"tracklet folder {folder} has no {'/'.join(suffixes)} frames")
    return frames
