"""Losses against direct transcriptions, OIM's table under torch.distributed, and the objective's sum."""

import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from drsta.config import LossConfig
from drsta.losses import UNLABELLED, BatchHardTripletLoss, OIMLoss, ReIDObjective, build_objective


def naive_oim_update(lut, queue, queue_next, x, targets, momentum):
    lut, queue = lut.copy(), queue.copy()
    for feature, target in zip(x, targets, strict=True):
        if target == UNLABELLED:
            if len(queue):
                queue[queue_next] = feature
                queue_next = (queue_next + 1) % len(queue)
            continue
        entry = momentum * lut[target] + (1 - momentum) * feature
        lut[target] = entry / np.linalg.norm(entry)
    return lut, queue, queue_next


class TestOIM:
    def test_loss_and_table_update_match_transcription(self):
        oim = OIMLoss(num_features=6, num_classes=4, scale=10.0, momentum=0.3, queue_size=2).double()
        oim.lut.copy_(F.normalize(torch.randn(4, 6, dtype=torch.float64), dim=1))
        features = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
        targets = torch.tensor([0, 2, UNLABELLED, 2, UNLABELLED])
        lut0, queue0 = oim.lut.numpy().copy(), oim.queue.numpy().copy()
        loss = oim(features, targets)

        x = features.detach().numpy() / np.linalg.norm(features.detach().numpy(), axis=1, keepdims=True)
        memory = np.concatenate([lut0, queue0])
        logits = 10.0 * x @ memory.T
        labelled = [i for i, t in enumerate(targets.tolist()) if t != UNLABELLED]
        log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        want = -np.mean([log_softmax[i, targets[i]] for i in labelled])
        assert loss.item() == pytest.approx(want, rel=1e-10)

        want_lut, want_queue, want_next = naive_oim_update(lut0, queue0, 0, x, targets.tolist(), 0.3)
        np.testing.assert_allclose(oim.lut.numpy(), want_lut, rtol=1e-10)
        np.testing.assert_allclose(oim.queue.numpy(), want_queue, rtol=1e-10)
        assert int(oim.queue_next) == want_next == 0  # two unlabelled into a queue of two: wrapped around

        loss.backward()
        assert torch.isfinite(features.grad).all() and features.grad.abs().sum() > 0

    def test_eval_mode_leaves_the_table_alone(self):
        oim = OIMLoss(4, 3).eval()
        oim(torch.randn(3, 4), torch.tensor([0, 1, 2]))
        assert oim.lut.abs().sum() == 0

    def test_batch_of_only_unlabelled_gives_zero_loss(self):
        oim = OIMLoss(4, 3, queue_size=4)
        features = torch.randn(2, 4, requires_grad=True)
        loss = oim(features, torch.tensor([UNLABELLED, UNLABELLED]))
        assert loss.item() == 0
        loss.backward()

    def test_bad_targets_and_shapes_are_refused(self):
        oim = OIMLoss(4, 3)
        with pytest.raises(ValueError, match="targets"):
            oim(torch.randn(2, 4), torch.tensor([0, 3]))
        with pytest.raises(ValueError, match=r"\(B, 4\)"):
            oim(torch.randn(2, 5), torch.tensor([0, 1]))
        with pytest.raises(ValueError, match="num_classes"):
            OIMLoss(4, 0)


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
