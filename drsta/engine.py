"""The pieces of a training run that are plain PyTorch: optimiser, schedule, one step, embedding clips, and
measuring the paper's claims (drsta.claims) on the evaluated clips.

Ray wiring (workers, streams, checkpoints, reports) lives in `pipelines/train.py`; this module knows nothing
of Ray or MLflow.
"""

from __future__ import annotations

import contextlib
import pickle
import random
import warnings
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from drsta.claims import (
    PROBE_KINDS,
    ArrayLike,
    ProbeClaims,
    SpatialStats,
    TemporalStats,
    degraded_frames,
    mask_coverage,
    probe_clips,
    probe_ratio,
    spatial_stats,
    temporal_stats,
)
from drsta.config import OptimConfig
from drsta.data.annotations import Annotations, FrameAnnotations
from drsta.data.sampling import evaluation_indices
from drsta.data.tracklet import Tracklet
from drsta.losses import IGNORED, ReIDObjective
from drsta.metrics import RetrievalResult, evaluate_detailed
from drsta.model.drsta import DRSTA
from drsta.model.functional import mean_pairwise_hellinger


def clips_to_input(clips: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 clips (B, N, H, W, 3) from the stream -> the model's float input (B, N, 3, H, W) in [0, 1]."""
    with warnings.catch_warnings():
        # Ray Data's batches are zero-copy views of its blocks, read-only; nothing here writes to them
        # (`.float()` makes the copy that is divided), so torch's warning about them is noise.
        warnings.filterwarnings("ignore", "The given NumPy array is not writable", UserWarning)
        clips = torch.as_tensor(clips)
    clips = clips.to(device, non_blocking=True)
    return clips.permute(0, 1, 4, 2, 3).float().div_(255)


def rng_states() -> dict[str, Any]:
    """The torch, NumPy and Python RNG states as tensors and plain lists, so that a checkpoint holding them
    loads with `torch.load(weights_only=True)` (no unpickling of arbitrary objects)."""
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    numpy_state = {
        "kind": kind,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached_gaussian),
    }
    python_state = {"version": version, "internal": list(internal), "gauss_next": gauss_next}
    return {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": python_state}


def set_rng_states(states: Mapping[str, Any]) -> None:
    """Restore what `rng_states` returned."""
    numpy_state = states["numpy"]
    torch.set_rng_state(states["torch"].cpu())
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))  # fmt: skip
    python_state = states["python"]
    random.setstate((python_state["version"], tuple(python_state["internal"]), python_state["gauss_next"]))


def load_state(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint file (`state.pt`) read with `torch.load(weights_only=True)`: tensors and plain values only,
    so a planted file cannot run code.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file needs a full unpickler (objects other than tensors, e.g. a checkpoint of drsta
            before 0.2, or a crafted payload), or is damaged.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: pass a checkpoint directory written by drsta train")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"{path}: refused: the checkpoint holds objects other than tensors and plain values, which "
                         f"could run code when unpickled ({reason}); only checkpoints of drsta train are "
                         "accepted") from None  # fmt: skip
    except (RuntimeError, EOFError, OSError) as err:
        raise ValueError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{path}: not a checkpoint of drsta train (no model state in it)")
    return state


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
    step: bool = True,
) -> dict[str, torch.Tensor]:
    """One optimisation step on a batch; returns the detached loss parts plus `loss` and `hellinger`.

    `weight` scales the loss (0: this batch teaches nothing, but the forward and backward still run, so that DDP's
    gradient all-reduce and OIM's gather are matched on every worker). `step=False` leaves the weights, and the
    optimiser's momentum, exactly as they were (use it when no worker had anything to learn from).
    """
    with autocast(clips.device, amp):
        out = model(clips)
        loss, parts = objective(out.embedding.float(), out.logits, out.diversity.float(), labels)
    optimizer.zero_grad(set_to_none=True)
    (loss * weight).backward()
    if step:
        optimizer.step()
    parts = {"loss": loss.detach(), **parts}
    if out.spatial_maps.shape[2] > 1:
        parts["hellinger"] = mean_pairwise_hellinger(out.spatial_maps.detach().float().flatten(-2))
    return parts


def train_batch(
    model: nn.Module,
    objective: ReIDObjective,
    optimizer: torch.optim.Optimizer,
    clips: torch.Tensor,
    labels: torch.Tensor,
    valid: bool,
    amp: bool = False,
) -> dict[str, torch.Tensor] | None:
    """A training step of one worker under DDP, also when its whole batch failed to decode (`valid` False).

    Every worker runs the same collectives in the same order whatever its data: the all-reduce that says whether
    any worker has a valid batch, the forward (OIM's gather) and the backward (DDP's gradient all-reduce). A
    worker without a valid batch trains with weight 0 and IGNORED targets, so it contributes zero gradients and
    nothing to the OIM table; when no worker has a valid batch, no optimiser step is taken (momentum and weight
    decay would move the weights). Returns the loss parts, or None for a batch that taught nothing here.
    """
    if not valid:
        labels = torch.full_like(labels, IGNORED)
    if not _any_rank(valid, clips.device):
        parts = train_step(model, objective, optimizer, clips, labels, amp, weight=0.0, step=False)
    else:
        parts = train_step(model, objective, optimizer, clips, labels, amp, weight=1.0 if valid else 0.0)
    return parts if valid else None


def _any_rank(flag: bool, device: torch.device) -> bool:
    """Whether `flag` holds on any rank (just `flag` without torch.distributed). A collective: every rank calls it."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    tensor = torch.tensor([int(flag)], device=device if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


@torch.no_grad()
def embed(model: DRSTA, clips: torch.Tensor, amp: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eval-mode embeddings (B, E), spatial maps (B, N, K, h, w) and temporal weights (B, N, K), all float32, of
    float clips (B, N, 3, H, W)."""
    model.eval()
    with autocast(clips.device, amp):
        out = model(clips)
    return out.embedding.float(), out.spatial_maps.float(), out.temporal_weights.float()


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


# ---------------------------------------------------------------------------------------------------------------
# The paper's claims measured in an evaluation (drsta.claims)

MAX_PROBE_CLIPS = 32  # query clips the corruption probe runs on: 3 extra forwards each, so evaluation stays cheap
PROBE_SEED = 0  # fixed: every model evaluated on a manifest is probed on the same clips with the same corruptions


def probe_tracklets(
    tracklets: Iterable[Tracklet], max_clips: int = MAX_PROBE_CLIPS, seed: int = PROBE_SEED
) -> frozenset[str]:
    """The query tracklets whose first evaluation clip the corruption probe runs on: a seeded sample of up to
    `max_clips`, a function of the manifest's query ids only."""
    queries = sorted(t.id for t in tracklets if t.role == "query")
    chosen = np.random.default_rng(seed).choice(len(queries), size=min(max_clips, len(queries)), replace=False)
    return frozenset(queries[i] for i in chosen)


def probe_rows(batch: Mapping[str, np.ndarray], probed: frozenset[str]) -> np.ndarray:
    """Indices of the rows of an evaluation batch (columns id, valid, clip (B, N, H, W, 3), clip_index) to probe:
    the decoded first clips of `probed` tracklets; none for clips of one frame (nothing to compare it with)."""
    if not probed or batch["clip"].shape[1] < 2:
        return np.zeros(0, dtype=np.int64)
    ids = batch["id"]
    first = batch["clip_index"] == 0 if "clip_index" in batch else np.ones(len(ids), dtype=bool)
    chosen = np.array([str(i) in probed for i in ids], dtype=bool) & first & batch["valid"].astype(bool)
    return np.flatnonzero(chosen)


def probe(
    temporal_weights_of: Callable[[torch.Tensor], torch.Tensor],
    clips: np.ndarray,
    ids: Sequence[str],
    device: torch.device | str,
    seed: int = PROBE_SEED,
) -> np.ndarray:
    """The corruption probe (`drsta.claims.probe_clips`) of P clips, each corrupted in every way of PROBE_KINDS.

    Each clip's corrupted frame and noise are drawn from its tracklet id and `seed`, so a clip is probed the same
    way whatever batch it comes in.

    Args:
        temporal_weights_of: the model in eval mode: float clips (B, N, 3, H, W) -> temporal weights (B, N, K).
        clips: (P, N, H, W, 3) uint8 clips, as decoded; N >= 2.
        ids: the P clips' tracklet ids.
        device: where the model runs.

    Returns:
        (P, len(PROBE_KINDS)) float64 `probe_ratio` of each clip and kind (< 1: the corrupted frame down-weighted).
    """
    corrupted, corrupted_frame = [], []
    for clip, tracklet_id in zip(clips, ids, strict=True):
        rng = np.random.default_rng([seed, zlib.crc32(str(tracklet_id).encode())])
        copies = probe_clips(clip, rng)
        for kind in PROBE_KINDS:
            corrupted.append(copies[kind][0])
            corrupted_frame.append(copies[kind][1])
    if not corrupted:
        return np.zeros((0, len(PROBE_KINDS)))
    with torch.no_grad():
        weights_BNK = temporal_weights_of(clips_to_input(np.stack(corrupted), torch.device(device)))
    ratios = [probe_ratio(w, n) for w, n in zip(weights_BNK.float().cpu(), corrupted_frame, strict=True)]
    return np.asarray(ratios, dtype=np.float64).reshape(len(clips), len(PROBE_KINDS))


class EvaluationClaims:
    """Collects the paper's claims (drsta.claims) over the clips of an evaluation.

    Spatial (Fig. 1, on each clip's clean frames) and temporal (Fig. 2) claims come from every clip whose tracklet
    has ground truth with as many frames as the manifest says; the corruption probe from the probed clips
    (`probe`). `metrics()` gives the `val/*` keys of what could be measured: without annotations, only the probe's.
    """

    def __init__(
        self,
        tracklets: Iterable[Tracklet],
        annotations: Annotations | None,
        num_frames: int,
        clips_per_tracklet: int = 1,
    ) -> None:
        """
        Args:
            tracklets: the manifest's tracklets (the evaluated clips' ids are looked up here).
            annotations: the manifest's ground truth (`drsta.data.manifest.read_manifest_annotations`), or None.
            num_frames: N, frames per clip.
            clips_per_tracklet: evaluation clips per tracklet (`DataConfig.eval_clips_per_tracklet`): with
                the clip's index, fixes its frames (`drsta.data.sampling.evaluation_indices`).
        """
        self.annotations = annotations
        self.num_frames = num_frames
        self.clips_per_tracklet = clips_per_tracklet
        self._tracklets = {t.id: t for t in tracklets}
        self._spatial: SpatialStats | None = None
        self._temporal = TemporalStats()
        self._probe_ratios: list[np.ndarray] = []

    def add_attention(
        self, ids: Sequence, clip_index: Sequence, spatial_maps: ArrayLike, temporal_weights: ArrayLike
    ) -> None:
        """Add evaluated clips (valid ones only): ids (B,), clip_index (B,), spatial maps (B, N, K, h, w),
        temporal weights (B, N, K). Clips without ground truth are passed over."""
        if self.annotations is None:
            return
        maps_BNKhw, weights_BNK = _numpy(spatial_maps), _numpy(temporal_weights)
        assert maps_BNKhw.shape[1] == self.num_frames, (maps_BNKhw.shape, self.num_frames)
        grid = maps_BNKhw.shape[-2:]
        rows, person, parts, degraded = [], [], [], []
        for row, (tracklet_id, clip) in enumerate(zip(ids, clip_index, strict=True)):
            truth = self._truth(str(tracklet_id), int(clip))
            if truth is None:
                continue
            rows.append(row)
            person.append(mask_coverage(truth.person_mask, grid))  # (N, h, w)
            parts.append(mask_coverage(truth.part_masks, grid))  # (N, P, h, w)
            degraded.append(degraded_frames(truth.occlusion, truth.bad))  # (N,)
        if not rows:
            return
        degraded_BN = np.stack(degraded)
        spatial = spatial_stats(maps_BNKhw[rows], np.stack(person), np.stack(parts), valid=~degraded_BN)
        self._spatial = spatial if self._spatial is None else self._spatial + spatial
        self._temporal += temporal_stats(weights_BNK[rows], degraded_BN)

    def add_probes(self, ratios: ArrayLike) -> None:
        """Add (B, len(PROBE_KINDS)) probe ratios (`probe`); rows of NaN (clips not probed) are passed over."""
        ratios = _numpy(ratios).reshape(-1, len(PROBE_KINDS))
        self._probe_ratios.append(ratios[np.isfinite(ratios).all(axis=1)])

    def metrics(self) -> dict[str, float]:
        """The claims' `val/*` metrics; a claim that had nothing to measure (no annotations, no degraded frame, no
        probed clip) is left out rather than logged as NaN."""
        metrics: dict[str, float] = {}
        if self._spatial is not None and self._spatial.num_frames:
            metrics |= self._spatial.result().as_metrics()
        metrics |= self._temporal.result().as_metrics()
        ratios = np.concatenate([np.zeros((0, len(PROBE_KINDS))), *self._probe_ratios])
        if len(ratios):
            metrics |= ProbeClaims.from_ratios(dict(zip(PROBE_KINDS, ratios.T, strict=True))).as_metrics()
        return {key: float(value) for key, value in metrics.items() if np.isfinite(value)}

    def _truth(self, tracklet_id: str, clip: int) -> FrameAnnotations | None:
        tracklet = self._tracklets.get(tracklet_id)
        if tracklet is None:
            return None
        indices = evaluation_indices(tracklet.num_frames, self.num_frames, self.clips_per_tracklet)[clip]
        return clip_truth(self.annotations, tracklet, indices)


def clip_truth(
    annotations: Annotations | None,
    tracklet: Tracklet,
    indices: Sequence[int] | np.ndarray,
    size: tuple[int, int] | None = None,
) -> FrameAnnotations | None:
    """The ground truth of frames `indices` of a manifest tracklet (`Annotations.lookup`), in pixels of frames
    resized to `size` (None: as written); None where there is none to trust: no annotations, the tracklet not
    annotated, or annotated with another frame count than the manifest's (no frame could be matched safely)."""
    if annotations is None or tracklet not in annotations:
        return None
    if annotations.num_frames(tracklet) != tracklet.num_frames:
        return None
    return annotations.lookup(tracklet, indices, size)


def _numpy(values: ArrayLike) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().float().cpu().numpy()
    return np.asarray(values)
