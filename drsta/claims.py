"""Does the model learn what the paper says it learns? Measures of the claims of the supplementary's Sec. 4.5.

Fig. 1: "the attention models primarily focus on foreground regions and generally correspond to specific body
parts"; Fig. 2: "temporal attentions assign low weights to occluded or background parts and high weights to
correctly detected parts". Pure functions of model outputs and ground truth (drsta.data.annotations); the
evaluation code runs the model, looks the truth up and feeds both in. Batches are reduced to sums (`*Stats`,
added with +) and turned into results (`*Claims`, whose `as_metrics()` gives the MLflow keys) at the end.

Legend: B clips, N frames per clip, K spatial attention models, P parts (drsta.data.annotations.PARTS), h × w
the cell grid of the attention maps, H × W the model's input in pixels. Arrays are NumPy or torch (detached
and computed in float64 NumPy).

Cell coverage. The h × w cells tile the input evenly (the trunk's grid over the whole resized frame): cell (i, j)
is the rectangle [j·W/w, (j+1)·W/w) × [i·H/h, (i+1)·H/h). A region's coverage of a cell is the area of the cell
that the region covers divided by the cell's area, in [0, 1]: for a box the exact rectangle intersection
(`box_coverage`), for a mask at any resolution the exact area-weighted mean of its pixels over the cell
(`mask_coverage`; each mask pixel is a rectangle of the same image, so no resizing is involved). Summed over
the cells and divided by h·w it is the region's area fraction of the frame.

Spatial claims (`spatial_stats`, `SpatialClaims`), over the frames F that are passed and valid:
    mass of map s_{f,k} on region c:  m = Σ_cells s_{f,k} · c_f  (the maps are softmaxes: Σ_cells s = 1)
    foreground_k = Σ_f m(s_{f,k}, person_f) / Σ_f a_f, with a_f the person's area fraction of frame f: the
        share of all attention on the person over the share of all area that is person (a ratio of sums, so
        frames with little person count little); 1 = no preference, 1 / a for a map entirely on a person of
        area fraction a. foreground = mean_k foreground_k (= the same ratio pooled over the K models).
    part mass M_{k,p} = Σ_f m(s_{f,k}, part_{f,p}), summed over frames first; model k's dominant part
        d_k = argmax_p M_{k,p}; specificity_k = M_{k,d_k} / Σ_p M_{k,p}, the share of its mass on parts that
        lies on its dominant part (how attention on the person splits, not how much there is: that is
        foreground); specificity = mean_k; distinct_parts = |{d_k}|. A model with no mass on any part has no
        dominant part (−1) and specificity 0. Part masks partition the person; part boxes may overlap (an
        accessory's box over the torso), which lowers specificity even for a perfect map: prefer masks.

Temporal claims (`temporal_stats`, `TemporalClaims`), on the frame weights t_{b,n} = mean_k t_{b,n,k} (the
model's K temporal softmaxes averaged: one weight per frame, still summing to 1 over the clip, like the
single number per frame of Fig. 2). Weights are comparable only within a clip, so both measures compare frames
of the same clip only:
    bad_ratio = mean over clips with both kinds of [mean t over degraded frames / mean t over clean frames]
        (1 = no down-weighting, 0 = degraded frames ignored);
    bad_auc = the ROC AUC of the weights separating clean from degraded frames, over every (clean, degraded)
        pair of frames of the same clip, pooled over clips: P(t_clean > t_degraded) + ½ P(tie); 1 = every
        degraded frame below every clean frame of its clip, 0.5 = chance. Pooling pairs rather than averaging
        per-clip AUCs keeps clips with one degraded frame among six (AUC steps of 1/5) from dominating.
    A frame is degraded when occluded (occlusion ≥ a threshold, 0.3 by default) or bad (`degraded_frames`).

Corruption probe (`probe_clips`, `probe_ratio`, `ProbeClaims`), for any data, annotated or not: one frame of
a clip is replaced by uniform noise, by black, or by itself shifted sideways by half the width (the person
mostly out of the crop; the vacated columns repeat the frame's border column on that side, i.e. the
background continues); the model is run on each corrupted clip by the caller; `probe_ratio` is the corrupted
frame's weight over the mean weight of the other (clean) frames of that clip: 1 = not noticed, < 1 =
down-weighted.

Wiring, per clip of a synthetic set (frame indices `frames` of `tracklet`, model output `out` of that clip):

    truth = read_annotations(root).lookup(tracklet, frames)            # drsta.data.annotations
    degraded = degraded_frames(truth.occlusion, truth.bad)             # (N,)
    spatial += spatial_stats(out.spatial_maps[0], mask_coverage(truth.person_mask, grid),
                             mask_coverage(truth.part_masks, grid), valid=~degraded)   # Fig. 1 on clean frames
    temporal += temporal_stats(out.temporal_weights, degraded[None])
    ... spatial.result().as_metrics() | temporal.result().as_metrics()

starting from `SpatialStats.empty(K)` and `TemporalStats()`; and for any data, per clip:

    for kind, (corrupted, index) in probe_clips(clip, rng).items():
        ratios[kind].append(probe_ratio(model(corrupted).temporal_weights[0], index))
    ProbeClaims.from_ratios(ratios).as_metrics()
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from drsta.data.annotations import PARTS

ArrayLike = np.ndarray | torch.Tensor
PROBE_KINDS = ("noise", "black", "shift")
DEFAULT_OCCLUSION_THRESHOLD = 0.3
_SUM_TOLERANCE = 1e-3  # softmax outputs in float32/float16 sum to 1 within this


# ---------------------------------------------------------------------------------------------------------------
# Cell coverage


def box_coverage(boxes: ArrayLike, size: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
    """The fraction of each cell's area that a box covers.

    Args:
        boxes: (..., 4) x0, y0, x1, y1 in pixels (edges) of an image of `size`; a NaN box covers nothing.
        size: (H, W) of that image.
        grid: (h, w) cells tiling the image.

    Returns:
        (..., h, w) float64 in [0, 1].
    """
    boxes = _float64(boxes)
    if boxes.shape[-1:] != (4,):
        raise ValueError(f"boxes must have shape (..., 4) of x0, y0, x1, y1, got {boxes.shape}")
    height, width = size
    boxes = np.nan_to_num(boxes / np.array([width, height, width, height], dtype=np.float64), nan=0.0)
    rows = _interval_overlap(boxes[..., 1], boxes[..., 3], grid[0])  # (..., h)
    columns = _interval_overlap(boxes[..., 0], boxes[..., 2], grid[1])  # (..., w)
    return rows[..., :, None] * columns[..., None, :]


def mask_coverage(masks: ArrayLike, grid: tuple[int, int]) -> np.ndarray:
    """The fraction of each cell's area that a mask covers (the area-weighted mean of its pixels over the cell).

    Args:
        masks: (..., Hm, Wm) bool or float in [0, 1], at any resolution: the mask of the whole (resized) frame.
        grid: (h, w) cells tiling the frame.

    Returns:
        (..., h, w) float64 in [0, 1].
    """
    masks = _float64(masks)
    rows = _overlap_matrix(masks.shape[-2], grid[0])  # (h, Hm)
    columns = _overlap_matrix(masks.shape[-1], grid[1])  # (w, Wm)
    return rows @ masks @ columns.T


def _interval_overlap(start: np.ndarray, stop: np.ndarray, num_cells: int) -> np.ndarray:
    """(..., num_cells): the fraction of each of `num_cells` equal cells of [0, 1] inside [start, stop)."""
    edges = np.arange(num_cells + 1, dtype=np.float64) / num_cells
    low = np.maximum(start[..., None], edges[:-1])
    high = np.minimum(stop[..., None], edges[1:])
    return np.clip(high - low, 0, None) * num_cells


def _overlap_matrix(num_pixels: int, num_cells: int) -> np.ndarray:
    """(num_cells, num_pixels): the fraction of each cell covered by each pixel (rows sum to 1)."""
    pixels = np.arange(num_pixels, dtype=np.float64)
    return _interval_overlap(pixels / num_pixels, (pixels + 1) / num_pixels, num_cells).T


# ---------------------------------------------------------------------------------------------------------------
# Spatial claims: foreground and part specificity (Fig. 1)


@dataclass(frozen=True)
class SpatialClaims:
    """How the K spatial attention maps fall on the person and its parts (definitions in the module docstring).

    Attributes:
        foreground_per_model: (K,) attention share on the person over the person's area share.
        foreground: mean of foreground_per_model.
        part_share: (K, P) share of each model's mass on parts that lies on each part (rows sum to 1, or 0).
        dominant_part: (K,) index into PARTS of each model's dominant part, −1 for none.
        specificity_per_model: (K,) share of each model's mass on parts on its dominant part.
        specificity: mean of specificity_per_model.
        distinct_parts: number of distinct dominant parts among the K models.
        num_frames: frames measured.
    """

    foreground_per_model: np.ndarray
    foreground: float
    part_share: np.ndarray
    dominant_part: np.ndarray
    specificity_per_model: np.ndarray
    specificity: float
    distinct_parts: int
    num_frames: int

    @property
    def dominant_part_names(self) -> list[str]:
        """Each model's dominant part by name (PARTS), "none" for a model with no mass on any part."""
        if self.part_share.shape[1] != len(PARTS):
            raise ValueError(f"part names are known for the {len(PARTS)} PARTS, got {self.part_share.shape[1]} parts")
        return [PARTS[p] if p >= 0 else "none" for p in self.dominant_part]

    def as_metrics(self) -> dict[str, float]:
        return {
            "val/attn_foreground": self.foreground,
            "val/attn_part_specificity": self.specificity,
            "val/attn_distinct_parts": float(self.distinct_parts),
        }


@dataclass(frozen=True)
class SpatialStats:
    """The sums over frames that the spatial claims are ratios of; stats of several batches add up with +.

    Attributes:
        person_mass: (K,) Σ_frames mass of each model's map on the person.
        person_area: Σ_frames person area fraction.
        part_mass: (K, P) Σ_frames mass of each model's map on each part.
        num_frames: frames summed.
    """

    person_mass: np.ndarray
    person_area: float
    part_mass: np.ndarray
    num_frames: int

    @classmethod
    def empty(cls, num_models: int, num_parts: int = len(PARTS)) -> SpatialStats:
        """The sums over no frames: a start to add batches to."""
        return cls(np.zeros(num_models), 0.0, np.zeros((num_models, num_parts)), 0)

    def __add__(self, other: SpatialStats) -> SpatialStats:
        return SpatialStats(
            self.person_mass + other.person_mass,
            self.person_area + other.person_area,
            self.part_mass + other.part_mass,
            self.num_frames + other.num_frames,
        )

    def result(self) -> SpatialClaims:
        """The claims these sums give (NaN foreground when no frame had any person area)."""
        foreground = (
            self.person_mass / self.person_area if self.person_area > 0 else np.full_like(self.person_mass, np.nan)
        )
        on_parts = self.part_mass.sum(axis=1, keepdims=True)  # (K, 1)
        share = np.divide(self.part_mass, on_parts, out=np.zeros_like(self.part_mass), where=on_parts > 0)
        dominant = np.where(on_parts[:, 0] > 0, share.argmax(axis=1), -1)
        specificity = share.max(axis=1)
        return SpatialClaims(
            foreground_per_model=foreground,
            foreground=float(foreground.mean()),
            part_share=share,
            dominant_part=dominant,
            specificity_per_model=specificity,
            specificity=float(specificity.mean()),
            distinct_parts=len(set(dominant[dominant >= 0].tolist())),
            num_frames=self.num_frames,
        )


def spatial_stats(maps: ArrayLike, person: ArrayLike, parts: ArrayLike, valid: ArrayLike | None = None) -> SpatialStats:
    """The spatial claims' sums over some frames.

    Args:
        maps: (B, N, K, h, w) spatial attention maps, each a softmax over its h·w cells (any leading dims will
            do in place of B, N, the same for every argument).
        person: (B, N, h, w) the person's coverage of each cell (`mask_coverage` / `box_coverage`).
        parts: (B, N, P, h, w) each part's coverage of each cell.
        valid: (B, N) bool, the frames to measure (e.g. clean frames); None: all.
    """
    maps, person, parts = _float64(maps), _float64(person), _float64(parts)
    lead = maps.shape[:-3]
    if (
        person.shape != (*lead, *maps.shape[-2:])
        or parts.shape[: len(lead)] != lead
        or parts.shape[-2:] != maps.shape[-2:]
    ):
        raise ValueError(
            f"maps (..., K, h, w) {maps.shape}, person (..., h, w) {person.shape} and parts (..., P, h, w) "
            f"{parts.shape} must agree on the leading dims and the grid"
        )
    _check_softmax(maps.reshape(*maps.shape[:-2], -1), "each spatial map (its h·w cells)")
    keep = np.ones(lead, dtype=bool) if valid is None else _bool(valid, lead)
    maps_FKL = maps[keep].reshape(-1, maps.shape[-3], maps.shape[-2] * maps.shape[-1])
    person_FL = person[keep].reshape(len(maps_FKL), -1)
    parts_FPL = parts[keep].reshape(len(maps_FKL), parts.shape[-3], -1)
    return SpatialStats(
        person_mass=np.einsum("fkl,fl->k", maps_FKL, person_FL),
        person_area=float(person_FL.mean(axis=1).sum()),
        part_mass=np.einsum("fkl,fpl->kp", maps_FKL, parts_FPL),
        num_frames=len(maps_FKL),
    )


# ---------------------------------------------------------------------------------------------------------------
# Temporal claims: occluded and bad frames down-weighted (Fig. 2)


@dataclass(frozen=True)
class TemporalClaims:
    """How temporal attention weighs degraded frames against clean ones of the same clip (module docstring).

    Attributes:
        bad_ratio: mean over clips of (mean weight of degraded frames / mean weight of clean frames).
        bad_auc: P(clean frame's weight > degraded frame's weight) over within-clip pairs, ties ½.
        num_clips: clips with both clean and degraded frames (the others say nothing).
        num_pairs: (clean, degraded) frame pairs behind bad_auc.
    """

    bad_ratio: float
    bad_auc: float
    num_clips: int
    num_pairs: int

    def as_metrics(self) -> dict[str, float]:
        return {"val/temporal_bad_ratio": self.bad_ratio, "val/temporal_bad_auc": self.bad_auc}


@dataclass(frozen=True)
class TemporalStats:
    """The sums behind TemporalClaims; stats of several batches add up with +."""

    ratio_sum: float = 0.0  # Σ over clips of mean degraded weight / mean clean weight
    num_clips: int = 0
    pairs_won: float = 0.0  # Σ over within-clip (clean, degraded) pairs of [clean > degraded] + ½ [tie]
    num_pairs: int = 0

    def __add__(self, other: TemporalStats) -> TemporalStats:
        return TemporalStats(
            self.ratio_sum + other.ratio_sum,
            self.num_clips + other.num_clips,
            self.pairs_won + other.pairs_won,
            self.num_pairs + other.num_pairs,
        )

    def result(self) -> TemporalClaims:
        """The claims these sums give (NaN when no clip had both clean and degraded frames)."""
        return TemporalClaims(
            bad_ratio=self.ratio_sum / self.num_clips if self.num_clips else float("nan"),
            bad_auc=self.pairs_won / self.num_pairs if self.num_pairs else float("nan"),
            num_clips=self.num_clips,
            num_pairs=self.num_pairs,
        )


def degraded_frames(
    occlusion: ArrayLike, bad: np.ndarray, occlusion_threshold: float = DEFAULT_OCCLUSION_THRESHOLD
) -> np.ndarray:
    """Which frames are degraded: occluded (occlusion ≥ occlusion_threshold) or bad.

    Args:
        occlusion: (B, N) fraction of the person hidden, 0..1 (`FrameAnnotations.occlusion`).
        bad: (B, N) str bad-frame kinds ("none" for a good frame; `FrameAnnotations.bad`) or bool.
        occlusion_threshold: the occluded fraction from which a frame counts as occluded.

    Returns:
        (B, N) bool.
    """
    bad = np.asarray(bad)
    is_bad = bad if bad.dtype == bool else bad != "none"
    return (_float64(occlusion) >= occlusion_threshold) | is_bad


def frame_weights(weights: ArrayLike) -> np.ndarray:
    """One temporal weight per frame: (B, N, K) weights averaged over the K models, or (B, N) as they are.

    Each clip's weights are a softmax over its N frames (checked), so the result also sums to 1 per clip.
    """
    weights = _float64(weights)
    if weights.ndim == 3:
        weights = weights.mean(axis=2)
    if weights.ndim != 2:
        raise ValueError(f"temporal weights must have shape (B, N, K) or (B, N), got {weights.shape}")
    _check_softmax(weights, "the temporal weights of each clip (over its N frames)")
    return weights


def temporal_stats(weights: ArrayLike, degraded: ArrayLike) -> TemporalStats:
    """The temporal claims' sums over some clips.

    Args:
        weights: (B, N, K) temporal attention weights, softmax over N (or (B, N), one per frame).
        degraded: (B, N) bool, the degraded frames (`degraded_frames`).
    """
    weights_BN = frame_weights(weights)
    degraded_BN = _bool(degraded, weights_BN.shape)
    ratio_sum, num_clips, pairs_won, num_pairs = 0.0, 0, 0.0, 0
    for clip, bad in zip(weights_BN, degraded_BN, strict=True):
        clean_weights, bad_weights = clip[~bad], clip[bad]
        if not len(clean_weights) or not len(bad_weights):
            continue
        ratio_sum += bad_weights.mean() / clean_weights.mean()
        num_clips += 1
        difference = clean_weights[:, None] - bad_weights[None, :]  # every (clean, degraded) pair of the clip
        pairs_won += float((difference > 0).sum() + 0.5 * (difference == 0).sum())
        num_pairs += difference.size
    return TemporalStats(float(ratio_sum), num_clips, pairs_won, num_pairs)


# ---------------------------------------------------------------------------------------------------------------
# Corruption probe: for any data, annotated or not


@dataclass(frozen=True)
class ProbeClaims:
    """The weight a corrupted frame gets relative to the clean frames of its clip, per corruption kind.

    Attributes:
        ratios: kind (PROBE_KINDS) -> (clips,) `probe_ratio` of each probed clip.
    """

    ratios: Mapping[str, np.ndarray]

    @classmethod
    def from_ratios(cls, ratios: Mapping[str, Sequence[float]]) -> ProbeClaims:
        unknown = sorted(set(ratios) - set(PROBE_KINDS))
        if unknown:
            raise ValueError(f"unknown probe kind(s) {unknown}; expected some of {PROBE_KINDS}")
        return cls({kind: np.asarray(values, dtype=np.float64) for kind, values in ratios.items()})

    def mean(self, kind: str) -> float:
        values = self.ratios.get(kind, np.zeros(0))
        return float(values.mean()) if len(values) else float("nan")

    def std(self, kind: str) -> float:
        """The spread over clips (population standard deviation)."""
        values = self.ratios.get(kind, np.zeros(0))
        return float(values.std()) if len(values) else float("nan")

    def as_metrics(self) -> dict[str, float]:
        return {f"val/probe_{kind}_ratio": self.mean(kind) for kind in PROBE_KINDS if kind in self.ratios}


def probe_clips(
    clip: np.ndarray, rng: np.random.Generator, index: int | None = None
) -> dict[str, tuple[np.ndarray, int]]:
    """Corrupted copies of a clip, one frame replaced; the same frame for every kind.

    Args:
        clip: (N, H, W, 3) uint8 frames, as decoded (before normalisation).
        rng: draws the frame (unless `index` is given), then the noise, then the shift's direction: the same
            generator state gives the same copies.
        index: the frame to corrupt; None: a random one.

    Returns:
        kind -> (corrupted clip, index of the corrupted frame), for every kind of PROBE_KINDS:
            noise: uniform noise in 0..255, independent per pixel and channel;
            black: all zeros;
            shift: the frame moved sideways (left or right, at random) by half its width; the vacated columns
                repeat the frame's border column on that side.
    """
    clip = np.asarray(clip)
    if clip.ndim != 4 or clip.shape[-1] != 3 or clip.dtype != np.uint8 or len(clip) < 2:
        raise ValueError(f"clip must be an (N, H, W, 3) uint8 array with N >= 2, got {clip.shape} {clip.dtype}")
    num_frames, height, width = clip.shape[:3]
    if index is None:
        index = int(rng.integers(num_frames))
    if not 0 <= index < num_frames:
        raise ValueError(f"index must be in 0..{num_frames - 1}, got {index}")
    replacements = {
        "noise": rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
        "black": np.zeros((height, width, 3), dtype=np.uint8),
        "shift": _shift_sideways(clip[index], width // 2, direction=int(rng.choice([-1, 1]))),
    }
    probed = {}
    for kind, frame in replacements.items():
        corrupted = clip.copy()
        corrupted[index] = frame
        probed[kind] = (corrupted, index)
    return probed


def _shift_sideways(frame: np.ndarray, shift: int, direction: int) -> np.ndarray:
    """`frame` (H, W, 3) moved right (direction 1) or left (−1) by `shift` columns, the border column repeated."""
    width = frame.shape[1]
    if direction > 0:
        columns = np.clip(np.arange(width) - shift, 0, None)
    else:
        columns = np.clip(np.arange(width) + shift, None, width - 1)
    return frame[:, columns]


def probe_ratio(weights: ArrayLike, index: int) -> float:
    """The weight of frame `index` over the mean weight of the clip's other frames (1 = weighed like them).

    Args:
        weights: (N, K) temporal weights of the corrupted clip (averaged over K), or (N,).
        index: the corrupted frame.
    """
    weights = _float64(weights)
    weights = weights.mean(axis=1) if weights.ndim == 2 else weights
    if weights.ndim != 1 or len(weights) < 2:
        raise ValueError(f"weights must have shape (N, K) or (N,) with N >= 2, got {weights.shape}")
    others = np.delete(weights, index)
    return float(weights[index] / others.mean())


# ---------------------------------------------------------------------------------------------------------------


def _float64(values: ArrayLike) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().to("cpu", torch.float64).numpy()
    return np.asarray(values, dtype=np.float64)


def _bool(values: ArrayLike, shape: tuple[int, ...]) -> np.ndarray:
    values = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if values.shape != tuple(shape):
        raise ValueError(f"expected a {tuple(shape)} bool array of frames, got {values.shape}")
    return values.astype(bool)


def _check_softmax(values: np.ndarray, what: str) -> None:
    """Raise unless every row of the last axis sums to 1 (the claims' definitions assume softmax outputs)."""
    sums = values.sum(axis=-1)
    if values.size and (np.abs(sums - 1).max() > _SUM_TOLERANCE or values.min() < 0):
        raise ValueError(
            f"{what} must be non-negative and sum to 1 (a softmax), got sums in [{sums.min():.4g}, {sums.max():.4g}]"
        )
