"""Embedding a clip stream with a Ray Data actor pool: each actor loads the exported model once."""

from __future__ import annotations

import numpy as np
import ray
import ray.data
import torch

from drsta.archive import load_program
from drsta.engine import clips_to_input


class ClipEmbedder:
    """Ray Data callable class: loads a `.pt2` program (given as bytes) once, then embeds batches of clips."""

    def __init__(self, program: list[ray.ObjectRef], use_gpu: bool = False) -> None:
        # The ObjectRef travels inside a list so Ray passes it through unresolved; fetched here, once per actor.
        self.device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
        self.model = load_program(ray.get(program[0])).to(self.device)  # checked: nothing in it can run code

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.no_grad():
            out = self.model(clips_to_input(batch["clip"], self.device))
        return {
            "id": batch["id"],
            "pid": batch["pid"],
            "camid": batch["camid"],
            "valid": batch["valid"],
            "embedding": out["embedding"].float().cpu().numpy(),
        }


def embed_dataset(
    clips: ray.data.Dataset, program_bytes: bytes, num_actors: int = 1, use_gpu: bool = False, batch_size: int = 16
) -> ray.data.Dataset:
    """Embeddings of a clip dataset (columns id, pid, camid, valid, embedding) by an actor pool."""
    program = ray.put(program_bytes)
    return clips.map_batches(
        ClipEmbedder,
        fn_constructor_kwargs={"program": [program], "use_gpu": use_gpu},
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=num_actors),
        num_gpus=1 if use_gpu else 0,
        num_cpus=1,
    )
