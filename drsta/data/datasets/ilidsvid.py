"""iLIDS-VID.

Reference:
    Wang et al. Person Re-Identification by Video Ranking. ECCV 2014.

URL: http://www.eecs.qmul.ac.uk/~xiatian/downloads_qmul_iLIDS-VID_ReID_dataset.html

Dataset statistics:
    - identities: 300.
    - tracklets: 600 (one per person and camera).
    - cameras: 2.

Layout: `i-LIDS-VID/sequences/cam1|cam2/personNNN/cam1_personNNN_FFFFF.png`, and the 10 published splits in
`train-test people splits/train_test_splits_ilidsvid.mat` (variable `ls_set`, shape (10, 300): 1-based
indices into the sorted person folders of cam1). As in Wang et al. and torchreid, the first half of a split's
row are the test persons and the second half the train persons. Train: both cameras of the train persons;
query: cam1 of the test persons; gallery: cam2 of the test persons.
"""

from __future__ import annotations

import re
from pathlib import Path

from drsta.data.datasets._common import check_split, dataset_root, frames_in_folder, load_mat, require, subfolders
from drsta.data.tracklet import Role, Tracklet

LAYOUT = (
    "iLIDS-VID layout: i-LIDS-VID/sequences/cam1|cam2/personNNN/*.png and "
    "'train-test people splits'/train_test_splits_ilidsvid.mat"
)
CAMERAS = ("cam1", "cam2")
_PERSON = re.compile(r"person(\d+)")
_FRAME = re.compile(r"cam\d+_person\d+_(?P<frame>\d+)\.png")


def scan(root: str | Path, split: int = 0) -> list[Tracklet]:
    """The train, query and gallery tracklets of one iLIDS-VID split.

    Args:
        root: the folder holding i-LIDS-VID/ and "train-test people splits/".
        split: which published split (row of `ls_set`), 0-9.
    """
    root = dataset_root(root, LAYOUT)
    sequences = require(root / "i-LIDS-VID" / "sequences", LAYOUT)
    split_path = root / "train-test people splits" / "train_test_splits_ilidsvid.mat"
    ls_set = load_mat(split_path, "ls_set", LAYOUT)
    if ls_set.ndim != 2 or ls_set.shape[1] < 2:
        raise ValueError(f"{split_path}: expected ls_set of shape (num_splits, num_persons), got {ls_set.shape}")
    check_split(split, ls_set.shape[0], "iLIDS-VID")
    persons = [p.name for p in subfolders(require(sequences / CAMERAS[0], LAYOUT))]
    if ls_set.max() > len(persons) or ls_set.min() < 1:
        raise ValueError(
            f"{split_path}: ls_set holds person indices in [{ls_set.min()}, {ls_set.max()}] but "
            f"{sequences / CAMERAS[0]} has {len(persons)} person folders; is the sequences folder complete?"
        )
    num_test = ls_set.shape[1] // 2
    test = sorted(persons[int(i) - 1] for i in ls_set[split, :num_test])
    train = sorted(persons[int(i) - 1] for i in ls_set[split, num_test:])

    roles: list[tuple[list[str], tuple[int, ...], Role]] = [
        (train, (0, 1), "train"),
        (test, (0,), "query"),
        (test, (1,), "gallery"),
    ]
    return [
        _tracklet(sequences, person, camid, role, split)
        for people, camids, role in roles
        for person in people
        for camid in camids
    ]


def _tracklet(sequences: Path, person: str, camid: int, role: Role, split: int) -> Tracklet:
    match = _PERSON.fullmatch(person)
    if match is None:
        raise ValueError(f"person folder {sequences / CAMERAS[camid] / person} is not named personNNN ({LAYOUT})")
    folder = require(sequences / CAMERAS[camid] / person, LAYOUT)
    frames = frames_in_folder(folder, (".png",), _FRAME)
    return Tracklet(
        id=f"ilidsvid/{CAMERAS[camid]}_{person}",
        pid=int(match[1]),
        camid=camid,
        role=role,
        dataset="ilidsvid",
        split=split,
        source="frames",
        uri=str(folder),
        frames=frames,
        num_frames=len(frames),
    )
