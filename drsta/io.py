"""Files that a later run trusts: written atomically, read back with an error that names a damaged file.

A file written with `write_atomic` is either absent, the old version or the whole new version — never half of
it — so a run killed mid-write (Ctrl-C, OOM, a preempted node) cannot leave a truncated file that the next run
reads. The readers turn a file that is damaged anyway (a disk error, an edit by hand, a copy cut short) into a
ValueError naming the file and what to do, instead of a parser's traceback.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import yaml


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write `data` (str is UTF-8 encoded) to `path` atomically; creates missing parent directories.

    The data goes to a hidden temporary file beside `path` (same directory, so same file system), is flushed and
    fsynced, then renamed over `path` (`os.replace`: atomic on POSIX and Windows). On any failure the temporary
    file is removed and `path` is left as it was.

    Returns:
        `path`, as a Path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.partial")
    # os.open rather than tempfile.mkstemp: mkstemp creates mode 0600, os.open gives the usual 0666 & ~umask.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:  # includes KeyboardInterrupt: never leave the temporary file behind
        temporary.unlink(missing_ok=True)
        raise
    return path


def read_json(path: str | Path, remedy: str) -> Any:
    """The JSON value stored in `path`.

    Args:
        path: an existing file.
        remedy: what the user should do if the file is damaged, e.g. "delete DIR and run drsta ingest again".

    Raises:
        ValueError: the file is not valid JSON (truncated or garbled); the message names it and `remedy`.
    """
    path = Path(path)
    try:
        return json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is damaged (not valid JSON: {err}); {remedy}") from None


def read_yaml(path: str | Path, remedy: str = "fix it and try again") -> Any:
    """The YAML document stored in `path` (None for an empty file).

    Raises:
        FileNotFoundError: `path` is not a file.
        ValueError: a syntax error, with the file, its line and column (1-based) and `remedy`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found" + (" (it is a directory)" if path.is_dir() else ""))
    try:
        return yaml.safe_load(path.read_bytes())
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path} line {mark.line + 1} column {mark.column + 1}" if mark is not None else str(path)
        problem = " ".join(part for part in (err.context, err.problem) if part)
        raise ValueError(f"{where}: not valid YAML ({problem}); {remedy}") from None
    except yaml.YAMLError as err:  # e.g. bytes that are no text encoding YAML reads
        raise ValueError(f"{path}: not valid YAML ({' '.join(str(err).split())}); {remedy}") from None


FIGURE_SUFFIXES = (".png", ".jpg", ".jpeg")
"""The image files drsta's figures are written as (matplotlib and PIL write them)."""


def check_new_figure(path: Path, force: bool, flag: str) -> None:
    """`path` (given as `flag`) must name an image file a figure is written as, and a new one unless `force`."""
    if path.suffix.lower() not in FIGURE_SUFFIXES:
        raise ValueError(f"{flag} {path}: give an image file name ending in {', '.join(FIGURE_SUFFIXES)}")
    if path.is_dir():
        raise IsADirectoryError(f"{flag} {path} is a directory: give an image file name")
    if path.exists() and not force:
        raise FileExistsError(f"{flag} {path} exists: choose another path, or pass --force to overwrite it")
