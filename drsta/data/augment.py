"""Training augmentation applied identically to every frame of a clip (temporal attention compares frames, so
they must stay aligned): a random rectangular crop resized back, a horizontal flip, random erasing."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentSpec:
    """Probabilities and ranges of the clip augmentations (open-reid / torchreid defaults)."""

    flip_p: float = 0.5
    crop_p: float = 0.5
    crop_area: tuple[float, float] = (0.64, 1.0)  # fraction of the frame kept by the crop
    erase_p: float = 0.5
    erase_area: tuple[float, float] = (0.02, 0.2)  # fraction of the frame erased
    erase_aspect: tuple[float, float] = (0.3, 3.3)  # height / width of the erased rectangle

    def __post_init__(self) -> None:
        for name in ("flip_p", "crop_p", "erase_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1], got {getattr(self, name)}")
        for name in ("crop_area", "erase_area"):
            low, high = getattr(self, name)
            if not 0 < low <= high <= 1:
                raise ValueError(f"{name} must be (low, high) with 0 < low <= high <= 1, got {(low, high)}")


def augment_clip(clip: np.ndarray, rng: np.random.Generator, spec: AugmentSpec) -> np.ndarray:
    """clip (N, H, W, 3) uint8 -> a new augmented (N, H, W, 3) uint8 clip; the input is never modified."""
    _, height, width, _ = clip.shape
    if rng.random() < spec.crop_p:
        area = rng.uniform(*spec.crop_area)
        crop_h, crop_w = max(1, round(height * np.sqrt(area))), max(1, round(width * np.sqrt(area)))
        top, left = rng.integers(0, height - crop_h + 1), rng.integers(0, width - crop_w + 1)
        clip = _resize(clip[:, top : top + crop_h, left : left + crop_w], height, width)
    if rng.random() < spec.flip_p:
        clip = clip[:, :, ::-1]
    if rng.random() < spec.erase_p:
        area = rng.uniform(*spec.erase_area) * height * width
        aspect = np.exp(rng.uniform(*np.log(spec.erase_aspect)))
        erase_h = min(height, max(1, round(np.sqrt(area * aspect))))
        erase_w = min(width, max(1, round(np.sqrt(area / aspect))))
        top, left = rng.integers(0, height - erase_h + 1), rng.integers(0, width - erase_w + 1)
        clip = clip.copy()
        clip[:, top : top + erase_h, left : left + erase_w] = rng.integers(0, 256, (erase_h, erase_w, 3), np.uint8)
    return np.ascontiguousarray(clip)


def _resize(clip: np.ndarray, height: int, width: int) -> np.ndarray:
    frames = torch.from_numpy(np.ascontiguousarray(clip)).permute(0, 3, 1, 2).float()  # (N, 3, h, w)
    resized = F.interpolate(frames, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return resized.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
