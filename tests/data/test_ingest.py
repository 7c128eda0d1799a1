"""Ingest on a real Ray cluster: validation, quarantine, transcoding, the report, resuming and the bad limit."""

import csv
import io
import json
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from drsta.data.annotations import ANNOTATIONS_FILE
from drsta.data.decode import read_clip
from drsta.data.encode import write_video
from drsta.data.manifest import read_manifest, read_manifest_annotations
from drsta.data.synthetic import SyntheticSpec, generate
from pipelines.ingest import TooManyBadTracklets, ingest, prepare

pytestmark = pytest.mark.integration


def gradient_frames(num_frames: int, height: int = 48, width: int = 64, offset: int = 0) -> np.ndarray:
    """Frames whose brightness encodes their index (coarsely, enough to survive H.264)."""
    levels = (offset + np.arange(num_frames) * 9) % 250
    return np.broadcast_to(levels[:, None, None, None], (num_frames, height, width, 3)).astype(np.uint8)


def video_set(root: Path, bad: dict[str, bytes | None]) -> Path:
    """A video-folder dataset: 6 good videos (2 ids × train/query/gallery) plus the `bad` files."""
    rows = []
    for pid in (1, 2):
        for camid, role in enumerate(("train", "query", "gallery")):
            path = root / f"{pid}" / f"{camid}" / "clip.mp4"
            write_video(gradient_frames(8 + pid, offset=pid * 40), path, gop=4)
            rows.append([path.relative_to(root), pid, camid, role])
    for name, content in bad.items():
        path = root / "bad" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content or b"")
        rows.append([path.relative_to(root), 3, 0, "gallery"])
    with open(root / "tracklets.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "pid", "camid", "role"])
        writer.writerows(rows)
    return root


def test_videos_are_validated_and_bad_ones_quarantined_with_a_reason(tmp_path, ray_cluster):
    root = tmp_path / "videos"
    write_video(gradient_frames(20), tmp_path / "whole.mp4")
    whole = (tmp_path / "whole.mp4").read_bytes()
    video_set(root, {"empty.mp4": None, "garbage.mp4": b"not a video" * 50, "truncated.mp4": whole[: len(whole) // 2]})
    report = ingest("videos", root, tmp_path / "out", max_bad_fraction=0.5, chunk_size=4)
    assert report["valid"] == 6 and report["quarantined"] == 3
    reasons = {Path(r["uri"]).name: r["reason"] for r in report["quarantine"]}
    assert "empty (0 bytes)" in reasons["empty.mp4"]
    assert "not a decodable video" in reasons["garbage.mp4"]
    assert "not a decodable video" in reasons["truncated.mp4"]
    assert report["roles"]["train"] == {"tracklets": 2, "identities": 2, "cameras": [0]}
    assert report["roles"]["query"]["tracklets"] == 2 and report["roles"]["gallery"]["tracklets"] == 2
    assert json.loads((tmp_path / "out" / "report.json").read_text()) == report
    tracklets = read_manifest(tmp_path / "out")
    assert sorted(t.num_frames for t in tracklets) == [9, 9, 9, 10, 10, 10]
    assert {(t.height, t.width) for t in tracklets} == {(48, 64)}


def jpeg_declaring(path: Path, height: int, width: int) -> None:
    """A small JPEG whose header (SOF0) declares height × width pixels: what PIL sees of a decompression bomb."""
    encoded = io.BytesIO()
    Image.new("L", (8, 8)).save(encoded, "JPEG")
    data = bytearray(encoded.getvalue())
    sof = data.index(b"\xff\xc0")  # marker, length (2 bytes), precision (1), height (2), width (2)
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(data)


def frame_folder_set(root: Path) -> Path:
    """A DukeMTMC-VideoReID tree: good tracklets, one with mixed frame sizes, one with an unreadable frame, one
    with a decompression bomb (a 20000×20000 frame)."""
    for role, pid, tracklet, sizes in [
        ("train", 1, 1, [(32, 16)] * 5),
        ("train", 2, 1, [(32, 16)] * 7),
        ("query", 3, 1, [(32, 16)] * 6),
        ("gallery", 3, 2, [(32, 16)] * 6),
        ("gallery", 4, 1, [(32, 16), (30, 16), (32, 16)]),  # mixed sizes
    ]:
        folder = root / role / f"{pid:04d}" / f"{tracklet:04d}"
        folder.mkdir(parents=True)
        for frame, (height, width) in enumerate(sizes, start=1):
            pixels = gradient_frames(frame + 1, height, width)[-1]
            Image.fromarray(np.ascontiguousarray(pixels)).save(
                folder / f"{pid:04d}_C{tracklet}_F{frame:04d}_X00001.jpg"
            )
    broken = root / "gallery" / "0005" / "0001"
    broken.mkdir(parents=True)
    for frame in (1, 2):
        Image.fromarray(gradient_frames(2)[-1]).save(broken / f"0005_C2_F{frame:04d}_X00001.jpg")
    (broken / "0005_C2_F0003_X00001.jpg").write_bytes(b"\xff\xd8 truncated jpeg")
    bomb = root / "gallery" / "0006" / "0001"
    bomb.mkdir(parents=True)
    Image.fromarray(gradient_frames(1, 32, 16)[0]).save(bomb / "0006_C1_F0001_X00001.jpg")
    jpeg_declaring(bomb / "0006_C1_F0002_X00001.jpg", 20000, 20000)
    return root


def test_frame_folders_are_transcoded_to_h264_with_the_given_keyframe_gap(tmp_path, ray_cluster):
    root = frame_folder_set(tmp_path / "duke")
    report = ingest("duke", root, tmp_path / "out", transcode_gop=2, max_bad_fraction=0.5)
    assert report["valid"] == 4 and report["quarantined"] == 3
    reasons = {r["id"]: r["reason"] for r in report["quarantine"]}
    assert "mixed frame sizes" in reasons["duke/gallery/0004/0001"]
    assert "unreadable image" in reasons["duke/gallery/0005/0001"]
    bomb = root / "gallery/0006/0001/0006_C1_F0002_X00001.jpg"
    assert reasons["duke/gallery/0006/0001"].startswith(f"{bomb}: refused as a possible decompression bomb (")
    tracklets = {t.id: t for t in read_manifest(tmp_path / "out")}
    assert report["sources"] == {"video": 4}
    train = tracklets["duke/train/0002/0001"]
    assert train.source == "video" and train.num_frames == 7 and Path(train.uri).is_file()
    assert (train.height, train.width) == (32, 18)  # 32×16 frames, widened by 2 px to a width decord decodes
    frames_then = read_clip("frames", "", sorted(map(str, (root / "train/0002/0001").iterdir())), range(7), (32, 18))
    frames_now = read_clip("video", train.uri, (), range(7))
    assert np.abs(frames_now.astype(int) - frames_then.astype(int)).mean() < 3

    import decord

    assert list(decord.VideoReader(train.uri).get_key_indices()) == [0, 2, 4, 6]


def test_videos_of_the_widths_decord_misreads_are_ingested_not_quarantined(tmp_path, ray_cluster):
    root = tmp_path / "videos"
    # decord2 fails at 16 and 48 everywhere, at 72 or 144 depending on the CPU (PyAV decodes them); 40 stays on decord
    widths = [16, 48, 72, 144, 40]
    for pid, width in enumerate(widths):
        write_video(gradient_frames(5, height=32, width=width, offset=pid * 40), root / f"{pid}/0/clip.mp4", gop=2)
    report = ingest("videos", root, tmp_path / "out")
    assert report["valid"] == len(widths) and report["quarantined"] == 0
    tracklets = sorted(read_manifest(tmp_path / "out"), key=lambda t: t.pid)
    assert [(t.num_frames, t.height, t.width) for t in tracklets] == [(5, 32, width) for width in widths]
    for t in tracklets:
        clip = read_clip("video", t.uri, (), [4, 0])
        expected = gradient_frames(5, height=32, width=t.width, offset=t.pid * 40)[[4, 0]]
        assert np.abs(clip.astype(int) - expected).mean() < 3


def test_rerun_skips_finished_chunks_and_redoes_only_a_missing_one(tmp_path, ray_cluster):
    root = video_set(tmp_path / "videos", {})
    out = tmp_path / "out"
    ingest("videos", root, out, chunk_size=2)
    parts = sorted((out / "manifest").glob("part-*.parquet"))
    assert len(parts) == 3
    stamps = {p.name: p.stat().st_mtime_ns for p in parts}
    parts[1].unlink()  # as if the run had died before finishing this chunk
    report = ingest("videos", root, out, chunk_size=2)
    assert report["valid"] == 6
    assert parts[0].stat().st_mtime_ns == stamps[parts[0].name]
    assert parts[2].stat().st_mtime_ns == stamps[parts[2].name]
    assert parts[1].exists()


def test_other_settings_into_the_same_output_are_refused(tmp_path, ray_cluster):
    root = video_set(tmp_path / "videos", {})
    ingest("videos", root, tmp_path / "out", chunk_size=2)
    with pytest.raises(ValueError, match="chunk_size"):
        ingest("videos", root, tmp_path / "out", chunk_size=3)


def test_too_many_bad_tracklets_stop_the_run_and_keep_finished_work(tmp_path, ray_cluster):
    root = video_set(tmp_path / "videos", {f"bad{i}.mp4": b"junk" * 10 for i in range(4)})
    out = tmp_path / "out"
    with pytest.raises(TooManyBadTracklets, match="max-bad-fraction"):
        ingest("videos", root, out, chunk_size=2, max_bad_fraction=0.1)
    finished = list((out / "manifest").glob("part-*.parquet"))
    assert finished  # what was done stays on disk
    report = ingest("videos", root, out, chunk_size=2, max_bad_fraction=0.5)  # resumes with a higher limit
    assert report["valid"] == 6 and report["quarantined"] == 4


@pytest.mark.parametrize(
    ("dataset", "make", "match"),
    [
        ("mars", lambda p: p, "expected"),
        ("videos", lambda p: p / "missing", "missing"),
    ],
)
def test_wrong_layout_and_missing_root_are_clear(tmp_path, ray_cluster, dataset, make, match):
    with pytest.raises((FileNotFoundError, ValueError), match=match):
        ingest(dataset, make(tmp_path), tmp_path / "out")


def test_unknown_dataset(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset"):
        ingest("market", tmp_path, tmp_path / "out")


def test_files_are_left_only_in_the_output_directory(tmp_path, ray_cluster):
    root = video_set(tmp_path / "videos", {})
    before = set(os.listdir(root))
    ingest("videos", root, tmp_path / "out")
    assert set(os.listdir(root)) == before


def test_a_deleted_quarantine_part_makes_its_chunk_run_again(tmp_path, ray_cluster):
    root = video_set(tmp_path / "videos", {"bad.mp4": b"junk" * 10})
    out = tmp_path / "out"
    first = ingest("videos", root, out, chunk_size=2, max_bad_fraction=0.5)
    assert first["quarantined"] == 1
    (bad_part,) = [p for p in (out / "quarantine").glob("part-*.parquet") if pq.read_metadata(p).num_rows]
    bad_part.unlink()  # as if lost: the chunk's manifest part alone no longer marks it done
    again = ingest("videos", root, out, chunk_size=2, max_bad_fraction=0.5)
    assert again["quarantined"] == 1 and again == first
    assert bad_part.exists()
    assert not [p.name for p in out.rglob("*") if p.name.startswith(".")]  # no temporary files left


def test_a_damaged_manifest_part_is_named_and_redone_once_deleted(tmp_path, ray_cluster):
    root = video_set(tmp_path / "videos", {})
    out = tmp_path / "out"
    ingest("videos", root, out, chunk_size=2)
    part = out / "manifest" / "part-00001.parquet"
    part.write_bytes(part.read_bytes()[:100])  # cut short, e.g. by a copy that stopped
    with pytest.raises(ValueError, match=r"part-00001\.parquet is damaged .*delete it and run drsta ingest again"):
        read_manifest(out)
    with pytest.raises(ValueError, match=r"part-00001\.parquet is damaged"):
        ingest("videos", root, out, chunk_size=2)
    part.unlink()
    assert ingest("videos", root, out, chunk_size=2)["valid"] == 6


@pytest.mark.parametrize("content", ['{"dataset": "vid', "[]", "\xff"])
def test_a_damaged_ingest_json_is_named_before_any_work(tmp_path, content):
    root = video_set(tmp_path / "videos", {})
    out = tmp_path / "out"
    out.mkdir()
    (out / "ingest.json").write_text(content, encoding="latin-1")
    with pytest.raises(ValueError, match=r"ingest\.json is damaged .*cannot be resumed safely: use another --out"):
        prepare("videos", root, out)
    assert [p.name for p in out.iterdir()] == ["ingest.json"]


def test_an_output_that_is_a_file_or_holds_other_things_is_left_alone(tmp_path):
    root = video_set(tmp_path / "videos", {})
    (tmp_path / "file").write_text("mine")
    with pytest.raises(FileExistsError, match=r"--out .*file is a file"):
        prepare("videos", root, tmp_path / "file")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"not empty and holds no ingest\.json"):
        prepare("videos", root, tmp_path / "notes")
    assert [p.name for p in (tmp_path / "notes").iterdir()] == ["todo.txt"]


def test_prepare_claims_the_output_without_ray(tmp_path):
    root = video_set(tmp_path / "videos", {})
    tracklets = prepare("videos", root, tmp_path / "out", chunk_size=4)
    assert len(tracklets) == 6 and [t.id for t in tracklets] == sorted(t.id for t in tracklets)
    assert json.loads((tmp_path / "out" / "ingest.json").read_text())["chunk_size"] == 4
    assert prepare("videos", root, tmp_path / "out", chunk_size=4) == tracklets  # the same ingest: resumable


def test_too_many_bad_tracklets_is_failed_work_not_bad_input():
    assert not issubclass(TooManyBadTracklets, ValueError)


def test_the_manifest_carries_a_synthetic_sets_ground_truth_wherever_it_is_moved(tmp_path, ray_cluster):
    spec = SyntheticSpec(seed=1, num_train_ids=1, num_test_ids=1, num_cameras=2, min_frames=4, max_frames=6,
                         height=64, width=40)  # fmt: skip
    generate(spec, tmp_path / "synth", mars_layout=True)
    # The videos layout as is, the MARS layout's frame folders transcoded to H.264 (new uris, the same ids).
    for dataset, root, gop in (("videos", tmp_path / "synth", None), ("mars", tmp_path / "synth" / "mars", 2)):
        out = tmp_path / f"{dataset}-ingest"
        ingest(dataset, root, out, transcode_gop=gop)
        assert (out / ANNOTATIONS_FILE).read_bytes() == (root / ANNOTATIONS_FILE).read_bytes()
        moved = tmp_path / "shared" / out.name
        shutil.move(out, moved)  # e.g. to a cluster's shared storage: the dataset root is not needed
        annotations, tracklets = read_manifest_annotations(moved), read_manifest(moved)
        assert len(tracklets) == 5 and {t.source for t in tracklets} == {"video"}  # all the set's tracklets
        for t in tracklets:
            assert annotations.num_frames(t) == t.num_frames  # joined on the id; frame indices kept
            assert annotations.lookup(t, [t.num_frames - 1], size=(32, 20)).labels.shape == (1, 32, 20)

    # A dataset without ground truth leaves none in the manifest (nor the copy of an earlier ingest of it).
    (tmp_path / "synth" / ANNOTATIONS_FILE).unlink()
    shutil.move(tmp_path / "shared" / "videos-ingest", tmp_path / "videos-ingest")
    ingest("videos", tmp_path / "synth", tmp_path / "videos-ingest")  # resumed: every chunk done already
    assert read_manifest_annotations(tmp_path / "videos-ingest") is None
    assert not (tmp_path / "videos-ingest" / ANNOTATIONS_FILE).exists()


def test_a_damaged_annotations_file_is_named_before_any_work(tmp_path):
    root = video_set(tmp_path / "videos", {})
    (root / ANNOTATIONS_FILE).write_bytes(b"PAR1 not parquet")
    with pytest.raises(ValueError, match=r"annotations\.parquet is damaged"):
        prepare("videos", root, tmp_path / "out")
