"""Show what the model looks at in a tracklet: the supplementary's Fig. 1 and Fig. 2 for new footage.

The image has Fig. 1 on top (each shown frame beside the receptive fields of the K spatial attention models)
and Fig. 2 below (the clip's frames with the temporal attention weight of each, the heaviest framed in red).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from drsta import viz
from drsta.io import check_new_figure
from pipelines.inference import footage, load_model, read_footage


def rendered(fig: Figure, dpi: int = 100) -> np.ndarray:
    """The figure drawn to an (H, W, 3) uint8 image."""
    fig.set_dpi(dpi)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def stacked(images: list[np.ndarray]) -> np.ndarray:
    """Images one above the other on white, left-aligned."""
    width = max(image.shape[1] for image in images)
    padded = [np.pad(im, ((0, 0), (0, width - im.shape[1]), (0, 0)), constant_values=255) for im in images]
    return np.concatenate(padded)


def explain(
    model_spec: str, path: Path, out: Path, tracking_uri: str | None, max_frames: int = 4, force: bool = False
) -> dict:
    """Write the two figures for one tracklet into `out`; returns the temporal weights (N, K)."""
    check_new_figure(out, force, "--out")
    if max_frames < 1:
        raise ValueError(f"--max-frames {max_frames}: must be at least 1")
    (item,) = footage([path])
    model = load_model(model_spec, tracking_uri)
    clip = read_footage(item, model.config.model.num_frames, model.size)
    outputs = model(clip[None])
    maps, weights = outputs["spatial_maps"][0], outputs["temporal_weights"][0]
    spatial = viz.receptive_fields_figure(clip, maps, max_frames=max_frames)
    temporal = viz.temporal_weights_figure(clip, weights)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.stem}.partial{out.suffix}")
    Image.fromarray(stacked([rendered(spatial), rendered(temporal)])).save(partial)
    os.replace(partial, out)
    return {"temporal_weights": weights, "model_uri": model.uri}


def run(args: argparse.Namespace) -> None:
    result = explain(args.model, args.path, args.out, args.tracking_uri, args.max_frames, args.force)
    mean = result["temporal_weights"].mean(axis=1)
    print(f"explain: {args.path} with {result['model_uri']}: temporal weights {np.round(mean, 3).tolist()}")
    print(f"explain: wrote {args.out}")


if __name__ == "__main__":
    from pipelines.cli import main

    main(["explain", *sys.argv[1:]])
