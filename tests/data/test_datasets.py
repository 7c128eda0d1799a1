"""Dataset readers on tiny fixture trees in each dataset's exact on-disk layout (zero-byte frames: never opened)."""

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

from drsta.data.datasets import READERS, duke, ilidsvid, mars, prid2011, videos
from drsta.data.tracklet import Tracklet


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return path


def by_role(tracklets: list[Tracklet], role: str) -> list[Tracklet]:
    return [t for t in tracklets if t.role == role]


def frame_names(tracklet: Tracklet) -> list[str]:
    return [Path(f).name for f in tracklet.frames]


def test_readers_table_names_every_reader():
    expected = {
        "mars": mars.scan,
        "ilidsvid": ilidsvid.scan,
        "prid2011": prid2011.scan,
        "duke": duke.scan,
        "videos": videos.scan,
    }
    assert expected == READERS


@pytest.mark.parametrize("name", sorted(READERS))
def test_missing_root_names_the_folder(name, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        READERS[name](missing)


# --- MARS -------------------------------------------------------------------------------------------------------


def write_mars_part(root: Path, part: str, tracks: list[tuple[str, list[int]]]) -> None:
    """bbox_<part>/ frames, info/<part>_name.txt and info/tracks_<part>_info.mat for (track name, frame numbers)."""
    names, rows = [], []
    for track, frame_numbers in tracks:
        pid = -1 if track.startswith("00-1") else int(track[:4])
        start = len(names) + 1
        names += [f"{track}F{n:03d}.jpg" for n in frame_numbers]
        rows.append([start, len(names), pid, int(track[5])])
    for name in names:
        touch(root / f"bbox_{part}" / name[:4] / name)
    (root / "info").mkdir(exist_ok=True)
    (root / "info" / f"{part}_name.txt").write_text("\n".join(names) + "\n")
    savemat(root / "info" / f"tracks_{part}_info.mat", {f"track_{part}_info": np.array(rows, dtype=np.int32)})


@pytest.fixture
def mars_root(tmp_path: Path) -> Path:
    root = tmp_path / "mars"
    train = [("0001C1T0001", [2, 3, 1]), ("0001C2T0001", [1, 2]), ("0003C6T0002", [1, 2, 3, 4])]
    test = [
        ("0002C1T0001", [1, 2]),  # query
        ("0002C3T0001", [1, 2, 3]),
        ("00-1C1T0001", [1]),  # junk: dropped
        ("0000C2T0001", [1, 2]),  # distractor: kept in the gallery
        ("0004C1T0001", [1]),  # query
        ("0004C5T0002", [1, 2]),
    ]
    write_mars_part(root, "train", train)
    write_mars_part(root, "test", test)
    savemat(root / "info" / "query_IDX.mat", {"query_IDX": np.array([[1, 5]], dtype=np.int32)})
    return root


def test_mars_roles_pids_and_cameras(mars_root):
    tracklets = mars.scan(mars_root)
    assert Counter(t.role for t in tracklets) == {"train": 3, "query": 2, "gallery": 3}
    assert [t.id for t in by_role(tracklets, "query")] == ["mars/0002C1T0001", "mars/0004C1T0001"]
    gallery = by_role(tracklets, "gallery")
    assert [(t.pid, t.camid) for t in gallery] == [(2, 2), (0, 1), (4, 4)]
    assert [(t.pid, t.camid) for t in by_role(tracklets, "train")] == [(1, 0), (1, 1), (3, 5)]
    assert all(t.pid != -1 for t in tracklets)
    assert all(t.dataset == "mars" and t.split == 0 and t.source == "frames" for t in tracklets)
    assert all(t.num_frames == len(t.frames) and t.height == t.width == 0 for t in tracklets)


def test_mars_frames_are_absolute_existing_and_in_frame_order(mars_root, monkeypatch):
    monkeypatch.chdir(mars_root.parent)
    first = mars.scan("mars")[0]
    assert first.uri == str(mars_root / "bbox_train" / "0001")
    assert frame_names(first) == ["0001C1T0001F001.jpg", "0001C1T0001F002.jpg", "0001C1T0001F003.jpg"]
    assert all(Path(f).is_absolute() and Path(f).is_file() for f in first.frames)


def test_mars_missing_info_file_is_named(mars_root):
    (mars_root / "info" / "tracks_test_info.mat").unlink()
    with pytest.raises(FileNotFoundError, match=r"info/tracks_test_info\.mat \(MARS layout"):
        mars.scan(mars_root)


def test_mars_wrong_mat_key_is_named(mars_root):
    savemat(mars_root / "info" / "tracks_test_info.mat", {"tracks": np.zeros((1, 4))})
    with pytest.raises(ValueError, match=r"no variable 'track_test_info' \(found \['tracks'\]\)"):
        mars.scan(mars_root)


def test_mars_query_index_out_of_range(mars_root):
    savemat(mars_root / "info" / "query_IDX.mat", {"query_IDX": np.array([[1, 7]])})
    with pytest.raises(ValueError, match=r"query_IDX must hold 1-based indices into the 6 test tracks"):
        mars.scan(mars_root)


def test_mars_name_list_and_track_table_must_agree(mars_root):
    savemat(mars_root / "info" / "tracks_train_info.mat", {"track_train_info": np.array([[1, 3, 9, 1]])})
    with pytest.raises(ValueError, match=r"pid 9 but its first frame is 0001C1T0001F002\.jpg"):
        mars.scan(mars_root)


def test_mars_has_one_split(mars_root):
    with pytest.raises(ValueError, match=r"split must be in 0\.\.0, got 1"):
        mars.scan(mars_root, split=1)


# --- iLIDS-VID --------------------------------------------------------------------------------------------------

ILIDS_PERSONS = ["person001", "person002", "person005", "person007"]  # numbers have gaps, as in the real set


@pytest.fixture
def ilids_root(tmp_path: Path) -> Path:
    root = tmp_path / "ilids"
    for camera in ("cam1", "cam2"):
        for person in ILIDS_PERSONS:
            for n in (317, 9, 120):  # created out of order
                touch(root / "i-LIDS-VID" / "sequences" / camera / person / f"{camera}_{person}_{n:05d}.png")
    ls_set = np.stack([np.roll(np.arange(1, 5), i) for i in range(10)])  # row i: 1-based person indices
    (root / "train-test people splits").mkdir()
    savemat(root / "train-test people splits" / "train_test_splits_ilidsvid.mat", {"ls_set": ls_set.astype(float)})
    return root


@pytest.mark.parametrize(("split", "test_pids", "train_pids"), [(0, [1, 2], [5, 7]), (1, [1, 7], [2, 5])])
def test_ilidsvid_first_half_of_a_split_row_is_the_test_set(ilids_root, split, test_pids, train_pids):
    tracklets = ilidsvid.scan(ilids_root, split=split)
    train, query, gallery = (by_role(tracklets, role) for role in ("train", "query", "gallery"))
    assert [(t.pid, t.camid) for t in train] == [(p, c) for p in train_pids for c in (0, 1)]
    assert [(t.pid, t.camid) for t in query] == [(p, 0) for p in test_pids]
    assert [(t.pid, t.camid) for t in gallery] == [(p, 1) for p in test_pids]
    assert all(t.split == split and t.dataset == "ilidsvid" for t in tracklets)
    assert query[0].id == "ilidsvid/cam1_person001"


def test_ilidsvid_frames_in_frame_order(ilids_root):
    first = ilidsvid.scan(ilids_root)[0]
    assert first.uri == str(ilids_root / "i-LIDS-VID" / "sequences" / "cam1" / "person005")
    assert frame_names(first) == [f"cam1_person005_{n:05d}.png" for n in (9, 120, 317)]


@pytest.mark.parametrize("split", [-1, 10])
def test_ilidsvid_split_out_of_range(ilids_root, split):
    with pytest.raises(ValueError, match=rf"split must be in 0\.\.9, got {split}"):
        ilidsvid.scan(ilids_root, split=split)


def test_ilidsvid_missing_split_file_is_named(ilids_root):
    (ilids_root / "train-test people splits" / "train_test_splits_ilidsvid.mat").unlink()
    with pytest.raises(FileNotFoundError, match=r"train_test_splits_ilidsvid\.mat \(iLIDS-VID layout"):
        ilidsvid.scan(ilids_root)


def test_ilidsvid_wrong_mat_key_is_named(ilids_root):
    savemat(ilids_root / "train-test people splits" / "train_test_splits_ilidsvid.mat", {"splits": np.ones((10, 4))})
    with pytest.raises(ValueError, match="no variable 'ls_set'"):
        ilidsvid.scan(ilids_root)


# --- PRID2011 ---------------------------------------------------------------------------------------------------


def write_prid(root: Path, num_frames: dict[str, dict[int, int]]) -> Path:
    """cam_a/cam_b person folders with the given number of frames per person number."""
    for camera, persons in num_frames.items():
        for pid, count in persons.items():
            for n in reversed(range(1, count + 1)):
                touch(root / "prid_2011" / "multi_shot" / camera / f"person_{pid:04d}" / f"{n:04d}.png")
    return root


@pytest.fixture
def prid_root(tmp_path: Path) -> Path:
    cam_a = {pid: 21 for pid in range(1, 9)} | {9: 30}  # 9: cam_a only
    cam_b = {pid: 25 for pid in range(1, 9)} | {3: 20, 10: 30}  # 3: too short in cam_b; 10: cam_b only
    return write_prid(tmp_path / "prid", {"cam_a": cam_a, "cam_b": cam_b})


ELIGIBLE = [1, 2, 4, 5, 6, 7, 8]  # in both cameras with >= 21 frames in each


def test_prid2011_uses_persons_in_both_cameras_with_enough_frames(prid_root):
    tracklets = prid2011.scan(prid_root)
    train, query, gallery = (by_role(tracklets, role) for role in ("train", "query", "gallery"))
    train_pids, test_pids = {t.pid for t in train}, {t.pid for t in query}
    assert sorted(train_pids | test_pids) == ELIGIBLE and not train_pids & test_pids
    assert (len(test_pids), len(train_pids)) == (3, 4)
    assert [t.camid for t in train] == [0, 1] * 4
    assert {t.camid for t in query} == {0} and {t.camid for t in gallery} == {1}
    assert [t.pid for t in query] == [t.pid for t in gallery]
    assert query[0].id == f"prid2011/cam_a_person_{query[0].pid:04d}"
    assert all(t.num_frames >= 21 for t in tracklets)


def test_prid2011_min_frames_filter(prid_root):
    pids = {t.pid for t in prid2011.scan(prid_root, min_frames=20)}
    assert sorted(pids) == sorted([*ELIGIBLE, 3])
    with pytest.raises(ValueError, match="0 person folder"):
        prid2011.scan(prid_root, min_frames=31)
    with pytest.raises(ValueError, match="min_frames must be >= 1"):
        prid2011.scan(prid_root, min_frames=0)


def test_prid2011_splits_are_deterministic_and_seeded_by_index(prid_root):
    test_sets = []
    for split in range(10):
        tracklets = prid2011.scan(prid_root, split=split)
        assert tracklets == prid2011.scan(prid_root, split=split)
        test_pids = sorted(t.pid for t in by_role(tracklets, "query"))
        expected = sorted(ELIGIBLE[i] for i in np.random.default_rng(split).permutation(len(ELIGIBLE))[:3])
        assert test_pids == expected
        test_sets.append(tuple(test_pids))
    assert len(set(test_sets)) > 1


def test_prid2011_frames_in_frame_order_when_not_zero_padded(tmp_path):
    root = tmp_path / "prid"
    for camera in ("cam_a", "cam_b"):
        for n in (2, 10, 1):
            touch(root / "prid_2011" / "multi_shot" / camera / "person_0001" / f"{n}.png")
            touch(root / "prid_2011" / "multi_shot" / camera / "person_0002" / f"{n}.png")
    tracklets = prid2011.scan(root, min_frames=3)
    assert all(frame_names(t) == ["1.png", "2.png", "10.png"] for t in tracklets)


@pytest.mark.parametrize("split", [-1, 10])
def test_prid2011_split_out_of_range(prid_root, split):
    with pytest.raises(ValueError, match=r"split must be in 0\.\.9"):
        prid2011.scan(prid_root, split=split)


def test_prid2011_missing_camera_folder_is_named(prid_root):
    (prid_root / "prid_2011" / "multi_shot" / "cam_b").rename(prid_root / "cam_b")
    with pytest.raises(FileNotFoundError, match=r"multi_shot/cam_b \(PRID2011 layout"):
        prid2011.scan(prid_root)


# --- DukeMTMC-VideoReID -----------------------------------------------------------------------------------------


def write_duke_tracklet(root: Path, role: str, pid: int, tracklet: int, cam: int, frame_numbers: list[int]) -> None:
    folder = root / role / f"{pid:04d}" / f"{tracklet:04d}"
    for n in frame_numbers:
        touch(folder / f"{pid:04d}_C{cam}_F{n:04d}_X{10000 + n:05d}.jpg")


@pytest.fixture
def duke_root(tmp_path: Path) -> Path:
    root = tmp_path / "duke"
    write_duke_tracklet(root, "train", 1, 1, 1, [12, 2, 7])  # starts at F0002 and has gaps
    write_duke_tracklet(root, "train", 1, 2, 2, [1, 2])
    write_duke_tracklet(root, "train", 2, 1, 8, [1])
    write_duke_tracklet(root, "query", 5, 1, 3, [1, 2])
    write_duke_tracklet(root, "gallery", 5, 2, 4, [1, 2, 3])
    write_duke_tracklet(root, "gallery", 9, 1, 1, [1])  # a distractor identity
    return root


def test_duke_roles_pids_and_cameras(duke_root):
    tracklets = duke.scan(duke_root)
    assert [(t.role, t.pid, t.camid) for t in tracklets] == [
        ("train", 1, 0),
        ("train", 1, 1),
        ("train", 2, 7),
        ("query", 5, 2),
        ("gallery", 5, 3),
        ("gallery", 9, 0),
    ]
    assert tracklets[3].id == "duke/query/0005/0001"
    assert tracklets[3].uri == str(duke_root / "query" / "0005" / "0001")
    assert all(t.dataset == "duke" and t.split == 0 and t.num_frames == len(t.frames) for t in tracklets)


def test_duke_frames_in_frame_order(duke_root):
    assert [int(name.split("_")[2][1:]) for name in frame_names(duke.scan(duke_root)[0])] == [2, 7, 12]


def test_duke_missing_role_folder_is_named(duke_root):
    (duke_root / "gallery").rename(duke_root / "gal")
    with pytest.raises(FileNotFoundError, match=r"duke/gallery \(DukeMTMC-VideoReID layout"):
        duke.scan(duke_root)


def test_duke_badly_named_frame_is_named(duke_root):
    touch(duke_root / "query" / "0005" / "0001" / "frame1.jpg")
    with pytest.raises(ValueError, match=r"frame1\.jpg does not match"):
        duke.scan(duke_root)


# --- a folder of videos -----------------------------------------------------------------------------------------


@pytest.fixture
def videos_root(tmp_path: Path) -> Path:
    root = tmp_path / "videos"
    for path in ("1/0/a.mp4", "1/1/b.AVI", "10/0/c.mkv", "2/0/d.mov", "2/0/notes.txt"):
        touch(root / path)
    return root


def test_videos_folder_layout(videos_root):
    tracklets = videos.scan(videos_root, role="query")
    assert [(t.id, t.pid, t.camid) for t in tracklets] == [
        ("videos/1/0/a.mp4", 1, 0),
        ("videos/1/1/b.AVI", 1, 1),
        ("videos/2/0/d.mov", 2, 0),
        ("videos/10/0/c.mkv", 10, 0),
    ]
    assert tracklets[0].uri == str(videos_root / "1" / "0" / "a.mp4")
    assert all(t.role == "query" and t.source == "video" and t.frames == () and t.num_frames == 0 for t in tracklets)
    assert all(t.role == "gallery" for t in videos.scan(videos_root))


def test_videos_csv_is_used_when_present(videos_root, tmp_path):
    outside = touch(tmp_path / "elsewhere" / "e.mp4")
    (videos_root / "tracklets.csv").write_text(f"path,pid,camid,role\n1/0/a.mp4,7,3,train\n{outside},8,0,query\n")
    tracklets = videos.scan(videos_root, allow_outside_root=True)  # the absolute path leads outside the root
    assert [(t.pid, t.camid, t.role, t.uri) for t in tracklets] == [
        (7, 3, "train", str(videos_root / "1" / "0" / "a.mp4")),
        (8, 0, "query", str(outside)),
    ]
    assert tracklets[0].id == "videos/1/0/a.mp4"
    assert tracklets[1].id == f"videos/{outside.resolve().as_posix()}"


@pytest.mark.parametrize("spelling", ["absolute", "../elsewhere/e.mp4", "1/../../elsewhere/e.mp4", "link/e.mp4"])
def test_videos_csv_paths_leading_outside_the_root_are_refused(videos_root, tmp_path, spelling):
    outside = touch(tmp_path / "elsewhere" / "e.mp4")
    (videos_root / "link").symlink_to(outside.parent, target_is_directory=True)
    path = str(outside) if spelling == "absolute" else spelling
    (videos_root / "tracklets.csv").write_text(f"path,pid,camid,role\n1/0/a.mp4,1,0,query\n{path},1,1,gallery\n")
    with pytest.raises(ValueError, match=r"tracklets\.csv line 3: .*e\.mp4 leads outside the dataset root") as err:
        videos.scan(videos_root)
    assert "allow_outside_root" in str(err.value) and str(outside) in str(err.value)
    assert [t.uri for t in videos.scan(videos_root, allow_outside_root=True)][1] == str(videos_root / path)


@pytest.mark.parametrize("spelling", ["1/0/./a.mp4", "1/../1/0/a.mp4", "alias/0/a.mp4", "1/0/hardly.mp4"])
def test_videos_one_file_listed_under_two_spellings_is_refused(videos_root, spelling):
    (videos_root / "alias").symlink_to(videos_root / "1", target_is_directory=True)
    (videos_root / "1" / "0" / "hardly.mp4").symlink_to(videos_root / "1" / "0" / "a.mp4")
    (videos_root / "tracklets.csv").write_text(f"path,pid,camid,role\n1/0/a.mp4,1,0,query\n{spelling},1,1,gallery\n")
    both = r"is already listed on line 2 as 1/0/a\.mp4 \(both are 1/0/a\.mp4\)"
    with pytest.raises(ValueError, match=rf"tracklets\.csv line 3: .*\.mp4 {both}"):
        videos.scan(videos_root)


def test_videos_ids_are_stable_through_a_symlinked_root(videos_root, tmp_path):
    (tmp_path / "link").symlink_to(videos_root, target_is_directory=True)
    direct = videos.scan(videos_root)
    linked = videos.scan(tmp_path / "link")
    assert [t.id for t in linked] == [t.id for t in direct]
    assert linked[0].uri == str(tmp_path / "link" / "1" / "0" / "a.mp4")  # the path as given, symlinks kept


def test_videos_folder_layout_refuses_symlinks_out_and_one_file_twice(videos_root, tmp_path):
    outside = touch(tmp_path / "elsewhere" / "e.mp4")
    (videos_root / "3" / "0").mkdir(parents=True)
    (videos_root / "3" / "0" / "e.mp4").symlink_to(outside)
    with pytest.raises(ValueError, match=r"folder layout: .*3/0/e\.mp4 leads outside the dataset root"):
        videos.scan(videos_root)
    assert "videos/" + outside.resolve().as_posix() in [t.id for t in videos.scan(videos_root, allow_outside_root=True)]
    (videos_root / "3" / "0" / "e.mp4").unlink()
    (videos_root / "3" / "1").symlink_to(videos_root / "1" / "0", target_is_directory=True)
    with pytest.raises(ValueError, match=r"folder layout: .*3/1/a\.mp4 is the same file as .*1/0/a\.mp4"):
        videos.scan(videos_root)


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ("2/0/d.mov,2,0", "missing 'role'"),
        ("2/0/d.mov,two,0,query", "pid must be a non-negative integer, got 'two'"),
        ("2/0/d.mov,2,-1,query", "camid must be a non-negative integer, got '-1'"),
        ("2/0/d.mov,2,0,probe", "role must be one of"),
        ("2/0/gone.mp4,2,0,query", "video file .*gone.mp4 not found"),
        ("1/0/a.mp4,1,0,query", ".*a.mp4 is already listed on line 2"),
        ("2/0/d.mov,2,0,query,extra", "more values than header columns"),
    ],
)
def test_videos_bad_csv_row_names_the_line_and_problem(videos_root, row, problem):
    (videos_root / "tracklets.csv").write_text(f"path,pid,camid,role\n1/0/a.mp4,1,0,gallery\n{row}\n")
    with pytest.raises(ValueError, match=rf"tracklets\.csv line 3: {problem}"):
        videos.scan(videos_root)


def test_videos_bad_csv_header(videos_root):
    (videos_root / "tracklets.csv").write_text("file,pid,camid,role\n1/0/a.mp4,1,0,gallery\n")
    with pytest.raises(ValueError, match=r"tracklets\.csv line 1: .*missing \['path'\]"):
        videos.scan(videos_root)


def test_videos_bad_folder_name_role_and_empty_root(videos_root, tmp_path):
    with pytest.raises(ValueError, match="role must be one of"):
        videos.scan(videos_root, role="probe")
    (videos_root / "cam").mkdir()
    with pytest.raises(ValueError, match=r"folder .*/cam should be named by a non-negative integer"):
        videos.scan(videos_root)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no video files found"):
        videos.scan(tmp_path / "empty")
