"""DukeMTMC-VideoReID.

Reference:
    - Ristani et al. Performance Measures and a Data Set for Multi-Target, Multi-Camera Tracking. ECCVW 2016.
    - Wu et al. Exploit the Unknown Gradually: One-Shot Video-Based Person Re-Identification by Stepwise
      Learning. CVPR 2018.

URL: https://github.com/Yu-Wu/DukeMTMC-VideoReID

Dataset statistics:
    - identities: 702 (train) + 702 (test; the gallery adds 408 distractor identities).
    - tracklets: 2,196 (train) + 702 (query) + 2,636 (gallery).
    - cameras: 8.

Layout: `train|query|gallery/<pid4>/<tracklet4>/<pid4>_C<cam>_F<frame4>_X<5 digits>.jpg`; the camera comes
from the C number of the frame names (1-based there, 0-based here). One fixed split.
"""

from __future__ import annotations

import re
from pathlib import Path

from drsta.data.datasets._common import check_split, dataset_root, frames_in_folder, require, subfolders
from drsta.data.tracklet import ROLES, Role, Tracklet

LAYOUT = "DukeMTMC-VideoReID layout: train|query|gallery/<pid4>/<tracklet4>/<pid4>_C<cam>_F<frame4>_X<digits>.jpg"
_FRAME = re.compile(r"\d+_C(?P<cam>\d+)_F(?P<frame>\d+)_X\d+\.jpg")


def scan(root: str | Path, split: int = 0) -> list[Tracklet]:
    """The train, query and gallery tracklets of the DukeMTMC-VideoReID copy at `root`.

    Args:
        root: the folder holding train/, query/ and gallery/ (the unzipped DukeMTMC-VideoReID/).
        split: must be 0 (DukeMTMC-VideoReID has one split).
    """
    check_split(split, 1, "DukeMTMC-VideoReID")
    root = dataset_root(root, LAYOUT)
    return [
        _tracklet(tracklet_folder, role)
        for role in ROLES  # the split folders are named after the roles
        for person_folder in subfolders(require(root / role, LAYOUT))
        for tracklet_folder in subfolders(person_folder)
    ]


def _tracklet(folder: Path, role: Role) -> Tracklet:
    person = folder.parent.name
    if not person.isdecimal():
        raise ValueError(f"person folder {folder.parent} is not a number ({LAYOUT})")
    frames = frames_in_folder(folder, (".jpg",), _FRAME)
    camera = _FRAME.fullmatch(Path(frames[0]).name)["cam"]
    return Tracklet(
        id=f"duke/{role}/{person}/{folder.name}",
        pid=int(person),
        camid=int(camera) - 1,
        role=role,
        dataset="duke",
        split=0,
        source="frames",
        uri=str(folder),
        frames=frames,
        num_frames=len(frames),
    )
