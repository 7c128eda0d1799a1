"""The paper's claims measured in every evaluation: the probe's sample and bookkeeping, the claims of known
attention on a synthetic set's real ground truth, and `drsta evaluate` reporting them (real Ray, decode, model)."""

import argparse
import dataclasses
import shutil

import numpy as np
import pytest
import torch

from drsta.claims import PROBE_KINDS, degraded_frames, mask_coverage
from drsta.config import ExperimentConfig
from drsta.data.annotations import read_annotations
from drsta.data.datasets import READERS
from drsta.data.manifest import read_manifest_annotations
from drsta.data.sampling import evaluation_indices
from drsta.data.synthetic import SyntheticSpec, generate
from drsta.data.tracklet import Tracklet
from drsta.engine import MAX_PROBE_CLIPS, EvaluationClaims, probe, probe_rows, probe_tracklets
from drsta.model import build_model
from pipelines import commands, evaluate

PROBE_KEYS = {f"val/probe_{kind}_ratio" for kind in PROBE_KINDS}
CLAIM_KEYS = {"val/attn_foreground", "val/attn_part_specificity", "val/attn_distinct_parts", "val/temporal_bad_ratio",
              "val/temporal_bad_auc"} | PROBE_KEYS  # fmt: skip


def tracklet(name: str, role: str, num_frames: int = 10) -> Tracklet:
    return Tracklet(id=name, pid=1, camid=0, role=role, dataset="videos", split=0, source="video", uri=f"{name}.mp4",
                    num_frames=num_frames)  # fmt: skip


def test_probe_tracklets_is_a_fixed_sample_of_the_queries():
    tracklets = [tracklet(f"q{i:02d}", "query") for i in range(40)] + [tracklet(f"g{i}", "gallery") for i in range(9)]
    probed = probe_tracklets(tracklets)
    assert len(probed) == MAX_PROBE_CLIPS and all(name.startswith("q") for name in probed)
    assert probe_tracklets(tracklets[::-1]) == probed  # a function of the ids, not of their order
    assert probe_tracklets(tracklets[:5] + tracklets[40:]) == {f"q{i:02d}" for i in range(5)}  # fewer: all


def test_probe_rows_are_the_first_decoded_clips_of_probed_tracklets():
    batch = {"id": np.array(["a", "b", "a", "c", "d"]), "valid": np.array([True, True, True, True, False]),
             "clip_index": np.array([0, 0, 1, 0, 0]), "clip": np.zeros((5, 4, 2, 2, 3), dtype=np.uint8)}  # fmt: skip
    np.testing.assert_array_equal(probe_rows(batch, frozenset({"a", "c", "d"})), [0, 3])
    assert len(probe_rows(batch | {"clip": np.zeros((5, 1, 2, 2, 3), dtype=np.uint8)}, frozenset({"a"}))) == 0


def brightness_attention(clips: torch.Tensor) -> torch.Tensor:
    """A model whose temporal weights follow each frame's brightness: clips (B, N, 3, H, W) -> (B, N, 2)."""
    scores_BN = 10 * clips.mean(dim=(2, 3, 4))
    return torch.softmax(scores_BN, dim=1)[..., None].expand(-1, -1, 2)


def test_probe_measures_each_corruption_of_each_clip():
    clips = np.full((2, 4, 8, 6, 3), 200, dtype=np.uint8)  # uniform frames: shifted, a frame stays the same
    clips[1] = 120
    ratios = probe(brightness_attention, clips, ["a", "b"], "cpu")
    assert ratios.shape == (2, len(PROBE_KINDS))
    noise, black, shift = ratios.T
    np.testing.assert_allclose(shift, 1.0)
    np.testing.assert_allclose(black, [np.exp(-10 * 200 / 255), np.exp(-10 * 120 / 255)], rtol=1e-5)
    assert noise[0] < 1 < noise[1]  # noise (mean 127.5) is darker than 200, brighter than 120
    # Each clip is corrupted as its id says, whatever its batch and position.
    np.testing.assert_array_equal(probe(brightness_attention, clips[::-1], ["b", "a"], "cpu"), ratios[::-1])
    assert probe(brightness_attention, clips[:0], [], "cpu").shape == (0, len(PROBE_KINDS))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A tiny synthetic set's annotations and its tracklets (with the frame counts ingest would find)."""
    root = tmp_path_factory.mktemp("claims-set")
    spec = SyntheticSpec(seed=3, num_train_ids=1, num_test_ids=3, num_cameras=2, min_frames=8, max_frames=12,
                         height=64, width=40, occlusion_prob=0.5, bad_frame_prob=0.1)  # fmt: skip
    generate(spec, root)
    annotations = read_annotations(root)
    tracklets = [dataclasses.replace(t, num_frames=annotations.num_frames(t)) for t in READERS["videos"](root)]
    return annotations, [t for t in tracklets if t.role != "train"]


def oracle_attention(claims: EvaluationClaims, tracklets, grid=(8, 5)) -> tuple[np.ndarray, np.ndarray]:
    """Maps on the head, torso and legs (K = 3) and weights 10× lower on degraded frames, from the truth."""
    maps, weights = [], []
    for t in tracklets:
        truth = claims.annotations.lookup(t, evaluation_indices(t.num_frames, claims.num_frames)[0])
        parts = mask_coverage(truth.part_masks[:, :3], grid) + 1e-9  # (N, 3, h, w)
        maps.append(parts / parts.sum(axis=(-2, -1), keepdims=True))
        weight = np.where(degraded_frames(truth.occlusion, truth.bad), 0.1, 1.0)
        weights.append(np.repeat((weight / weight.sum())[:, None], 3, axis=1))
    return np.stack(maps), np.stack(weights)


def test_claims_of_known_attention_on_real_ground_truth(synthetic):
    annotations, tracklets = synthetic
    ids, clip_index = [t.id for t in tracklets], np.zeros(len(tracklets), dtype=int)
    oracle = EvaluationClaims(tracklets, annotations, num_frames=6)
    maps, weights = oracle_attention(oracle, tracklets)
    oracle.add_attention(ids[:3], clip_index[:3], maps[:3], weights[:3])  # in two batches, as a stream gives them
    oracle.add_attention(ids[3:], clip_index[3:], torch.from_numpy(maps[3:]), torch.from_numpy(weights[3:]))
    metrics = oracle.metrics()
    assert set(metrics) == CLAIM_KEYS - PROBE_KEYS, metrics
    assert metrics["val/attn_foreground"] > 2 and metrics["val/attn_part_specificity"] > 0.7
    assert metrics["val/attn_distinct_parts"] == 3
    assert metrics["val/temporal_bad_ratio"] == pytest.approx(0.1) and metrics["val/temporal_bad_auc"] == 1.0

    uniform = EvaluationClaims(tracklets, annotations, num_frames=6)
    uniform.add_attention(ids, clip_index, np.full_like(maps, 1 / 40), np.full_like(weights, 1 / 6))
    uniform.add_probes(np.array([[0.5, 0.25, 1.0], [np.nan] * 3, [1.5, 0.75, 1.0]]))
    metrics = uniform.metrics()
    assert metrics["val/attn_foreground"] == pytest.approx(1.0) and metrics["val/temporal_bad_ratio"] == 1.0
    assert metrics["val/temporal_bad_auc"] == 0.5
    assert [metrics[key] for key in ("val/probe_noise_ratio", "val/probe_black_ratio", "val/probe_shift_ratio")] == [
        1.0, 0.5, 1.0]  # fmt: skip

    # Tracklets without ground truth (or with another frame count than annotated) are passed over.
    unannotated = EvaluationClaims([dataclasses.replace(t, num_frames=t.num_frames + 1) for t in tracklets],
                                   annotations, num_frames=6)  # fmt: skip
    unannotated.add_attention(ids, clip_index, maps, weights)
    no_truth = EvaluationClaims(tracklets, None, num_frames=6)
    no_truth.add_attention(ids, clip_index, maps, weights)
    assert unannotated.metrics() == no_truth.metrics() == {}


TINY = {"model": {"backbone": "tiny", "num_frames": 4, "num_attention_models": 3, "attention_hidden_dim": 16,
                  "embedding_dim": 32, "tiny_trunk_dim": 48}, "input": {"height": 64, "width": 40}}  # fmt: skip


@pytest.mark.integration
def test_drsta_evaluate_reports_the_claims(manifest, tmp_path, ray_cluster, capsys):
    assert read_manifest_annotations(manifest) is not None  # ingest carried the synthetic set's ground truth
    cfg = ExperimentConfig.from_dict(TINY)
    torch.manual_seed(0)
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    torch.save({"model": build_model(cfg.model, None).state_dict(), "config": cfg.to_dict()}, checkpoint / "state.pt")
    parser = argparse.ArgumentParser()
    commands.evaluate_arguments(parser)

    outcome = evaluate.run(parser.parse_args(["--manifest", str(manifest), "--checkpoint", str(checkpoint)]))
    assert set(outcome["claims"]) == CLAIM_KEYS and all(np.isfinite(list(outcome["claims"].values())))
    printed = capsys.readouterr().out
    assert printed.index("mAP") < printed.index("val/attn_foreground") < printed.index("val/probe_shift_ratio")
    program, _ = evaluate.checkpoint_program(checkpoint)
    assert evaluate.evaluate_program(program, cfg, manifest).mAP == pytest.approx(outcome["mAP"])  # no change

    # A manifest without ground truth (any real one): the probe only.
    plain = tmp_path / "plain"
    shutil.copytree(manifest / "manifest", plain / "manifest")
    result, claims = evaluate.evaluate_with_claims(program, cfg, plain, actors=2)
    assert result.mAP == pytest.approx(outcome["mAP"])
    assert claims == pytest.approx({key: outcome["claims"][key] for key in PROBE_KEYS})
