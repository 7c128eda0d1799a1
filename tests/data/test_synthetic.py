"""The synthetic benchmark: videos decord reads back, the split's protocol, MARS's layout, the frame stamp.

Frames are 64×40 rather than 64×32: decord misreads 32-pixel-wide videos on some CPUs (see `SyntheticSpec.width`).
"""

import csv
import dataclasses
import json
from collections import Counter

import av
import decord
import numpy as np
import pytest
import scipy.io
from PIL import Image

from drsta.data import synthetic
from drsta.data.encode import write_video
from drsta.data.synthetic import (
    SpecError,
    SyntheticSpec,
    generate,
    plan_tracklets,
    read_frame_index,
    read_spec,
    render_annotated,
    render_tracklet,
    stamp_frame_indices,
)

SPEC = SyntheticSpec(
    seed=3,
    num_train_ids=3,
    num_test_ids=3,
    num_cameras=2,
    min_frames=8,
    max_frames=12,
    height=64,
    width=40,
    gop=4,
    occlusion_prob=0.5,
    bad_frame_prob=0.1,
    stamp_frame_index=True,
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return generate(SPEC, tmp_path_factory.mktemp("synthetic") / "set", mars_layout=True)


def decode_all(path) -> np.ndarray:
    reader = decord.VideoReader(str(path))
    return reader.get_batch(list(range(len(reader)))).asnumpy()


def test_videos_decode_with_decord_to_the_rendered_frames(dataset):
    plan = plan_tracklets(SPEC)
    for tracklet, other in zip(plan, plan[1:] + plan[:1], strict=True):
        frames = decode_all(dataset / tracklet.video_path)
        assert frames.shape == (tracklet.num_frames, SPEC.height, SPEC.width, 3)
        rendered = render_tracklet(SPEC, tracklet).astype(np.int16)
        error = np.abs(frames - rendered).mean()
        assert error < 12  # H.264 at crf 18 drops the sensor noise and halves the chroma resolution
        length = min(len(frames), other.num_frames)
        unrelated = np.abs(frames[:length] - render_tracklet(SPEC, other)[:length].astype(np.int16)).mean()
        assert unrelated > 2 * error


def test_every_frame_carries_its_index_through_encoding(dataset):
    rng = np.random.default_rng(0)
    for tracklet in plan_tracklets(SPEC):
        reader = decord.VideoReader(str(dataset / tracklet.video_path))
        order = rng.permutation(len(reader))  # random access: seeks across keyframes and B-frames
        assert [read_frame_index(reader[int(i)].asnumpy()) for i in order] == order.tolist()


def test_same_seed_same_videos_other_seed_other_frames(dataset, tmp_path):
    again = generate(SPEC, tmp_path / "again")
    for tracklet in plan_tracklets(SPEC):
        np.testing.assert_array_equal(
            decode_all(again / tracklet.video_path), decode_all(dataset / tracklet.video_path)
        )
    assert (again / "annotations.parquet").read_bytes() == (dataset / "annotations.parquet").read_bytes()
    first = plan_tracklets(SPEC)[0]
    other_seed = dataclasses.replace(SPEC, seed=4)
    assert not np.array_equal(render_tracklet(SPEC, first)[:8], render_tracklet(other_seed, first)[:8])


def test_occlusions_and_bad_frames_change_only_the_frames_they_hit():
    clean = dataclasses.replace(SPEC, occlusion_prob=0.0, bad_frame_prob=0.0)
    tracklet = plan_tracklets(clean)[0]
    reference = render_tracklet(clean, tracklet)
    for spec in (dataclasses.replace(clean, occlusion_prob=1.0), dataclasses.replace(clean, bad_frame_prob=0.3)):
        changed = np.any(render_tracklet(spec, tracklet) != reference, axis=(1, 2, 3))
        assert 0 < changed.sum() < len(changed)


def test_annotations_sit_beside_each_layout_and_do_not_depend_on_the_background(dataset):
    assert (dataset / "annotations.parquet").is_file() and (dataset / "mars" / "annotations.parquet").is_file()
    tracklet = plan_tracklets(SPEC)[1]
    frames, truth = render_annotated(SPEC, tracklet)
    np.testing.assert_array_equal(frames, render_tracklet(SPEC, tracklet))
    _, plain = render_annotated(SPEC, tracklet, plain_background=np.array([0.9, 0.1, 0.9]))
    for name in ("labels", "occluder", "bad", "garbage"):
        np.testing.assert_array_equal(getattr(plain, name), getattr(truth, name))
    assert truth.labels.shape == frames.shape[:3] and set(np.unique(truth.labels)) <= {0, 1, 2, 3, 4}


def test_train_and_test_identities_are_disjoint():
    plan = plan_tracklets(SPEC)
    train = {t.pid for t in plan if t.role == "train"}
    test = {t.pid for t in plan if t.role != "train"}
    assert train == {1, 2, 3} and test == {4, 5, 6}
    assert all(SPEC.min_frames <= t.num_frames <= SPEC.max_frames for t in plan)
    assert Counter(t.pid for t in plan if t.role == "train") == {pid: SPEC.num_cameras for pid in train}


def test_every_query_has_gallery_matches_in_its_own_and_the_other_cameras():
    spec = SyntheticSpec(num_train_ids=0, num_test_ids=20, num_cameras=3, tracklets_per_id_per_camera=2)
    plan = plan_tracklets(spec)
    queries = [t for t in plan if t.role == "query"]
    assert sorted(t.pid for t in queries) == list(range(1, 21))  # one query per test identity
    assert len({t.camid for t in queries}) > 1  # query cameras vary
    for query in queries:
        gallery = [t for t in plan if t.role == "gallery" and t.pid == query.pid]
        assert Counter(t.camid for t in gallery) == {camid: 2 for camid in range(3)}
        assert (query.camid, query.index) not in {(t.camid, t.index) for t in gallery}


def test_csv_lists_every_video(dataset):
    with (dataset / "tracklets.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["path", "pid", "camid", "role"]
    plan = plan_tracklets(SPEC)
    assert rows[1:] == [[t.video_path, str(t.pid), str(t.camid), t.role] for t in plan]
    assert all((dataset / path).is_file() for path, *_ in rows[1:])
    assert {row[2] for row in rows[1:]} == {"0", "1"}
    assert Counter(row[3] for row in rows[1:]) == {"train": 6, "gallery": 6, "query": 3}
    assert plan[0].video_path == "videos/0001/0/0001_c0_t0.mp4"


def test_spec_json_round_trips(dataset):
    assert SyntheticSpec.from_dict(json.loads((dataset / "spec.json").read_text())) == SPEC


def test_mars_layout(dataset):
    info = dataset / "mars" / "info"
    plan = plan_tracklets(SPEC)
    for split, key in (("train", "track_train_info"), ("test", "track_test_info")):
        names = (info / f"{split}_name.txt").read_text().splitlines()
        tracks = scipy.io.loadmat(info / f"tracks_{split}_info.mat")[key]
        expected = [t for t in plan if (t.role == "train") == (split == "train")]
        assert tracks.shape == (len(expected), 4) and tracks.dtype == np.float64
        assert tracks[0, 0] == 1 and tracks[-1, 1] == len(names)
        np.testing.assert_array_equal(tracks[1:, 0], tracks[:-1, 1] + 1)  # contiguous, in order
        for (start, end, pid, camid), tracklet in zip(tracks.astype(int), expected, strict=True):
            assert (pid, camid - 1, end - start + 1) == (tracklet.pid, tracklet.camid, tracklet.num_frames)
            track_names = names[start - 1 : end]
            assert track_names[0] == f"{pid:04d}C{camid}T{tracklet.index + 1:04d}F001.jpg"
            assert track_names == [tracklet.mars_image_name(i) for i in range(tracklet.num_frames)]
            assert all((dataset / "mars" / f"bbox_{split}" / f"{pid:04d}" / name).is_file() for name in track_names)
    query_idx = scipy.io.loadmat(info / "query_IDX.mat")["query_IDX"].ravel().astype(int)
    test = scipy.io.loadmat(info / "tracks_test_info.mat")["track_test_info"].astype(int)
    queries = test[query_idx - 1]
    assert sorted(queries[:, 2]) == [4, 5, 6]
    gallery = np.delete(test, query_idx - 1, axis=0)  # how the MARS readers split the test tracks
    for _, _, pid, camid in queries:
        assert np.any((gallery[:, 2] == pid) & (gallery[:, 3] != camid))


def test_mars_frames_are_the_rendered_frames(dataset):
    tracklet = plan_tracklets(SPEC)[0]
    frame = np.asarray(Image.open(dataset / "mars" / "bbox_train" / "0001" / tracklet.mars_image_name(2)))
    assert frame.shape == (SPEC.height, SPEC.width, 3)
    assert np.abs(frame.astype(np.int16) - render_tracklet(SPEC, tracklet)[2]).mean() < 8
    assert read_frame_index(frame) == 2


def test_write_video_puts_a_keyframe_every_gop_frames(tmp_path, rng):
    frames = rng.integers(0, 256, (23, 32, 40, 3), dtype=np.uint8)
    frames[10:] //= 4  # a scene cut, where x264 would otherwise insert a keyframe
    path = write_video(frames, tmp_path / "v.mp4", fps=10, gop=5)
    with av.open(str(path)) as container:
        decoded = list(container.decode(video=0))
    assert [i for i, frame in enumerate(decoded) if frame.key_frame] == [0, 5, 10, 15, 20]
    assert len(decord.VideoReader(str(path))) == 23


def test_stamp_round_trip_without_encoding(rng):
    frames = stamp_frame_indices(rng.integers(0, 256, (1024, 32, 20, 3), dtype=np.uint8))
    assert [read_frame_index(frame) for frame in frames[::7]] == list(range(0, 1024, 7))
    with pytest.raises(ValueError, match="indices below 1024"):
        stamp_frame_indices(np.zeros((1025, 32, 20, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="width 16 is too small"):
        read_frame_index(np.zeros((64, 16, 3), dtype=np.uint8))


def test_progress_is_reported_per_tracklet(tmp_path):
    spec = SyntheticSpec(
        num_train_ids=1, num_test_ids=1, num_cameras=2, min_frames=2, max_frames=3, height=32, width=20
    )
    calls = []
    generate(spec, tmp_path / "set", progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 5) for i in range(1, 6)]
    with pytest.raises(FileExistsError, match="not empty"):
        generate(spec, tmp_path / "set")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"num_cameras": 1}, "num_cameras"),
        ({"min_frames": 10, "max_frames": 5}, "max_frames"),
        ({"max_frames": 1000}, "max_frames"),
        ({"width": 16, "stamp_frame_index": True}, "width"),
        ({"width": 32}, "width"),  # decord misreads it
        ({"height": 65}, "height"),
        ({"num_train_ids": 0, "num_test_ids": 0}, "num_train_ids \\+ num_test_ids"),
        ({"occlusion_prob": 1.5}, "occlusion_prob"),
        ({"gop": 0}, "gop"),
    ],
)
def test_bad_spec_is_refused_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=f"SyntheticSpec.{field} must be"):
        SyntheticSpec(**overrides)


def test_unknown_spec_key_is_refused():
    with pytest.raises(ValueError, match=r"no field.*'cameras'"):
        SyntheticSpec.from_dict({"cameras": 3})


def test_spec_error_carries_the_field_for_a_cli_to_name_its_flag():
    with pytest.raises(SpecError) as err:
        SyntheticSpec(num_cameras=12)
    assert (err.value.field, err.value.value) == ("num_cameras", 12) and err.value.expected.startswith("in 2..9")


def test_spec_of_the_wrong_type_is_refused_naming_the_field():
    with pytest.raises(ValueError, match=r"SyntheticSpec\.seed must be of type int, got '3'"):
        SyntheticSpec.from_dict({"seed": "3"})
    with pytest.raises(ValueError, match=r"SyntheticSpec\.stamp_frame_index must be of type bool, got 1"):
        SyntheticSpec.from_dict({"stamp_frame_index": 1})
    assert SyntheticSpec.from_dict({"occlusion_prob": 1}).occlusion_prob == 1  # an int is a fine float


TINY = SyntheticSpec(num_train_ids=1, num_test_ids=1, num_cameras=2, min_frames=2, max_frames=3, height=32, width=20)


def test_read_spec_round_trips_and_a_damaged_spec_is_named(tmp_path):
    out = generate(TINY, tmp_path / "set")
    assert read_spec(out) == TINY
    whole = (out / "spec.json").read_text()
    for damaged in (whole[: len(whole) // 2], "[1, 2]", '{"seed": -1}'):
        (out / "spec.json").write_text(damaged)
        with pytest.raises(ValueError, match=r"spec\.json is damaged .*delete .*set and generate the set again"):
            read_spec(out)
    with pytest.raises(FileNotFoundError, match=r"not a set written by drsta synth"):
        read_spec(tmp_path)


def test_generate_never_writes_into_a_file_or_over_a_set(tmp_path):
    (tmp_path / "file").write_text("mine")
    with pytest.raises(FileExistsError, match=r"file is a file, not a directory"):
        generate(TINY, tmp_path / "file")
    assert (tmp_path / "file").read_text() == "mine"
    out = generate(TINY, tmp_path / "set")
    with pytest.raises(FileExistsError, match=r"not empty: it holds a finished synthetic set \(the same spec\)"):
        generate(TINY, out)
    with pytest.raises(FileExistsError, match=r"finished synthetic set \(another spec\)"):
        generate(dataclasses.replace(TINY, seed=1), out)
    (out / "spec.json").write_text('{"seed": ')  # cut short
    with pytest.raises(ValueError, match=r"spec\.json is damaged"):
        generate(TINY, out)


def test_an_interrupted_generation_leaves_no_tracklets_csv_and_no_temporary_files(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(synthetic, "_write_mars_info", broken)
    with pytest.raises(OSError, match="disk full"):
        generate(TINY, tmp_path / "set", mars_layout=True)
    assert not (tmp_path / "set" / "tracklets.csv").exists()  # so no reader takes it for a finished set
    with pytest.raises(FileExistsError, match=r"not empty: .*interrupted, delete it and run again"):
        generate(TINY, tmp_path / "set")
    monkeypatch.undo()
    out = generate(TINY, tmp_path / "again", mars_layout=True)
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]
