"""A folder of video files, one tracklet per file: footage of your own rather than a benchmark.

Dataset statistics: whatever the folder holds; there is one split.

Two layouts; the CSV is used when present:
    - `tracklets.csv` with the header `path,pid,camid,role`: path relative to the root, pid and camid
      non-negative integers (camid 0-based), role one of train, query, gallery.
    - `<pid>/<camid>/<name>.mp4` (or .avi, .mkv, .mov): every tracklet gets the `role` given to `scan`.

Every video must lie under the root once `..` and symlinks are resolved; absolute paths and paths that lead
outside it are refused unless `allow_outside_root`. A tracklet's id is its resolved path relative to the root
(`videos/<path>`; the resolved absolute path for a video outside it), so one file cannot be listed twice under
two spellings (e.g. once as a query and once in the gallery): that is an error naming both rows.

Frame counts and sizes are not read here (videos are not opened); ingest fills them in.
"""

from __future__ import annotations

import csv
from pathlib import Path

from drsta.data.datasets._common import check_split, dataset_root, list_files, resolve_under_root, subfolders
from drsta.data.tracklet import ROLES, Role, Tracklet

CSV_NAME = "tracklets.csv"
CSV_COLUMNS = ("path", "pid", "camid", "role")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")
LAYOUT = "videos layout: tracklets.csv (header path,pid,camid,role) or <pid>/<camid>/<name>.mp4|.avi|.mkv|.mov"


def scan(
    root: str | Path, split: int = 0, *, role: Role = "gallery", allow_outside_root: bool = False
) -> list[Tracklet]:
    """One tracklet per video file under `root`, from tracklets.csv if present, else from the folder layout.

    Args:
        root: the folder holding tracklets.csv or the <pid>/<camid>/ folders.
        split: must be 0 (one split).
        role: the role of every tracklet found through the folder layout (the CSV gives its own).
        allow_outside_root: accept videos that lie outside `root` (absolute CSV paths, `..`, symlinks out).
    """
    check_split(split, 1, "a videos folder")
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    root = dataset_root(root, LAYOUT)
    csv_path = root / CSV_NAME
    if csv_path.exists():
        tracklets = _from_csv(root, csv_path, allow_outside_root)
    else:
        tracklets = _from_folders(root, role, allow_outside_root)
    if not tracklets:
        raise ValueError(f"no video files found under {root}; expected the {LAYOUT}")
    return tracklets


def _from_csv(root: Path, csv_path: Path, allow_outside_root: bool) -> list[Tracklet]:
    tracklets: list[Tracklet] = []
    first_listed: dict[str, tuple[int, str]] = {}  # tracklet id -> (line, path as written there)
    with csv_path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [column for column in CSV_COLUMNS if column not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"{csv_path} line 1: the header must name {','.join(CSV_COLUMNS)}; missing {missing}")
        for row in reader:
            where = f"{csv_path} line {reader.line_num}"
            tracklet = _csv_row(root, row, where, allow_outside_root)
            written = (row["path"] or "").strip()
            if tracklet.id in first_listed:
                line, first = first_listed[tracklet.id]
                spelling = "" if first == written else f" as {first} (both are {tracklet.id.removeprefix('videos/')})"
                raise ValueError(
                    f"{where}: {tracklet.uri} is already listed on line {line}{spelling}; list each video once"
                )
            first_listed[tracklet.id] = (reader.line_num, written)
            tracklets.append(tracklet)
    return tracklets


def _csv_row(root: Path, row: dict[str | None, str | None], where: str, allow_outside_root: bool) -> Tracklet:
    """The tracklet of one CSV row; `where` ("<csv> line N") starts every error message."""
    if None in row:
        raise ValueError(f"{where}: more values than header columns")
    values = {column: (row[column] or "").strip() for column in CSV_COLUMNS}
    for column, value in values.items():
        if not value:
            raise ValueError(f"{where}: missing {column!r}")
    for column in ("pid", "camid"):
        if not values[column].isdecimal():
            raise ValueError(f"{where}: {column} must be a non-negative integer, got {values[column]!r}")
    if values["role"] not in ROLES:
        raise ValueError(f"{where}: role must be one of {ROLES}, got {values['role']!r}")
    path = root / values["path"]  # an absolute path replaces the root (and is refused unless allowed)
    if not path.is_file():
        raise ValueError(f"{where}: video file {path} not found")
    resolved = resolve_under_root(root, path, where, allow_outside_root)
    return _tracklet(root, path, resolved, int(values["pid"]), int(values["camid"]), values["role"])


def _from_folders(root: Path, role: Role, allow_outside_root: bool) -> list[Tracklet]:
    tracklets = []
    first_found: dict[str, Path] = {}  # tracklet id -> the path it was first found at
    for pid_folder in sorted(subfolders(root), key=_number):
        for cam_folder in sorted(subfolders(pid_folder), key=_number):
            for path in sorted(list_files(cam_folder, VIDEO_SUFFIXES)):
                resolved = resolve_under_root(root, path, "folder layout", allow_outside_root)
                tracklet = _tracklet(root, path, resolved, _number(pid_folder), _number(cam_folder), role)
                if tracklet.id in first_found:
                    raise ValueError(
                        f"folder layout: {path} is the same file as {first_found[tracklet.id]} (both are "
                        f"{resolved}, through a symlink); keep one of them"
                    )
                first_found[tracklet.id] = path
                tracklets.append(tracklet)
    return tracklets


def _number(folder: Path) -> int:
    if not folder.name.isdecimal():
        raise ValueError(f"folder {folder} should be named by a non-negative integer; expected the {LAYOUT}")
    return int(folder.name)


def _tracklet(root: Path, path: Path, resolved: Path, pid: int, camid: int, role: Role) -> Tracklet:
    """The tracklet of the video at `path` (kept as its uri), keyed by `resolved`, its fully resolved path."""
    real_root = root.resolve()
    key = resolved.relative_to(real_root).as_posix() if resolved.is_relative_to(real_root) else resolved.as_posix()
    return Tracklet(
        id=f"videos/{key}",
        pid=pid,
        camid=camid,
        role=role,
        dataset="videos",
        split=0,
        source="video",
        uri=str(path),
        frames=(),
        num_frames=0,
    )
