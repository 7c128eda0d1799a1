"""MARS.

Reference:
    Zheng et al. MARS: A Video Benchmark for Large-Scale Person Re-identification. ECCV 2016.

URL: http://www.liangzheng.com.cn/Project/project_mars.html

Dataset statistics:
    - identities: 625 (train) + 636 (test).
    - tracklets: 8,298 (train) + 1,980 (query) + 9,330 (gallery).
    - cameras: 6.

Layout: `bbox_train/<pid4>/<pid4>C<cam>T<tracklet4>F<frame3>.jpg` and `bbox_test/...` hold the frames;
`info/{train,test}_name.txt` list every frame name, `info/tracks_{train,test}_info.mat` give each track as rows
[start_index, end_index, pid, camid] (1-based, inclusive, into the name list; camid 1-based) and
`info/query_IDX.mat` picks the query tracks among the test tracks (1-based); the other test tracks are the
gallery. Junk tracks (identity -1, folder `00-1`) are dropped; distractors (identity 0) stay in the gallery.
A few query identities have no gallery match in the official split; they are kept as published.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from drsta.data.datasets._common import check_split, dataset_root, load_mat, require, sort_by_frame
from drsta.data.tracklet import Role, Tracklet

LAYOUT = (
    "MARS layout: bbox_train/, bbox_test/ and info/ with train_name.txt, test_name.txt, tracks_train_info.mat, "
    "tracks_test_info.mat, query_IDX.mat"
)
JUNK_PID = -1
_FRAME = re.compile(r"(?P<track>(\d{4}|00-1)C\d+T\d+)F(?P<frame>\d+)\.jpg")


def scan(root: str | Path, split: int = 0) -> list[Tracklet]:
    """The train, query and gallery tracklets of the MARS copy at `root`, in the info files' order.

    Args:
        root: the folder holding bbox_train/, bbox_test/ and info/.
        split: must be 0 (MARS has one split).
    """
    check_split(split, 1, "MARS")
    root = dataset_root(root, LAYOUT)
    train_names, train_tracks = _read_part(root, "train")
    test_names, test_tracks = _read_part(root, "test")
    query_rows = _query_rows(root / "info" / "query_IDX.mat", len(test_tracks))
    train_folder = require(root / "bbox_train", LAYOUT)
    test_folder = require(root / "bbox_test", LAYOUT)

    tracklets = [_tracklet(train_folder, train_names, row, "train") for row in train_tracks if row[2] != JUNK_PID]
    for i, row in enumerate(test_tracks):
        if row[2] != JUNK_PID:
            tracklets.append(_tracklet(test_folder, test_names, row, "query" if i in query_rows else "gallery"))
    return tracklets


def _read_part(root: Path, part: str) -> tuple[list[str], np.ndarray]:
    """The frame names and the (num_tracks, 4) track table of `part` ("train" or "test")."""
    names = require(root / "info" / f"{part}_name.txt", LAYOUT).read_text().split()
    mat_path = root / "info" / f"tracks_{part}_info.mat"
    tracks = load_mat(mat_path, f"track_{part}_info", LAYOUT)
    if tracks.ndim != 2 or tracks.shape[1] != 4:
        raise ValueError(
            f"{mat_path}: expected a (num_tracks, 4) array of [start_index, end_index, pid, camid], "
            f"got shape {tracks.shape}"
        )
    return names, tracks.astype(np.int64)


def _query_rows(path: Path, num_test_tracks: int) -> set[int]:
    """0-based rows of the test track table that are queries."""
    query_idx = load_mat(path, "query_IDX", LAYOUT).ravel().astype(np.int64)
    if query_idx.size and not (query_idx.min() >= 1 and query_idx.max() <= num_test_tracks):
        raise ValueError(
            f"{path}: query_IDX must hold 1-based indices into the {num_test_tracks} test tracks, "
            f"got values in [{query_idx.min()}, {query_idx.max()}]"
        )
    return set((query_idx - 1).tolist())


def _tracklet(folder: Path, names: list[str], row: np.ndarray, role: Role) -> Tracklet:
    start, end, pid, camid = (int(v) for v in row)
    if not 1 <= start <= end <= len(names):
        raise ValueError(
            f"track [{start}, {end}] (pid {pid}) lies outside the {len(names)} names listed for {folder.name}; "
            "the info/ name list and track table do not belong together"
        )
    track_names = names[start - 1 : end]
    if track_names[0][:4] != f"{pid:04d}":
        raise ValueError(
            f"track [{start}, {end}] has pid {pid} but its first frame is {track_names[0]}; "
            "the info/ name list and track table do not belong together"
        )
    frames = sort_by_frame((folder / name[:4] / name for name in track_names), _FRAME)
    track = _FRAME.fullmatch(track_names[0])["track"]
    return Tracklet(
        id=f"mars/{track}",
        pid=pid,
        camid=camid - 1,
        role=role,
        dataset="mars",
        split=0,
        source="frames",
        uri=str(folder / track_names[0][:4]),
        frames=frames,
        num_frames=len(frames),
    )
