"""Decoding exactly the sampled frames, and the Ray Data streams on a real two-node cluster.

Every frame carries its index in its pixels (the synthetic generator's stamp), so the tests read back which
frames were decoded, in which order.
"""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from drsta.config import DataConfig
from drsta.data.clips import decode_requests
from drsta.data.decode import DecodeError, read_clip
from drsta.data.encode import write_video
from drsta.data.plan import epoch_plan, evaluation_plan, shard
from drsta.data.sampling import evaluation_indices
from drsta.data.synthetic import read_frame_index, stamp_frame_indices
from drsta.data.tracklet import Tracklet
from drsta.ray.stream import ValidBatches, evaluation_stream, train_stream

SIZE = (64, 64)  # (H, W): the model input the tests decode to, as big as the frames so stamps stay readable
NO_AUGMENT = DataConfig(flip_p=0, crop_p=0, erase_p=0, batch_size_per_worker=2, decode_batch_size=2)


def stamped(num_frames: int) -> np.ndarray:
    rng = np.random.default_rng(num_frames)
    return stamp_frame_indices(rng.integers(0, 256, (num_frames, *SIZE, 3), dtype=np.uint8))


def read_indices(clip: np.ndarray) -> list[int]:
    return [read_frame_index(frame) for frame in clip]


@pytest.fixture(scope="module")
def tracklets(tmp_path_factory) -> list[Tracklet]:
    """4 identities × (2 train videos, 1 train frame folder) + a query and a gallery video each."""
    root = tmp_path_factory.mktemp("stream")
    out = []
    for pid in range(1, 5):
        for k, role in enumerate(["train", "train", "query", "gallery"]):
            length = 9 + 3 * pid + k
            path = write_video(stamped(length), root / f"{pid}_{k}.mp4", gop=4)
            out.append(Tracklet(f"v{pid}-{k}", pid, k % 2, role, "t", 0, "video", str(path), (), length, *SIZE))
        folder = root / f"{pid}_frames"
        folder.mkdir()
        paths = []
        for index, frame in enumerate(stamped(7 + pid)):
            paths.append(str(folder / f"{index + 1}.png"))
            Image.fromarray(frame).save(paths[-1])
        out.append(Tracklet(f"f{pid}", pid, 1, "train", "t", 0, "frames", str(folder), tuple(paths), len(paths), *SIZE))
    return out


@pytest.mark.parametrize("source", ["video", "frames"])
def test_exactly_the_requested_frames_are_decoded_in_order(tracklets, source):
    tracklet = next(t for t in tracklets if t.source == source)
    for indices in ([0, 3, 5, 7], [7, 2, 2, 0], [1]):
        clip = read_clip(tracklet.source, tracklet.uri, tracklet.frames, indices, SIZE)
        assert clip.shape == (len(indices), *SIZE, 3)
        assert read_indices(clip) == indices


def test_out_of_range_indices_are_refused(tracklets):
    video = tracklets[0]
    with pytest.raises(DecodeError, match="out of range"):
        read_clip("video", video.uri, (), [0, video.num_frames], SIZE)


def test_decode_requests_flags_a_missing_file_instead_of_failing(tracklets, tmp_path):
    plan = evaluation_plan(tracklets, 4)[:3]
    plan[1] = plan[1] | {"uri": str(tmp_path / "gone.mp4")}
    batch = {key: np.array([r[key] for r in plan] + [], dtype=object) for key in plan[0]}
    out = decode_requests(batch, SIZE, 4)
    assert out["valid"].tolist() == [True, False, True]
    assert not out["clip"][1].any()
    assert read_indices(out["clip"][0]) == plan[0]["indices"]


@pytest.mark.integration
def test_two_shards_decode_every_planned_clip_exactly_once_with_its_frames(tracklets, ray_cluster):
    plan = epoch_plan(tracklets, 4, seed=NO_AUGMENT.seed, epoch=3, global_batch_size=4)
    wanted = {(r["id"], tuple(r["indices"])) for r in plan}
    seen = []
    for rank in range(2):
        stream = train_stream(tracklets, NO_AUGMENT, SIZE, 4, epoch=3, rank=rank, world_size=2)
        batches = list(ValidBatches(stream, batch_size=2))
        assert len(batches) == len(shard(plan, rank, 2)) // 2
        for batch in batches:
            assert batch["clip"].shape == (2, 4, *SIZE, 3) and batch["clip"].dtype == np.uint8
            seen += [(str(i), tuple(read_indices(clip))) for i, clip in zip(batch["id"], batch["clip"], strict=True)]
    assert len(seen) == len(plan) == len(set(seen))
    assert set(seen) == wanted


@pytest.mark.integration
def test_augmented_stream_is_reproducible_for_a_seed_and_epoch(tracklets, ray_cluster):
    cfg = NO_AUGMENT.model_copy(update={"flip_p": 0.5, "crop_p": 0.5, "erase_p": 0.5})

    def epoch_clips(epoch):
        batches = ValidBatches(train_stream(tracklets, cfg, SIZE, 4, epoch=epoch), batch_size=4)
        return {str(i): clip for batch in batches for i, clip in zip(batch["id"], batch["clip"], strict=True)}

    first, again, other = epoch_clips(0), epoch_clips(0), epoch_clips(1)
    assert first.keys() == again.keys()
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert any(not np.array_equal(first[k], other[k]) for k in first.keys() & other.keys())


@pytest.mark.integration
def test_a_file_gone_bad_after_ingest_is_skipped_and_counted(tracklets, ray_cluster, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"this was a video")
    damaged = [t if t.id != "v1-0" else Tracklet(**{**t.to_row(), "uri": str(broken), "frames": ()}) for t in tracklets]
    batches = ValidBatches(train_stream(damaged, NO_AUGMENT, SIZE, 4, epoch=0), batch_size=4)
    clips = sum(len(batch["id"]) for batch in batches)
    planned = len(epoch_plan(damaged, 4, seed=0, epoch=0, global_batch_size=2))
    assert batches.skipped == ["v1-0"] and clips == planned - 1


@pytest.mark.integration
def test_evaluation_stream_has_every_query_and_gallery_tracklet_once_with_test_frames(tracklets, ray_cluster):
    batches = list(ValidBatches(evaluation_stream(tracklets, NO_AUGMENT, SIZE, 4), batch_size=3))
    rows = {str(i): clip for batch in batches for i, clip in zip(batch["id"], batch["clip"], strict=True)}
    expected = {t.id: t for t in tracklets if t.role != "train"}
    assert rows.keys() == expected.keys()
    for tracklet_id, clip in rows.items():
        assert read_indices(clip) == evaluation_indices(expected[tracklet_id].num_frames, 4)[0].tolist()


def test_missing_frame_file_names_it(tracklets, tmp_path):
    folder = next(t for t in tracklets if t.source == "frames")
    frames = (*folder.frames[:-1], str(tmp_path / "missing.png"))
    with pytest.raises(DecodeError, match=r"missing\.png"):
        read_clip("frames", folder.uri, frames, [0, len(frames) - 1], SIZE)


def test_importing_the_decoder_first_leaves_torch_cpu_math_working():
    # decord2 loads the nvidia-* CUDA libraries globally; libnvblas would hijack (and crash) torch's CPU matmul.
    script = "import drsta.data.decode, torch; a = torch.randn(64, 64); print(float((a @ a).sum()))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
