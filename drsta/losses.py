"""Identity losses and the training objective: weighted ID losses + λ · diversity penalty.

- OIM (Online Instance Matching, Xiao et al. 2017), the paper's loss: a lookup table of L2-normalised
  identity features updated with momentum, a circular queue of unlabelled features, a temperature.
- Batch-hard triplet with a margin (Hermans et al. 2017).
- Label-smoothed cross-entropy on the model's classifier logits.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from drsta.config import LossConfig

UNLABELLED = -1  # target of a clip whose identity is unknown (it feeds OIM's queue)


class OIMLoss(nn.Module):
    """OIM: softmax over similarities to every identity's stored feature (and the unlabelled queue).

    The table and queue are buffers (saved in checkpoints, no gradient). Under torch.distributed the update
    uses the features of every rank, so all replicas keep the same table.
    """

    def __init__(
        self,
        num_features: int,
        num_classes: int,
        scale: float = 30.0,
        momentum: float = 0.5,
        queue_size: int = 0,
    ) -> None:
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
        self.register_buffer("queue", torch.zeros(queue_size, num_features))
        self.register_buffer("queue_next", torch.zeros((), dtype=torch.long))

    def forward(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """features (B, F), targets (B,) in [0, num_classes) or UNLABELLED -> scalar loss."""
        if features.dim() != 2 or features.shape[1] != self.lut.shape[1]:
            raise ValueError(f"OIM expects features (B, {self.lut.shape[1]}), got {tuple(features.shape)}")
        if (targets >= self.lut.shape[0]).any() or (targets < UNLABELLED).any():
            raise ValueError(f"OIM targets must be in [0, {self.lut.shape[0]}) or {UNLABELLED} (unlabelled)")
        x = F.normalize(features, dim=1)
        memory = torch.cat([self.lut, self.queue]).to(x.dtype)
        logits = self.scale * x @ memory.T  # (B, num_classes + queue_size)
        labelled = targets != UNLABELLED
        loss = F.cross_entropy(logits[labelled], targets[labelled]) if labelled.any() else logits.sum() * 0
        if self.training:
            self._update(*_gather_across_ranks(x.detach().to(self.lut.dtype), targets))
        return loss

    @torch.no_grad()
    def _update(self, x: torch.Tensor, targets: torch.Tensor) -> None:
        # Sequential, as in open-reid: a repeated identity in the batch moves its entry once per sample.
        for feature, target in zip(x, targets.tolist(), strict=True):
            if target == UNLABELLED:
                if len(self.queue):
                    self.queue[self.queue_next] = feature
                    self.queue_next.copy_((self.queue_next + 1) % len(self.queue))
                continue
            entry = self.momentum * self.lut[target] + (1 - self.momentum) * feature
            self.lut[target] = F.normalize(entry, dim=0)


class BatchHardTripletLoss(nn.Module):
    """For each anchor: relu(d(hardest positive) − d(hardest negative) + margin), Euclidean distances.

    Anchors without a positive or a negative in the batch are left out; a batch with no valid anchor gives 0.
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
        same = targets[:, None] == targets[None, :]
        self_pair = torch.eye(len(targets), dtype=torch.bool, device=targets.device)
        positive = same & ~self_pair
        hardest_positive = dist_BB.masked_fill(~positive, float("-inf")).amax(dim=1)
        hardest_negative = dist_BB.masked_fill(same, float("inf")).amin(dim=1)
        valid = positive.any(dim=1) & (~same).any(dim=1)
        if not valid.any():
            return features.sum() * 0
        return F.relu(hardest_positive[valid] - hardest_negative[valid] + self.margin).mean()


class ReIDObjective(nn.Module):
    """Total loss = w_oim · OIM + w_tri · triplet + w_xent · CE(label smoothing) + λ · mean diversity penalty."""

    def __init__(
        self,
        oim: OIMLoss | None = None,
        triplet: BatchHardTripletLoss | None = None,
        xent_weight: float = 0.0,
        oim_weight: float = 1.0,
        triplet_weight: float = 1.0,
        label_smoothing: float = 0.1,
        diversity_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if oim is None and triplet is None and xent_weight == 0:
            raise ValueError("the objective needs at least one identity loss (OIM, triplet or cross-entropy)")
        self.oim, self.triplet = oim, triplet
        self.oim_weight, self.triplet_weight, self.xent_weight = oim_weight, triplet_weight, xent_weight
        self.label_smoothing = label_smoothing
        self.diversity_weight = diversity_weight

    def forward(
        self,
        embedding: torch.Tensor,
        logits: torch.Tensor | None,
        diversity: torch.Tensor,
        targets: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """embedding (B, E), logits (B, C) or None, diversity (B,), targets (B,) -> total loss and its parts.

        The parts are detached, keyed like the logged metrics (`oim`, `triplet`, `xent`, `diversity`).
        """
        parts: dict[str, torch.Tensor] = {}
        total = self.diversity_weight * diversity.mean()
        parts["diversity"] = diversity.mean()
        if self.oim is not None:
            parts["oim"] = self.oim(embedding, targets)
            total = total + self.oim_weight * parts["oim"]
        if self.triplet is not None:
            parts["triplet"] = self.triplet(embedding, targets)
            total = total + self.triplet_weight * parts["triplet"]
        if self.xent_weight > 0:
            if logits is None:
                raise ValueError("cross-entropy needs logits: build the model with num_classes and train mode")
            parts["xent"] = F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)
            total = total + self.xent_weight * parts["xent"]
        return total, {name: value.detach() for name, value in parts.items()}


def build_objective(cfg: LossConfig, embedding_dim: int, num_classes: int) -> ReIDObjective:
    """The objective a LossConfig describes, for `num_classes` training identities."""
    oim = None
    if cfg.oim_weight > 0:
        oim = OIMLoss(embedding_dim, num_classes, cfg.oim_scale, cfg.oim_momentum, cfg.oim_queue_size)
    triplet = BatchHardTripletLoss(cfg.triplet_margin) if cfg.triplet_weight > 0 else None
    return ReIDObjective(
        oim=oim,
        triplet=triplet,
        xent_weight=cfg.xent_weight,
        oim_weight=cfg.oim_weight,
        triplet_weight=cfg.triplet_weight,
        label_smoothing=cfg.label_smoothing,
        diversity_weight=cfg.diversity_weight,
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
