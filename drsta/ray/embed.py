"""Embedding a clip stream with a Ray Data actor pool: each actor loads the exported model once."""

from __future__ import annotations

import numpy as np
import ray
import ray.data
import torch

from drsta.archive import load_program
from drsta.claims import PROBE_KINDS
from drsta.engine import clips_to_input, probe, probe_rows


class ClipEmbedder:
    """Ray Data callable class: loads a `.pt2` program (given as bytes) once, then embeds batches of clips.

    Optionally also returns each clip's attention (for the paper's claims: a few KB per clip, (N, K, h, w) and
    (N, K) floats) and runs the corruption probe (`drsta.engine.probe`) on the clips of the `probed` tracklets.
    """

    def __init__(
        self,
        program: list[ray.ObjectRef],
        use_gpu: bool = False,
        attention: bool = False,
        probed: frozenset[str] = frozenset(),
    ) -> None:
        # The ObjectRef travels inside a list so Ray passes it through unresolved; fetched here, once per actor.
        self.device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
        self.model = load_program(ray.get(program[0])).to(self.device)  # checked: nothing in it can run code
        self.attention = attention
        self.probed = frozenset(probed)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.no_grad():
            out = self.model(clips_to_input(batch["clip"], self.device))
        result = {
            "id": batch["id"],
            "pid": batch["pid"],
            "camid": batch["camid"],
            "valid": batch["valid"],
            "embedding": out["embedding"].float().cpu().numpy(),
        }
        if "clip_index" in batch:
            result["clip_index"] = batch["clip_index"]
        if self.attention:
            result["spatial_maps"] = out["spatial_maps"].float().cpu().numpy()  # (B, N, K, h, w)
            result["temporal_weights"] = out["temporal_weights"].float().cpu().numpy()  # (B, N, K)
        if self.probed:
            ratios = np.full((len(batch["id"]), len(PROBE_KINDS)), np.nan)  # NaN: not probed
            rows = probe_rows(batch, self.probed)
            if len(rows):
                ratios[rows] = probe(self._temporal_weights, batch["clip"][rows], batch["id"][rows], self.device)
            result["probe_ratios"] = ratios
        return result

    def _temporal_weights(self, clips: torch.Tensor) -> torch.Tensor:
        return self.model(clips)["temporal_weights"]


def embed_dataset(
    clips: ray.data.Dataset,
    program_bytes: bytes,
    num_actors: int = 1,
    use_gpu: bool = False,
    batch_size: int = 16,
    attention: bool = False,
    probed: frozenset[str] = frozenset(),
) -> ray.data.Dataset:
    """Embeddings of a clip dataset by an actor pool: columns id, pid, camid, valid, embedding (and clip_index
    when the clips have it); with `attention` also spatial_maps (B, N, K, h, w) and temporal_weights (B, N, K);
    with `probed` tracklet ids also probe_ratios (B, len(PROBE_KINDS)), NaN for the rows not probed."""
    program = ray.put(program_bytes)
    return clips.map_batches(
        ClipEmbedder,
        fn_constructor_kwargs={"program": [program], "use_gpu": use_gpu, "attention": attention, "probed": probed},
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=num_actors),
        num_gpus=1 if use_gpu else 0,
        num_cpus=1,
    )
