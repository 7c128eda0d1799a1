"""The serving format: a `torch.export` program of the model in eval mode, for a fixed clip length N.

Its outputs are a plain dict of tensors (no drsta types), so a saved `.pt2` loads with torch alone, without
unpickling or importing project code (`drsta.archive` checks an archive before it is loaded).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from drsta.archive import load_program
from drsta.model.drsta import DRSTA

OUTPUT_KEYS = ("embedding", "diversity", "spatial_maps", "temporal_weights")


class InferenceOutputs(nn.Module):
    """Eval-mode view of DRSTA whose forward returns a dict keyed by OUTPUT_KEYS."""

    def __init__(self, model: DRSTA) -> None:
        super().__init__()
        self.model = model

    def forward(self, clips: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.model(clips)
        return {key: getattr(out, key) for key in OUTPUT_KEYS}


def export_model(model: DRSTA, example_clips: torch.Tensor, dynamic_batch: bool = True) -> torch.export.ExportedProgram:
    """Export `model` (switched to eval mode) for clips shaped like `example_clips` (B, N, 3, H, W).

    With `dynamic_batch` the program accepts any batch size B ≥ 1; N, H and W stay those of the example.
    """
    if dynamic_batch and example_clips.shape[0] == 1:
        # torch.export specialises a batch of one to the constant 1 and then refuses the dynamic dimension.
        example_clips = example_clips.expand(2, *example_clips.shape[1:])
    model.eval()
    wrapper = InferenceOutputs(model).eval()
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None
    with torch.no_grad():
        return torch.export.export(wrapper, (example_clips,), dynamic_shapes=dynamic_shapes)


def save_exported(program: torch.export.ExportedProgram, path: str | Path) -> Path:
    """Write the program as a `.pt2` archive."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, path)
    return path


def load_exported(path: str | Path) -> nn.Module:
    """Load a `.pt2` archive written by `save_exported`, once `drsta.archive` found nothing in it that could run
    code; call it on clips to get the dict of outputs."""
    return load_program(path)
