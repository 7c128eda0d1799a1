"""Identity losses and the training objective: weighted ID losses + λ · diversity penalty.

- OIM (Online Instance Matching, Xiao et al. 2017), the paper's loss: a lookup table of L2-normalised
  identity features updated with momentum, a temperature. (OIM's queue of unlabelled identities is left out:
  no training split has unlabelled clips.)
- Batch-hard triplet with a margin (Hermans et al. 2017).
- Label-smoothed cross-entropy on the model's classifier logits.
- The diversity regularizer reduced as the paper does (mean of the squared norms) or as the authors' code does
  (square root of their sum over the batch).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from drsta.config import LossConfig

UNLABELLED = -1  # target of a clip whose identity is unknown: no identity loss, no table update
IGNORED = -100  # target of a clip that must not count at all (it failed to decode): no loss, no table update
AUTHORS_SQRT_EPS = 1e-5  # the authors' code: reg = sqrt(sum(...) + 1e-5), which also keeps the gradient finite at 0

DiversityReduction = Literal["mean_squared", "authors_sqrt_sum"]


class OIMLoss(nn.Module):
    """OIM: softmax over similarities to every identity's stored feature.

    The table is a buffer (saved in checkpoints, no gradient). Under torch.distributed the update uses the
    features of every rank, so all replicas keep the same table.
    """

    def __init__(self, num_features: int, num_classes: int, scale: float = 30.0, momentum: float = 0.5) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"OIM needs num_classes >= 1 training identities, got {num_classes}")
        if not 0 <= momentum < 1:
            raise ValueError(f"OIM momentum must be in [0, 1), got {momentum}")
        if scale <= 0:
            raise ValueError(f"OIM scale (1 / temperature) must be > 0, got {scale}")
        self.scale = scale
        self.momentum = momentum
        self.register_buffer("lut", torch.zeros(num_classes, num_features))
        self.register_load_state_dict_pre_hook(_drop_removed_queue)

    def forward(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """features (B, F), targets (B,) in [0, num_classes), UNLABELLED or IGNORED -> scalar loss.

        In training mode every call takes part in the update's gather across ranks, also when all of this rank's
        targets are IGNORED: the other ranks' collective calls must be matched.
        """
        if features.dim() != 2 or features.shape[1] != self.lut.shape[1]:
            raise ValueError(f"OIM expects features (B, {self.lut.shape[1]}), got {tuple(features.shape)}")
        known = (targets >= UNLABELLED) | (targets == IGNORED)
        if (targets >= self.lut.shape[0]).any() or not known.all():
            raise ValueError(
                f"OIM targets must be in [0, {self.lut.shape[0]}), {UNLABELLED} (unlabelled) or {IGNORED} (ignored)"
            )
        x = F.normalize(features, dim=1)
        # A copy: backward needs the table as it was, and `_update` below changes it in place.
        memory = self.lut.to(x.dtype, copy=True)
        logits = self.scale * x @ memory.T  # (B, num_classes)
        labelled = targets >= 0
        loss = F.cross_entropy(logits[labelled], targets[labelled]) if labelled.any() else logits.sum() * 0
        if self.training:
            self._update(*_gather_across_ranks(x.detach().to(self.lut.dtype), targets))
        return loss

    @torch.no_grad()
    def _update(self, x: torch.Tensor, targets: torch.Tensor) -> None:
        # Sequential, as in open-reid: a repeated identity in the batch moves its entry once per sample.
        for feature, target in zip(x, targets.tolist(), strict=True):
            if target < 0:  # UNLABELLED or IGNORED: nothing to update
                continue
            entry = self.momentum * self.lut[target] + (1 - self.momentum) * feature
            self.lut[target] = F.normalize(entry, dim=0)


def _drop_removed_queue(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """Checkpoints written before the queue was removed hold `queue` and `queue_next`; they load without them."""
    for name in ("queue", "queue_next"):
        state_dict.pop(prefix + name, None)


class BatchHardTripletLoss(nn.Module):
    """For each anchor: relu(d(hardest positive) − d(hardest negative) + margin), Euclidean distances.

    Anchors without a positive or a negative in the batch are left out, and so are clips without an identity
    (UNLABELLED, IGNORED); a batch with no valid anchor gives 0.
    """

    def __init__(self, margin: float = 0.3) -> None:
        super().__init__()
        if margin <= 0:
            raise ValueError(f"triplet margin must be > 0, got {margin}")
        self.margin = margin

    def forward(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """features (B, F), targets (B,) -> scalar loss."""
        squared = torch.cdist(features, features).pow(2)  # cdist's own sqrt has no safe gradient at 0
        dist_BB = squared.clamp_min(1e-12).sqrt()
        labelled = targets >= 0  # unlabelled and ignored clips are neither anchors, positives nor negatives
        same = targets[:, None] == targets[None, :]
        self_pair = torch.eye(len(targets), dtype=torch.bool, device=targets.device)
        positive = same & ~self_pair & labelled[None, :]
        negative = ~same & labelled[None, :]
        hardest_positive = dist_BB.masked_fill(~positive, float("-inf")).amax(dim=1)
        hardest_negative = dist_BB.masked_fill(~negative, float("inf")).amin(dim=1)
        valid = labelled & positive.any(dim=1) & negative.any(dim=1)
        if not valid.any():
            return features.sum() * 0
        return F.relu(hardest_positive[valid] - hardest_negative[valid] + self.margin).mean()


class ReIDObjective(nn.Module):
    """Total loss = w_oim · OIM + w_tri · triplet + w_xent · CE(label smoothing) + λ · diversity term.

    The diversity term reduces the per-frame penalties r_n = ‖Q_n Q_nᵀ − I‖²_F of the batch's frames:
    "mean_squared" (the paper) averages them; "authors_sqrt_sum" (the authors' `trainers.py`) takes
    √(Σ_n r_n + 1e-5) over every frame of the batch. The model reports each clip's mean over its N frames, so
    the sum is N · Σ_clips; under DDP each worker reduces its own batch (the authors': one process, the whole
    batch), so that form depends on the batch size per worker.
    """

    def __init__(
        self,
        oim: OIMLoss | None = None,
        triplet: BatchHardTripletLoss | None = None,
        xent_weight: float = 0.0,
        oim_weight: float = 1.0,
        triplet_weight: float = 1.0,
        label_smoothing: float = 0.1,
        diversity_weight: float = 1.0,
        diversity_reduction: DiversityReduction = "mean_squared",
        num_frames: int | None = None,
    ) -> None:
        super().__init__()
        if oim is None and triplet is None and xent_weight == 0:
            raise ValueError("the objective needs at least one identity loss (OIM, triplet or cross-entropy)")
        if diversity_reduction not in ("mean_squared", "authors_sqrt_sum"):
            raise ValueError(
                f"diversity_reduction must be 'mean_squared' or 'authors_sqrt_sum', got {diversity_reduction!r}"
            )
        if diversity_reduction == "authors_sqrt_sum" and (num_frames is None or num_frames < 1):
            raise ValueError(
                "diversity_reduction 'authors_sqrt_sum' sums over frames, so it needs the clip length: pass "
                f"num_frames=cfg.model.num_frames (got {num_frames})"
            )
        self.oim, self.triplet = oim, triplet
        self.oim_weight, self.triplet_weight, self.xent_weight = oim_weight, triplet_weight, xent_weight
        self.label_smoothing = label_smoothing
        self.diversity_weight = diversity_weight
        self.diversity_reduction = diversity_reduction
        self.num_frames = num_frames

    def forward(
        self,
        embedding: torch.Tensor,
        logits: torch.Tensor | None,
        diversity: torch.Tensor,
        targets: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """embedding (B, E), logits (B, C) or None, diversity (B,) each clip's mean r_n over its frames (the
        model's `diversity`), targets (B,) -> total loss and its parts.

        The parts are detached, keyed like the logged metrics (`oim`, `triplet`, `xent`, `diversity`); `diversity`
        is the reduced term, before λ.
        """
        parts: dict[str, torch.Tensor] = {}
        parts["diversity"] = self.reduce_diversity(diversity)
        total = self.diversity_weight * parts["diversity"]
        if self.oim is not None:
            parts["oim"] = self.oim(embedding, targets)
            total = total + self.oim_weight * parts["oim"]
        if self.triplet is not None:
            parts["triplet"] = self.triplet(embedding, targets)
            total = total + self.triplet_weight * parts["triplet"]
        if self.xent_weight > 0:
            if logits is None:
                raise ValueError("cross-entropy needs logits: build the model with num_classes and train mode")
            labelled = targets >= 0
            # Mean over labelled clips only; a batch without any is 0 (cross_entropy would give 0/0 = NaN).
            parts["xent"] = (
                F.cross_entropy(logits[labelled], targets[labelled], label_smoothing=self.label_smoothing)
                if labelled.any()
                else logits.sum() * 0
            )
            total = total + self.xent_weight * parts["xent"]
        return total, {name: value.detach() for name, value in parts.items()}

    def reduce_diversity(self, diversity: torch.Tensor) -> torch.Tensor:
        """diversity (B,), each clip's mean r_n over its N frames -> the scalar diversity term (before λ)."""
        if self.diversity_reduction == "mean_squared":
            return diversity.mean()  # the mean over every frame of the batch: each clip has N of them
        assert self.num_frames is not None  # checked in __init__
        return torch.sqrt(self.num_frames * diversity.sum() + AUTHORS_SQRT_EPS)  # √(Σ_n r_n + 1e-5)


def build_objective(
    cfg: LossConfig, embedding_dim: int, num_classes: int, num_frames: int | None = None
) -> ReIDObjective:
    """The objective a LossConfig describes, for `num_classes` training identities and, for the authors'
    diversity reduction, clips of `num_frames` frames (the model's N)."""
    oim = OIMLoss(embedding_dim, num_classes, cfg.oim_scale, cfg.oim_momentum) if cfg.oim_weight > 0 else None
    triplet = BatchHardTripletLoss(cfg.triplet_margin) if cfg.triplet_weight > 0 else None
    return ReIDObjective(
        oim=oim,
        triplet=triplet,
        xent_weight=cfg.xent_weight,
        oim_weight=cfg.oim_weight,
        triplet_weight=cfg.triplet_weight,
        label_smoothing=cfg.label_smoothing,
        diversity_weight=cfg.diversity_weight,
        diversity_reduction=cfg.diversity_reduction,
        num_frames=num_frames,
    )


def _gather_across_ranks(x: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate (x, targets) from every rank, in rank order; the inputs unchanged without torch.distributed."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x, targets
    world = dist.get_world_size()
    sizes = [torch.zeros((), dtype=torch.long, device=x.device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor(len(x), device=x.device))
    largest = int(max(sizes))
    padded_x = x.new_zeros(largest, x.shape[1])
    padded_x[: len(x)] = x
    padded_t = targets.new_full((largest,), UNLABELLED)
    padded_t[: len(targets)] = targets
    all_x = [torch.empty_like(padded_x) for _ in range(world)]
    all_t = [torch.empty_like(padded_t) for _ in range(world)]
    dist.all_gather(all_x, padded_x)
    dist.all_gather(all_t, padded_t)
    keep = [slice(0, int(n)) for n in sizes]
    return (
        torch.cat([a[k] for a, k in zip(all_x, keep, strict=True)]),
        torch.cat([t[k] for t, k in zip(all_t, keep, strict=True)]),
    )
