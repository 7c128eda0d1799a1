"""A few deterministic optimisation steps of the tiny configuration, pinned: any change to the model, the
losses or their wiring that moves the numbers shows up here (update the pins only for an intended change)."""

import pytest
import torch

from drsta.config import ExperimentConfig
from drsta.losses import build_objective
from drsta.model import build_model

GOLDEN_TOTALS = [6.787641525268555, 4.183640480041504, 3.5754616260528564, 3.526057004928589]


def train_steps(num_steps: int = 4) -> list[float]:
    torch.manual_seed(1234)
    cfg = ExperimentConfig.from_dict(
        {
            "model": {
                "backbone": "tiny",
                "num_frames": 4,
                "num_attention_models": 3,
                "attention_hidden_dim": 16,
                "embedding_dim": 32,
            },
            "input": {"height": 64, "width": 32},
            "loss": {"oim_weight": 1.0, "triplet_weight": 1.0, "xent_weight": 1.0, "diversity_weight": 0.5},
        }
    )
    model = build_model(cfg.model, num_classes=3).train()
    objective = build_objective(cfg.loss, model.embedding_dim, num_classes=3).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    generator = torch.Generator().manual_seed(99)
    clips = torch.rand(6, 4, 3, 64, 32, generator=generator)
    pids = torch.tensor([0, 0, 1, 1, 2, 2])
    totals = []
    for _ in range(num_steps):
        out = model(clips)
        total, _ = objective(out.embedding, out.logits, out.diversity, pids)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    return totals


def test_golden_losses():
    totals = train_steps()
    assert totals == pytest.approx(GOLDEN_TOTALS, rel=1e-4)
    assert totals[-1] < totals[0]
