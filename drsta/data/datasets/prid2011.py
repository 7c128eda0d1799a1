"""PRID2011.

Reference:
    Hirzer et al. Person Re-Identification by Descriptive and Discriminative Classification. SCIA 2011.

URL: https://www.tugraz.at/institute/icg/research/team-bischof/lrs/downloads/PRID11/

Dataset statistics:
    - identities: 385 (cam_a) and 749 (cam_b); persons 1-200 appear in both.
    - tracklets: 356 used (the 178 persons with at least 21 frames in both cameras, one per camera).
    - cameras: 2.

Layout: `prid_2011/multi_shot/cam_a|cam_b/person_NNNN/NNNN.png`.

Splits: the literature evaluates on 10 random halves of the 178 persons, but papers ship different split files.
These 10 splits are generated here, deterministically: split i shuffles the persons (sorted by number) with
`numpy.random.default_rng(i)`; the first half are the test persons and the rest the train persons, as for
iLIDS-VID. Train: both cameras of the train persons; query: cam_a and gallery: cam_b of the test persons.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from drsta.data.datasets._common import check_split, dataset_root, frames_in_folder, require, subfolders
from drsta.data.tracklet import Role, Tracklet

LAYOUT = "PRID2011 layout: prid_2011/multi_shot/cam_a|cam_b/person_NNNN/NNNN.png"
CAMERAS = ("cam_a", "cam_b")
NUM_SPLITS = 10
_PERSON = re.compile(r"person_(\d+)")
_FRAME = re.compile(r"(?P<frame>\d+)\.png")


def scan(root: str | Path, split: int = 0, *, min_frames: int = 21) -> list[Tracklet]:
    """The train, query and gallery tracklets of one PRID2011 split.

    Args:
        root: the folder holding prid_2011/.
        split: which of the 10 generated splits, 0-9.
        min_frames: persons with fewer frames than this in either camera are left out (21 gives the usual 178).
    """
    check_split(split, NUM_SPLITS, "PRID2011")
    if min_frames < 1:
        raise ValueError(f"min_frames must be >= 1, got {min_frames}")
    root = dataset_root(root, LAYOUT)
    multi_shot = root / "prid_2011" / "multi_shot"
    cam_folders = [require(multi_shot / camera, LAYOUT) for camera in CAMERAS]
    in_both = set.intersection(*({p.name for p in subfolders(folder)} for folder in cam_folders))
    frames = {
        person: [frames_in_folder(folder / person, (".png",), _FRAME) for folder in cam_folders] for person in in_both
    }
    persons = sorted((p for p in in_both if min(len(f) for f in frames[p]) >= min_frames), key=_pid)
    if len(persons) < 2:
        raise ValueError(
            f"{multi_shot}: {len(persons)} person folder(s) in both cam_a and cam_b with at least {min_frames} "
            "frames each; a split needs 2 or more"
        )

    order = np.random.default_rng(split).permutation(len(persons))
    num_test = len(persons) // 2
    test = sorted((persons[i] for i in order[:num_test]), key=_pid)
    train = sorted((persons[i] for i in order[num_test:]), key=_pid)

    roles: list[tuple[list[str], tuple[int, ...], Role]] = [
        (train, (0, 1), "train"),
        (test, (0,), "query"),
        (test, (1,), "gallery"),
    ]
    return [
        _tracklet(cam_folders[camid] / person, frames[person][camid], camid, role, split)
        for people, camids, role in roles
        for person in people
        for camid in camids
    ]


def _pid(person: str) -> int:
    match = _PERSON.fullmatch(person)
    if match is None:
        raise ValueError(f"person folder {person!r} is not named person_NNNN ({LAYOUT})")
    return int(match[1])


def _tracklet(folder: Path, frames: tuple[str, ...], camid: int, role: Role, split: int) -> Tracklet:
    return Tracklet(
        id=f"prid2011/{CAMERAS[camid]}_{folder.name}",
        pid=_pid(folder.name),
        camid=camid,
        role=role,
        dataset="prid2011",
        split=split,
        source="frames",
        uri=str(folder),
        frames=frames,
        num_frames=len(frames),
    )
