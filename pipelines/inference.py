"""Using a trained model on new footage: load it (registry URI or a pulled directory), read tracklets from
video files or frame folders, embed them in batches.

Shared by `drsta embed`, `drsta search` and `drsta explain`. The model is the exported `.pt2` program, checked
and then loaded with torch.export (nothing in a model file can run code); frames are the deterministic test-time
ones (each chunk's middle frame).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from drsta.config import ExperimentConfig
from drsta.data.datasets._common import list_files
from drsta.data.datasets.videos import VIDEO_SUFFIXES
from drsta.data.decode import DecodeError, probe, read_clip
from drsta.data.sampling import evaluation_indices
from drsta.engine import clips_to_input
from pipelines.commands import MODEL_HELP
from pipelines.console import progress_bar
from pipelines.model_files import load_model_dir
from pipelines.tracking import existing_tracking_uri, load_registered

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
_LAST_NUMBER = re.compile(r".*?(?P<frame>\d+)\D*")


@dataclass
class LoadedModel:
    """An exported DRSTA program with its training config and registry metadata."""

    program: Any  # clips (B, N, 3, H, W) in [0, 1] -> {"embedding", "spatial_maps", "temporal_weights", ...}
    config: ExperimentConfig
    metadata: dict[str, Any]
    uri: str  # where it came from, with the version resolved: models:/drsta/3 (or the directory)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def size(self) -> tuple[int, int]:
        return self.config.input.height, self.config.input.width

    def __call__(self, clips: np.ndarray) -> dict[str, np.ndarray]:
        """Model outputs for (B, N, H, W, 3) uint8 clips, as float32 NumPy arrays."""
        with torch.no_grad():
            out = self.program(clips_to_input(clips, self.device))
        return {key: value.float().cpu().numpy() for key, value in out.items()}


def load_model(spec: str, tracking_uri: str | None, use_gpu: bool | None = None) -> LoadedModel:
    """Load `spec` (a registry URI or a pulled directory); on the GPU when there is one (or as `use_gpu` says)."""
    if spec.startswith("models:/"):
        with tempfile.TemporaryDirectory() as directory:
            program, metadata = load_registered(spec, existing_tracking_uri(tracking_uri), directory)
        uri = f"models:/{metadata['registered_name']}/{metadata['version']}"
    else:
        program, metadata = load_pulled(Path(spec))
        uri = str(Path(spec).resolve())
    config = ExperimentConfig.from_dict(metadata["config"], source=f"config of {spec}")
    if use_gpu is None:
        use_gpu = torch.cuda.is_available()
    device = torch.device("cuda" if use_gpu else "cpu")
    return LoadedModel(program.to(device), config, metadata, uri, device)


def load_pulled(directory: Path) -> tuple[Any, dict[str, Any]]:
    """The program and metadata of a directory written by `drsta models pull` (checked: nothing in it runs)."""
    model_dir = directory / "model"
    if not (model_dir / "MLmodel").is_file():
        raise ValueError(f"--model {directory}: not a pulled model (no model/MLmodel in it); expected {MODEL_HELP}")
    return load_model_dir(model_dir, str(directory))


@dataclass(frozen=True)
class Footage:
    """One tracklet given on the command line: a video file or a folder of frames."""

    path: str
    source: str  # "video" | "frames"
    frames: tuple[str, ...] = ()


def footage(paths: Sequence[str | Path]) -> list[Footage]:
    """Check every path before any work: each must be a video file or a folder of frames."""
    found, problems = [], []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            if path.suffix.lower() in VIDEO_SUFFIXES:
                found.append(Footage(str(path), "video"))
            else:
                problems.append(f"{path}: not a video ({'/'.join(VIDEO_SUFFIXES)}) or a folder of frames")
        elif path.is_dir():
            images = list_files(path, IMAGE_SUFFIXES)
            if images:
                found.append(Footage(str(path), "frames", _in_order(images)))
            else:
                problems.append(f"{path}: a folder without {'/'.join(IMAGE_SUFFIXES)} frames")
        else:
            problems.append(f"{path}: no such file or folder")
    if problems:
        raise FileNotFoundError("cannot read these inputs:\n  " + "\n  ".join(problems))
    return found


def _in_order(images: list[Path]) -> tuple[str, ...]:
    """Frames by the last number in their names (1.jpg < 2.jpg < 10.jpg), by name if some have none."""
    matches = [_LAST_NUMBER.fullmatch(image.name) for image in images]
    if all(matches):
        keyed = sorted((int(m["frame"]), image.name, str(image)) for m, image in zip(matches, images, strict=True))
        return tuple(path for _, _, path in keyed)
    return tuple(str(image) for image in sorted(images))


def read_footage(item: Footage, num_frames: int, size: tuple[int, int]) -> np.ndarray:
    """The test-time clip of one tracklet: (N, H, W, 3) uint8, each chunk's middle frame."""
    length = probe(item.source, item.path, item.frames).num_frames
    indices = evaluation_indices(length, num_frames)[0]
    return read_clip(item.source, item.path, item.frames, indices, size)


@dataclass
class Embedded:
    """Embeddings of the inputs that decoded, and the reason for each one that did not."""

    paths: list[str] = field(default_factory=list)
    embeddings: list[np.ndarray] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)

    def failure_report(self) -> str:
        """One indented line per input that could not be decoded: its path and why."""
        return "\n  ".join(f"{path}: {reason}" for path, reason in self.failures.items())


def embed_footage(model: LoadedModel, items: Sequence[Footage], batch_size: int = 16) -> Embedded:
    """Embed `items` in batches; decoding runs in threads ahead of the model. Undecodable inputs are skipped
    and reported in `failures`, so one bad file never loses the others."""
    result = Embedded()
    with progress_bar("embed", total=len(items), unit="tracklets") as bar:
        for paths, clips in _batches(model, items, batch_size, result.failures):
            result.paths += paths
            result.embeddings += list(model(np.stack(clips))["embedding"])
            bar.update(len(paths))
    return result


def _batches(
    model: LoadedModel, items: Sequence[Footage], batch_size: int, failures: dict[str, str]
) -> Iterator[tuple[list[str], list[np.ndarray]]]:
    def decode(item: Footage) -> np.ndarray | str:
        try:
            return read_footage(item, model.config.model.num_frames, model.size)
        except (DecodeError, OSError, ValueError) as err:
            return str(err)

    paths: list[str] = []
    clips: list[np.ndarray] = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        for item, clip in zip(items, pool.map(decode, items), strict=True):
            if isinstance(clip, str):
                failures[item.path] = clip
                continue
            paths.append(item.path)
            clips.append(clip)
            if len(clips) == batch_size:
                yield paths, clips
                paths, clips = [], []
    if clips:
        yield paths, clips
