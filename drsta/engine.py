"""The pieces of a training run that are plain PyTorch: optimiser, schedule, one step, and embedding clips.

Ray wiring (workers, streams, checkpoints, reports) lives in `pipelines/train.py`; this module knows nothing
of Ray or MLflow.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterable, Mapping

import numpy as np
import torch
from torch import nn

from drsta.config import OptimConfig
from drsta.losses import ReIDObjective
from drsta.metrics import RetrievalResult, evaluate_detailed
from drsta.model.drsta import DRSTA
from drsta.model.functional import mean_pairwise_hellinger


def clips_to_input(clips: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 clips (B, N, H, W, 3) from the stream -> the model's float input (B, N, 3, H, W) in [0, 1]."""
    clips = torch.as_tensor(clips).to(device, non_blocking=True)
    return clips.permute(0, 1, 4, 2, 3).float().div_(255)


def build_optimizer(model: DRSTA, cfg: OptimConfig) -> torch.optim.Optimizer:
    """SGD (Nesterov) or Adam; the trunk learns at lr × trunk_lr_scale, the new layers at lr."""
    trunk = [p for p in model.trunk.parameters() if p.requires_grad]
    trunk_ids = {id(p) for p in trunk}
    new_layers = [p for p in model.parameters() if p.requires_grad and id(p) not in trunk_ids]
    groups = [
        {"params": trunk, "lr": cfg.lr * cfg.trunk_lr_scale},
        {"params": new_layers, "lr": cfg.lr},
    ]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
                               weight_decay=cfg.weight_decay)  # fmt: skip
    return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """×gamma every step_size epochs (stepped once per epoch)."""
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when enabled; a no-op on the CPU."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_step(
    model: nn.Module,
    objective: ReIDObjective,
    optimizer: torch.optim.Optimizer,
    clips: torch.Tensor,
    labels: torch.Tensor,
    amp: bool = False,
    weight: float = 1.0,
) -> dict[str, torch.Tensor]:
    """One optimisation step on a batch; returns the detached loss parts plus `loss` and `hellinger`.

    `weight` scales the loss (0 runs the step for lockstep with other DDP workers without learning).
    """
    with autocast(clips.device, amp):
        out = model(clips)
        loss, parts = objective(out.embedding.float(), out.logits, out.diversity.float(), labels)
    optimizer.zero_grad(set_to_none=True)
    (loss * weight).backward()
    optimizer.step()
    parts = {"loss": loss.detach(), **parts}
    if out.spatial_maps.shape[2] > 1:
        parts["hellinger"] = mean_pairwise_hellinger(out.spatial_maps.detach().float().flatten(-2))
    return parts


@torch.no_grad()
def embed(model: DRSTA, clips: torch.Tensor, amp: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode embeddings (B, E) and spatial maps (B, N, K, h, w) of float clips (B, N, 3, H, W)."""
    model.eval()
    with autocast(clips.device, amp):
        out = model(clips)
    return out.embedding.float(), out.spatial_maps.float()


def retrieval_metrics(
    embeddings: np.ndarray,
    pids: np.ndarray,
    camids: np.ndarray,
    roles: Iterable[str],
) -> RetrievalResult:
    """CMC/mAP of L2-normalised embeddings (Euclidean distance), query rows against gallery rows."""
    roles = np.asarray(list(roles))
    features = torch.nn.functional.normalize(torch.as_tensor(embeddings, dtype=torch.float32), dim=1)
    query, gallery = roles == "query", roles == "gallery"
    if not query.any() or not gallery.any():
        raise ValueError("evaluation needs both query and gallery tracklets")
    dist = torch.cdist(features[query], features[gallery]).numpy()
    return evaluate_detailed(dist, pids[query], pids[gallery], camids[query], camids[gallery])


class TrackletEmbeddings:
    """Collects clip embeddings per tracklet; a tracklet's descriptor is the mean of its clips' embeddings."""

    def __init__(self) -> None:
        self._clips: dict[str, list[np.ndarray]] = defaultdict(list)
        self._labels: dict[str, tuple[int, int]] = {}

    def add(self, ids: Iterable, embeddings: np.ndarray, pids: Iterable, camids: Iterable) -> None:
        """Add a batch: ids (B,), embeddings (B, E), pids (B,), camids (B,)."""
        for tracklet_id, embedding, pid, camid in zip(ids, embeddings, pids, camids, strict=True):
            self._clips[str(tracklet_id)].append(np.asarray(embedding))
            self._labels[str(tracklet_id)] = int(pid), int(camid)

    def score(self, roles: Mapping[str, str]) -> RetrievalResult:
        """CMC/mAP of the collected tracklets, query against gallery (`roles` maps id -> role)."""
        ids = sorted(self._clips)
        features = np.stack([np.mean(self._clips[i], axis=0) for i in ids])
        pids = np.array([self._labels[i][0] for i in ids])
        camids = np.array([self._labels[i][1] for i in ids])
        return retrieval_metrics(features, pids, camids, [roles[i] for i in ids])
