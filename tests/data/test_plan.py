"""Epoch plans: determinism by (seed, epoch), exactly-once sharding, identity-balanced batches."""

from collections import Counter

import pytest

from drsta.data.plan import epoch_plan, evaluation_plan, shard, train_labels
from drsta.data.tracklet import Tracklet


def make_tracklets(num_ids=6, per_id=3, frames=30):
    out = []
    for pid in range(1, num_ids + 1):
        for k in range(per_id):
            out.append(
                Tracklet(f"t{pid}-{k}", pid, k % 2, "train", "x", 0, "video", f"/v/{pid}-{k}.mp4", (), frames + k)
            )
    out.append(Tracklet("q1", 50, 0, "query", "x", 0, "video", "/v/q.mp4", (), 12))
    out.append(Tracklet("g1", 50, 1, "gallery", "x", 0, "video", "/v/g.mp4", (), 3))
    return out


def test_same_seed_and_epoch_give_the_same_plan_other_epochs_differ():
    tracklets = make_tracklets()
    first = epoch_plan(tracklets, 4, seed=3, epoch=1, global_batch_size=4)
    assert first == epoch_plan(tracklets, 4, seed=3, epoch=1, global_batch_size=4)
    assert first != epoch_plan(tracklets, 4, seed=3, epoch=2, global_batch_size=4)
    assert first != epoch_plan(tracklets, 4, seed=4, epoch=1, global_batch_size=4)


def test_random_plan_uses_every_training_tracklet_at_most_once_and_whole_batches():
    tracklets = make_tracklets()  # 18 training tracklets
    plan = epoch_plan(tracklets, 4, seed=0, epoch=0, global_batch_size=4)
    assert len(plan) == 16
    assert len({r["id"] for r in plan}) == 16 and all(r["id"].startswith("t") for r in plan)
    for request in plan:
        assert len(request["indices"]) == 4 and request["indices"] == sorted(request["indices"])


def test_labels_are_contiguous_over_training_identities():
    tracklets = make_tracklets()
    assert train_labels(tracklets) == {pid: pid - 1 for pid in range(1, 7)}
    plan = epoch_plan(tracklets, 4, seed=0, epoch=0, global_batch_size=2)
    assert all(r["label"] == r["pid"] - 1 for r in plan)


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_shards_cover_the_plan_exactly_once_with_equal_sizes(world_size):
    plan = epoch_plan(make_tracklets(), 4, seed=0, epoch=0, global_batch_size=2 * world_size)
    shards = [shard(plan, rank, world_size) for rank in range(world_size)]
    assert len({len(s) for s in shards}) == 1
    seen = Counter(r["id"] for s in shards for r in s)
    assert seen == Counter(r["id"] for r in plan)


def test_identity_sampler_builds_p_identities_by_k_tracklets():
    tracklets = make_tracklets(num_ids=8, per_id=5)
    plan = epoch_plan(tracklets, 4, seed=0, epoch=0, global_batch_size=8, sampler="identity", tracklets_per_id=4)
    assert len(plan) % 8 == 0 and plan
    for start in range(0, len(plan), 8):
        counts = Counter(r["pid"] for r in plan[start : start + 8])
        assert sorted(counts.values()) == [4, 4]


def test_identity_sampler_repeats_tracklets_of_identities_with_too_few():
    tracklets = make_tracklets(num_ids=4, per_id=2)
    plan = epoch_plan(tracklets, 4, seed=0, epoch=0, global_batch_size=8, sampler="identity", tracklets_per_id=4)
    assert len(plan) == 16 and Counter(r["pid"] for r in plan) == {1: 4, 2: 4, 3: 4, 4: 4}


def test_evaluation_plan_takes_query_and_gallery_with_middle_frames():
    plan = evaluation_plan(make_tracklets(), 4)
    assert [r["id"] for r in plan] == ["q1", "g1"]
    assert plan[0]["indices"] == [1, 4, 7, 10] and plan[1]["indices"] == [0, 0, 1, 2]
    assert len(evaluation_plan(make_tracklets(), 4, num_clips=3)) == 6


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"global_batch_size": 64}, "more than one epoch holds"),
        ({"global_batch_size": 6, "sampler": "identity", "tracklets_per_id": 4}, "multiple of"),
        ({"global_batch_size": 40, "sampler": "identity", "tracklets_per_id": 4}, "identities per batch"),
        ({"global_batch_size": 4, "sampler": "shuffle"}, "unknown sampler"),
    ],
)
def test_bad_plan_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        epoch_plan(make_tracklets(), 4, seed=0, epoch=0, **kwargs)


def test_unprobed_videos_are_refused():
    raw = [Tracklet("v", 1, 0, "train", "x", 0, "video", "/v.mp4")]
    with pytest.raises(ValueError, match="drsta ingest"):
        epoch_plan(raw, 4, seed=0, epoch=0, global_batch_size=1)


def test_shard_rank_out_of_range():
    with pytest.raises(ValueError, match="rank"):
        shard([], 2, 2)
