"""Losses against direct transcriptions, OIM's table under torch.distributed, and the objective's sum."""

import math
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from drsta.config import ExperimentConfig, LossConfig
from drsta.losses import IGNORED, UNLABELLED, BatchHardTripletLoss, OIMLoss, ReIDObjective, build_objective
from drsta.model import functional


def naive_oim_update(lut, x, targets, momentum):
    lut = lut.copy()
    for feature, target in zip(x, targets, strict=True):
        if target < 0:  # unlabelled or ignored
            continue
        entry = momentum * lut[target] + (1 - momentum) * feature
        lut[target] = entry / np.linalg.norm(entry)
    return lut


class TestOIM:
    def test_loss_and_table_update_match_transcription(self):
        oim = OIMLoss(num_features=6, num_classes=4, scale=10.0, momentum=0.3).double()
        oim.lut.copy_(F.normalize(torch.randn(4, 6, dtype=torch.float64), dim=1))
        features = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
        targets = torch.tensor([0, 2, UNLABELLED, 2, IGNORED])
        lut0 = oim.lut.numpy().copy()
        loss = oim(features, targets)

        x = features.detach().numpy() / np.linalg.norm(features.detach().numpy(), axis=1, keepdims=True)
        logits = 10.0 * x @ lut0.T
        labelled = [i for i, t in enumerate(targets.tolist()) if t >= 0]
        log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        want = -np.mean([log_softmax[i, targets[i]] for i in labelled])
        assert loss.item() == pytest.approx(want, rel=1e-10)
        np.testing.assert_allclose(oim.lut.numpy(), naive_oim_update(lut0, x, targets.tolist(), 0.3), rtol=1e-10)

        loss.backward()  # after the in-place table update: backward must still see the table the loss used
        assert torch.isfinite(features.grad).all() and features.grad.abs().sum() > 0

    def test_eval_mode_leaves_the_table_alone(self):
        oim = OIMLoss(4, 3).eval()
        oim(torch.randn(3, 4), torch.tensor([0, 1, 2]))
        assert oim.lut.abs().sum() == 0

    def test_batch_of_only_unlabelled_gives_zero_loss_and_no_update(self):
        oim = OIMLoss(4, 3)
        features = torch.randn(2, 4, requires_grad=True)
        loss = oim(features, torch.tensor([UNLABELLED, UNLABELLED]))
        assert loss.item() == 0 and oim.lut.abs().sum() == 0
        loss.backward()

    def test_bad_targets_and_shapes_are_refused(self):
        oim = OIMLoss(4, 3)
        with pytest.raises(ValueError, match="targets"):
            oim(torch.randn(2, 4), torch.tensor([0, 3]))
        with pytest.raises(ValueError, match=r"\(B, 4\)"):
            oim(torch.randn(2, 5), torch.tensor([0, 1]))
        with pytest.raises(ValueError, match="num_classes"):
            OIMLoss(4, 0)

    def test_a_checkpoint_from_before_the_queue_was_removed_loads(self):
        old = {"lut": F.normalize(torch.randn(3, 4), dim=1), "queue": torch.zeros(0, 4), "queue_next": torch.tensor(0)}
        objective = build_objective(LossConfig(), embedding_dim=4, num_classes=3)
        objective.load_state_dict({f"oim.{key}": value for key, value in old.items()})  # strict
        torch.testing.assert_close(objective.oim.lut, old["lut"])
        assert set(objective.state_dict()) == {"oim.lut"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _oim_rank(rank: int, port: int, features: torch.Tensor, targets: torch.Tensor, out: dict) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        oim = OIMLoss(4, 5, momentum=0.5)
        sizes = (3, 2)  # unequal shards: the gather must cope
        start = 0 if rank == 0 else sizes[0]
        oim(features[start : start + sizes[rank]], targets[start : start + sizes[rank]])
        out[rank] = oim.lut.clone()
    finally:
        dist.destroy_process_group()


def test_oim_table_is_the_same_on_every_rank_and_sees_the_whole_global_batch():
    features = torch.randn(5, 4)
    targets = torch.tensor([0, 1, 2, 1, 4])
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_oim_rank, args=(_free_port(), features, targets, out), nprocs=2, join=True)
        tables = dict(out)
    single = OIMLoss(4, 5, momentum=0.5)
    single(features, targets)
    torch.testing.assert_close(tables[0], tables[1])
    torch.testing.assert_close(tables[0], single.lut)


def naive_batch_hard(features: np.ndarray, targets: list[int], margin: float) -> float:
    losses = []
    for a, anchor in enumerate(features):
        positives = [np.linalg.norm(anchor - f) for p, f in enumerate(features) if targets[p] == targets[a] and p != a]
        negatives = [np.linalg.norm(anchor - f) for n, f in enumerate(features) if targets[n] != targets[a]]
        if positives and negatives:
            losses.append(max(0.0, max(positives) - min(negatives) + margin))
    return float(np.mean(losses))


class TestBatchHardTriplet:
    def test_matches_transcription(self):
        features = torch.randn(8, 5, dtype=torch.float64, requires_grad=True)
        targets = [0, 0, 1, 1, 2, 2, 3, 4]  # 3 and 4 have no positive: left out
        loss = BatchHardTripletLoss(margin=0.5)(features, torch.tensor(targets))
        assert loss.item() == pytest.approx(naive_batch_hard(features.detach().numpy(), targets, 0.5), rel=1e-10)
        loss.backward()
        assert torch.isfinite(features.grad).all()

    def test_identical_features_have_finite_gradients(self):
        features = torch.ones(4, 3, requires_grad=True)
        BatchHardTripletLoss(0.3)(features, torch.tensor([0, 0, 1, 1])).backward()
        assert torch.isfinite(features.grad).all()

    def test_batch_without_valid_anchor_gives_zero(self):
        assert BatchHardTripletLoss(0.3)(torch.randn(3, 4), torch.tensor([0, 1, 2])).item() == 0

    def test_non_positive_margin_is_refused(self):
        with pytest.raises(ValueError, match="margin"):
            BatchHardTripletLoss(0.0)


class TestObjective:
    def test_total_is_the_weighted_sum_of_its_parts(self):
        cfg = LossConfig(oim_weight=0.5, triplet_weight=2.0, xent_weight=1.5, diversity_weight=0.7, label_smoothing=0.2)
        objective = build_objective(cfg, embedding_dim=6, num_classes=3)
        embedding, logits = torch.randn(4, 6), torch.randn(4, 3)
        diversity, targets = torch.rand(4), torch.tensor([0, 0, 1, 2])
        total, parts = objective(embedding, logits, diversity, targets)
        assert sorted(parts) == ["diversity", "oim", "triplet", "xent"]
        smooth = F.cross_entropy(logits, targets, label_smoothing=0.2)
        assert parts["xent"].item() == pytest.approx(smooth.item())
        want = 0.5 * parts["oim"] + 2.0 * parts["triplet"] + 1.5 * parts["xent"] + 0.7 * diversity.mean()
        assert total.item() == pytest.approx(want.item(), rel=1e-6)

    def test_label_smoothing_is_the_smoothed_target_distribution(self):
        logits, targets, eps = torch.randn(3, 4, dtype=torch.float64), torch.tensor([0, 3, 1]), 0.1
        smoothed = torch.full((3, 4), eps / 4, dtype=torch.float64)
        smoothed[torch.arange(3), targets] += 1 - eps
        want = -(smoothed * logits.log_softmax(dim=1)).sum(dim=1).mean()
        objective = ReIDObjective(xent_weight=1.0, diversity_weight=0.0, label_smoothing=eps)
        _, parts = objective(torch.randn(3, 2), logits, torch.zeros(3), targets)
        assert parts["xent"].item() == pytest.approx(want.item(), rel=1e-10)

    def test_cross_entropy_without_logits_is_refused(self):
        objective = ReIDObjective(xent_weight=1.0)
        with pytest.raises(ValueError, match="logits"):
            objective(torch.randn(2, 3), None, torch.zeros(2), torch.tensor([0, 1]))

    def test_no_identity_loss_is_refused(self):
        with pytest.raises(ValueError, match="identity loss"):
            ReIDObjective()
        with pytest.raises(ValueError, match="oim_weight"):
            LossConfig(oim_weight=0.0)


def authors_regularizer(maps: np.ndarray) -> float:
    """The authors' `trainers.py`, written out: reg = sqrt(Σ over the batch's frames of ‖√S √Sᵀ − I‖²_F + 1e-5).

    Args:
        maps: (F, K, L), the attention maps of every frame of the batch (their `reg`).
    """
    frames, k_models, cells = maps.shape
    total = 0.0
    for f in range(frames):
        for a in range(k_models):
            for b in range(k_models):
                inner = sum(math.sqrt(maps[f, a, cell]) * math.sqrt(maps[f, b, cell]) for cell in range(cells))
                total += (inner - (1.0 if a == b else 0.0)) ** 2
    return math.sqrt(total + 1e-5)


class TestDiversityReduction:
    @staticmethod
    def model_style_diversity(maps: torch.Tensor) -> torch.Tensor:
        """What the model returns for maps (B, N, K, L): each clip's mean penalty over its N frames."""
        return functional.diversity_penalty(maps).mean(dim=1)

    def test_authors_sqrt_sum_matches_the_authors_trainer(self):
        maps = torch.softmax(torch.randn(3, 4, 2, 6, dtype=torch.float64) * 2, dim=-1)  # (B, N, K, L)
        objective = ReIDObjective(xent_weight=1.0, diversity_weight=1.0, diversity_reduction="authors_sqrt_sum",
                                  num_frames=4)  # fmt: skip
        logits, targets = torch.randn(3, 5, dtype=torch.float64), torch.tensor([0, 1, 4])
        total, parts = objective(torch.randn(3, 2), logits, self.model_style_diversity(maps), targets)
        want = authors_regularizer(maps.reshape(12, 2, 6).numpy())
        assert parts["diversity"].item() == pytest.approx(want, rel=1e-12)
        assert total.item() == pytest.approx(parts["xent"].item() + want, rel=1e-12)  # weight 1, as the code's

    def test_mean_squared_is_the_papers_mean_over_every_frame(self):
        maps = torch.softmax(torch.randn(3, 4, 2, 6, dtype=torch.float64) * 2, dim=-1)
        objective = ReIDObjective(xent_weight=1.0, diversity_weight=0.7)
        _, parts = objective(torch.randn(3, 2), torch.randn(3, 5), self.model_style_diversity(maps), torch.arange(3))
        per_frame = [
            authors_regularizer(maps[b, n : n + 1].numpy()) ** 2 - 1e-5 for b in range(3) for n in range(4)
        ]  # ‖Q Qᵀ − I‖²_F of each frame
        assert parts["diversity"].item() == pytest.approx(np.mean(per_frame), rel=1e-9)

    def test_authors_form_has_a_finite_gradient_at_a_zero_penalty(self):
        diversity = torch.zeros(2, dtype=torch.float64, requires_grad=True)  # disjoint maps everywhere
        objective = ReIDObjective(xent_weight=1.0, diversity_reduction="authors_sqrt_sum", num_frames=6)
        total, parts = objective(torch.randn(2, 3), torch.randn(2, 4), diversity, torch.tensor([0, 1]))
        assert parts["diversity"].item() == pytest.approx(math.sqrt(1e-5))
        total.backward()
        assert torch.isfinite(diversity.grad).all()

    def test_the_authors_form_needs_the_clip_length_and_unknown_forms_are_refused(self):
        with pytest.raises(ValueError, match="num_frames"):
            ReIDObjective(xent_weight=1.0, diversity_reduction="authors_sqrt_sum")
        with pytest.raises(ValueError, match="num_frames"):
            build_objective(LossConfig(diversity_reduction="authors_sqrt_sum"), embedding_dim=4, num_classes=3)
        with pytest.raises(ValueError, match="diversity_reduction"):
            ReIDObjective(xent_weight=1.0, diversity_reduction="sum")
        with pytest.raises(ValueError, match="diversity_reduction"):
            LossConfig(diversity_reduction="sum")

    def test_build_objective_wires_the_reduction(self):
        cfg = LossConfig(diversity_reduction="authors_sqrt_sum", diversity_weight=2.0)
        objective = build_objective(cfg, embedding_dim=4, num_classes=3, num_frames=6)
        assert (objective.diversity_reduction, objective.num_frames, objective.diversity_weight) == (
            "authors_sqrt_sum", 6, 2.0)  # fmt: skip


class TestRemovedQueueSize:
    def test_configs_logged_before_the_removal_still_load(self):
        cfg = ExperimentConfig.from_dict({"loss": {"oim_queue_size": 0, "oim_scale": 20.0}})
        assert cfg.loss.oim_scale == 20.0 and "oim_queue_size" not in cfg.to_dict()["loss"]

    def test_a_queue_is_refused_with_the_reason(self):
        with pytest.raises(ValueError, match=r"loss: .*oim_queue_size was removed .*delete the key"):
            ExperimentConfig.from_dict({"loss": {"oim_queue_size": 128}})
