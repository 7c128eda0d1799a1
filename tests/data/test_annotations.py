"""The ground truth `drsta synth` writes agrees with the frames it writes, and joins the readers' tracklets.

Agreement is checked on decoded video, not on the generator's variables: the same tracklets are rendered on a
plain magenta background (`render_annotated(..., plain_background=)`: figure, occluder, camera and bad frames as
in the set), encoded and decoded, so that the person's pixels can be told from the background's.
"""

import dataclasses
from pathlib import Path

import decord
import numpy as np
import pyarrow.parquet as pq
import pytest

from drsta.data import synthetic
from drsta.data.annotations import ANNOTATIONS_FILE, PARTS, read_annotations
from drsta.data.datasets import mars, videos
from drsta.data.encode import write_video
from drsta.data.synthetic import SyntheticSpec, generate, plan_tracklets, render_annotated, render_tracklet

# Seed 4: camera 0 mirrors its frames and camera 1 does not; every bad-frame and garbage kind occurs.
SPEC = SyntheticSpec(
    seed=4,
    num_train_ids=2,
    num_test_ids=1,
    num_cameras=2,
    min_frames=8,
    max_frames=10,
    height=64,
    width=40,
    gop=4,
    occlusion_prob=0.5,
    bad_frame_prob=0.4,
)
MAGENTA = np.array([0.9, 0.1, 0.9])
DIFFERENT = 48  # a pixel differs from another when a channel differs by more than this (of 255)
MARGIN = 3  # pixels the camera's blur (≤ 2 passes) and H.264 spread an edge by


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return generate(SPEC, tmp_path_factory.mktemp("annotated") / "set", mars_layout=True)


@pytest.fixture(scope="module")
def plain(dataset, tmp_path_factory) -> dict[str, np.ndarray]:
    """Tracklet id -> the tracklet rendered on a plain background, encoded like the set and decoded."""
    folder = tmp_path_factory.mktemp("plain")
    decoded = {}
    for tracklet in plan_tracklets(SPEC):
        frames, _ = render_annotated(SPEC, tracklet, plain_background=MAGENTA)
        path = write_video(frames, folder / tracklet.video_path, SPEC.fps, SPEC.gop)
        decoded[f"videos/{tracklet.video_path}"] = decode_all(path)
    return decoded


def decode_all(path) -> np.ndarray:
    reader = decord.VideoReader(str(path))
    return reader.get_batch(list(range(len(reader)))).asnumpy()


def differs(frame: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels whose colour differs from `colour` (RGB, 0..255)."""
    return np.abs(frame.astype(np.int16) - colour.astype(np.int16)).max(axis=-1) > DIFFERENT


def box_mask(box: np.ndarray, shape: tuple[int, int], margin: int = 0) -> np.ndarray:
    """(H, W) bool: the pixels of a box (x0, y0, x1, y1) grown by `margin`; nothing for a NaN box."""
    if np.isnan(box).any():
        return np.zeros(shape, dtype=bool)
    ys, xs = np.arange(shape[0])[:, None], np.arange(shape[1])[None, :]
    x0, y0, x1, y1 = box
    return (xs >= x0 - margin) & (xs < x1 + margin) & (ys >= y0 - margin) & (ys < y1 + margin)


def erode(mask: np.ndarray, steps: int) -> np.ndarray:
    for _ in range(steps):
        padded = np.pad(mask, 1)
        mask = padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask


def test_every_frame_is_annotated_under_the_readers_tracklet_ids(dataset):
    annotations = read_annotations(dataset)
    plan = plan_tracklets(SPEC)
    tracklets = videos.scan(dataset)
    assert len(annotations) == len(plan) == len(tracklets)
    for tracklet, planned in zip(tracklets, plan, strict=True):
        assert tracklet in annotations and annotations.num_frames(tracklet) == planned.num_frames
        truth = annotations.lookup(tracklet, range(planned.num_frames))
        for other in (tracklet.id, tracklet.uri, planned.video_path):  # the id, the absolute uri, the CSV path
            np.testing.assert_array_equal(annotations.lookup(other, [0, 2]).labels, truth.labels[[0, 2]])
    mars_annotations = read_annotations(dataset / "mars")
    table = pq.read_table(dataset / "mars" / ANNOTATIONS_FILE, columns=["tracklet", "path", "frame"]).to_pylist()
    rows = {(row["tracklet"], row["frame"]): row["path"] for row in table}
    for tracklet in mars.scan(dataset / "mars"):
        assert mars_annotations.num_frames(tracklet) == tracklet.num_frames
        for i, frame in enumerate(tracklet.frames):  # the frame's JPEG relative to the MARS root joins too
            assert rows[tracklet.id, i] == Path(frame).relative_to(dataset / "mars").as_posix()
        video_id = "videos/" + next(t.video_path for t in plan if f"mars/{t.mars_track}" == tracklet.id)
        np.testing.assert_array_equal(
            mars_annotations.lookup(tracklet, [1]).labels, annotations.lookup(video_id, [1]).labels
        )


def test_unknown_tracklets_frames_and_missing_or_damaged_files(dataset, tmp_path):
    annotations = read_annotations(dataset / ANNOTATIONS_FILE)
    with pytest.raises(KeyError, match=r"'videos/nope.mp4' has no annotations .*expected a tracklet id such as"):
        annotations.lookup("videos/nope.mp4", [0])
    assert "/elsewhere/videos/0001/0/0001_c0_t0.mp4" not in annotations
    with pytest.raises(IndexError, match=r"has \d+ annotated frames"):
        annotations.lookup(annotations.tracklets[0], [99])
    assert read_annotations(tmp_path) is None  # a dataset without ground truth: any real one
    table = pq.read_table(dataset / ANNOTATIONS_FILE)
    pq.write_table(table.slice(1), tmp_path / ANNOTATIONS_FILE)  # the first tracklet's frame 0 missing
    with pytest.raises(ValueError, match=r"tracklet 'videos/videos/0001/0/0001_c0_t0.mp4' lacks or repeats frame 0"):
        read_annotations(tmp_path)
    (tmp_path / ANNOTATIONS_FILE).write_bytes((dataset / ANNOTATIONS_FILE).read_bytes()[:500])
    with pytest.raises(ValueError, match=r"annotations.parquet is damaged .*the dataset works without it"):
        read_annotations(tmp_path)


def test_boxes_and_labels_cover_the_persons_pixels_in_decoded_frames(dataset, plain):
    annotations = read_annotations(dataset)
    mirrored = {synthetic._camera(SPEC.seed, camid).mirror for camid in range(SPEC.num_cameras)}
    assert mirrored == {True, False}  # boxes of mirrored frames are checked too
    checked = 0
    for key, frames in plain.items():
        truth = annotations.lookup(key, range(len(frames)))
        background = np.median(frames[:, -4:].reshape(-1, 3), axis=0)  # the bottom rows: mostly background
        for t, frame in enumerate(frames):
            if truth.bad[t] not in ("none", "out_of_crop"):
                continue
            person, shape = truth.labels[t] > 0, frame.shape[:2]
            occluder = box_mask(truth.occluder_box[t], shape, MARGIN)
            outside = ~box_mask(truth.person_box[t], shape, MARGIN) & ~occluder
            assert differs(frame, background)[outside].mean() < 0.01  # outside the box: background
            inside = erode(person, 2) & ~occluder
            if inside.any():
                assert differs(frame, background)[inside].mean() > 0.97  # on the labels: person
            if np.isnan(truth.occluder_box[t]).all() and person.sum() > 50:
                rows, columns = np.nonzero(differs(frame, background))
                seen = np.array([columns.min(), rows.min(), columns.max() + 1, rows.max() + 1])
                assert np.abs(seen - truth.person_box[t]).max() <= MARGIN  # and the box is tight
                checked += 1
    assert checked > 20


def test_part_labels_are_where_the_parts_are(dataset):
    annotations = read_annotations(dataset)
    for key in annotations.tracklets:
        truth = annotations.lookup(key, range(annotations.num_frames(key)))
        whole = truth.bad != "out_of_crop"
        head, torso, legs = (truth.part_boxes[whole, PARTS.index(part)] for part in ("head", "torso", "legs"))
        centre = lambda boxes: (boxes[:, 1] + boxes[:, 3]) / 2  # noqa: E731
        assert np.all(centre(head) < centre(torso)) and np.all(centre(torso) < centre(legs))
        union = np.stack(
            [
                np.nanmin(truth.part_boxes[..., 0], 1),
                np.nanmin(truth.part_boxes[..., 1], 1),
                np.nanmax(truth.part_boxes[..., 2], 1),
                np.nanmax(truth.part_boxes[..., 3], 1),
            ],
            axis=1,
        )
        np.testing.assert_array_equal(union[whole], truth.person_box[whole])
        np.testing.assert_array_equal(truth.part_masks.any(axis=1), truth.person_mask)
        look = synthetic._appearance(SPEC.seed, int(key.split("/")[2]))
        has_accessory = look.bag is not None or look.backpack is not None
        assert np.isnan(truth.part_boxes[whole, PARTS.index("accessory")]).all() != has_accessory


def test_occlusion_is_the_share_of_the_person_the_occluder_covers(dataset):
    annotations = read_annotations(dataset)
    unoccluded = dataclasses.replace(SPEC, occlusion_prob=0.0)  # the same set without the occluders
    occluded = 0
    for tracklet in plan_tracklets(SPEC):
        truth = annotations.lookup(f"videos/{tracklet.video_path}", range(tracklet.num_frames))
        frames = decode_all(dataset / tracklet.video_path)
        reference = render_tracklet(unoccluded, tracklet)
        for t in np.flatnonzero(truth.bad == "none"):
            changed = np.abs(frames[t].astype(np.int16) - reference[t]).max(axis=-1) > DIFFERENT
            occluder = box_mask(truth.occluder_box[t], frames.shape[1:3])
            assert changed[~box_mask(truth.occluder_box[t], frames.shape[1:3], MARGIN)].mean() < 0.02  # H.264 vs raw
            person = truth.labels[t] > 0
            if truth.occlusion[t] == 0:
                assert not (person & occluder).any()
                continue
            occluded += truth.occlusion[t] >= 0.3
            assert (person & occluder).mean() / person.mean() == pytest.approx(truth.occlusion[t], abs=1e-6)
            assert changed[person].mean() == pytest.approx(truth.occlusion[t], abs=0.15)  # the occluder is there
            assert changed[occluder].mean() > 0.6
    assert occluded >= 2


def test_bad_frames_look_like_their_kind(dataset):
    annotations = read_annotations(dataset)
    clean = dataclasses.replace(SPEC, bad_frame_prob=0.0)  # the same set without bad frames
    seen = set()
    for tracklet in plan_tracklets(SPEC):
        truth = annotations.lookup(f"videos/{tracklet.video_path}", range(tracklet.num_frames))
        clean_truth = render_annotated(clean, tracklet)[1]
        frames = decode_all(dataset / tracklet.video_path).astype(np.int16)
        reference = render_tracklet(clean, tracklet).astype(np.int16)
        for t, (bad, garbage) in enumerate(zip(truth.bad, truth.garbage, strict=True)):
            seen.add(garbage or bad)
            error = np.abs(frames[t] - reference[t]).mean()
            sharpness = np.abs(np.diff(frames[t], axis=1)).mean()
            if bad == "none":
                assert error < 12 and garbage == ""
            elif bad == "blur":
                assert sharpness < 0.7 * np.abs(np.diff(reference[t], axis=1)).mean()
            elif bad == "out_of_crop":  # the person has left the place where the clean frame has them
                area, clean_area = (truth.labels[t] > 0).sum(), (clean_truth.labels[t] > 0).sum()
                assert area < 0.7 * clean_area
                moved = (clean_truth.labels[t] > 0) & (truth.labels[t] == 0)
                assert np.abs(frames[t] - reference[t]).max(axis=-1)[moved].mean() > DIFFERENT / 2
            elif garbage == "noise":
                assert sharpness > 40 and error > 40
            elif garbage == "flat":
                assert frames[t].std(axis=(0, 1)).max() < 3
            else:  # blocks: random 8×8 blocks over about 60 % of the frame
                block_error = np.abs(frames[t] - reference[t]).reshape(8, 8, 5, 8, 3).mean(axis=(1, 3, 4))
                assert 0.3 < (block_error > 30).mean() < 0.9
    assert seen == {"none", "blur", "out_of_crop", "noise", "flat", "blocks"}


def test_lookup_scales_boxes_and_labels_to_the_model_input(dataset):
    annotations = read_annotations(dataset)
    key = annotations.tracklets[0]
    native = annotations.lookup(key, [0, 1, 1])
    resized = annotations.lookup(key, [0, 1, 1], size=(256, 128))  # 64×40 -> 256×128: ×4 rows, ×3.2 columns
    assert native.size == (64, 40) and resized.size == (256, 128) and resized.labels.shape == (3, 256, 128)
    np.testing.assert_allclose(resized.person_box, native.person_box * [3.2, 4, 3.2, 4], rtol=1e-6)
    np.testing.assert_allclose(resized.part_boxes, native.part_boxes * [3.2, 4, 3.2, 4], rtol=1e-6)
    rows = (np.arange(256) + 0.5) / 4
    columns = (np.arange(128) + 0.5) / 3.2
    np.testing.assert_array_equal(resized.labels, native.labels[:, rows.astype(int)][:, :, columns.astype(int)])
    assert resized.person_mask.mean() == pytest.approx(native.person_mask.mean(), abs=0.02)
