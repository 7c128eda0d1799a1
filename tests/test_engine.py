"""drsta.engine under DDP with bad data (2 gloo processes), and checkpoints that load with weights_only."""

import random
import socket
import warnings
from datetime import timedelta

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from drsta.config import LossConfig, OptimConfig
from drsta.engine import build_optimizer, clips_to_input, load_state, rng_states, set_rng_states, train_batch
from drsta.losses import IGNORED, OIMLoss, build_objective
from drsta.model import drsta_tiny

NUM_CLASSES = 4
CLIPS = (4, 4, 3, 64, 32)  # (B, N, 3, H, W) per worker


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    model = drsta_tiny(NUM_CLASSES)
    objective = build_objective(LossConfig(triplet_weight=1.0, xent_weight=1.0), model.embedding_dim, NUM_CLASSES)
    # Momentum and weight decay: both would move the weights on a step with zero gradients.
    optimizer = build_optimizer(model, OptimConfig(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.01))
    return model, objective, optimizer


def _worker(rank: int, port: int, valid: list[list[bool]], out: dict) -> None:
    """Train on `valid[step][rank]`-good batches; report parameters and OIM table after each step."""
    # A short timeout: a collective that one rank skips fails in seconds instead of hanging the test.
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=20))  # fmt: skip
    try:
        model, objective, optimizer = _setup()
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        generator = torch.Generator().manual_seed(rank)
        for step, flags in enumerate(valid):
            clips = torch.rand(*CLIPS, generator=generator)
            labels = torch.tensor([0, 0, 1 + rank, 1 + rank])
            parts = train_batch(ddp, objective, optimizer, clips, labels, flags[rank])
            out[(rank, step)] = {
                "params": torch.cat([p.detach().flatten() for p in model.parameters()]),
                "lut": objective.oim.lut.clone(),
                "learned": parts is not None,
            }
    finally:
        dist.destroy_process_group()


def _run(valid: list[list[bool]]) -> dict:
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(_free_port(), valid, out), nprocs=2, join=True)
        return dict(out)


def test_a_worker_whose_batch_failed_to_decode_stays_in_step_and_teaches_nothing():
    # Step 0: rank 1's whole batch failed. Step 1: both fine. Step 2: both failed.
    out = _run([[True, False], [True, True], [False, False]])
    initial = torch.cat([p.detach().flatten() for p in _setup()[0].parameters()])
    for step in range(3):
        torch.testing.assert_close(out[(0, step)]["params"], out[(1, step)]["params"], rtol=0, atol=0)
        torch.testing.assert_close(out[(0, step)]["lut"], out[(1, step)]["lut"], rtol=0, atol=0)
    assert not torch.equal(out[(0, 0)]["params"], initial)  # rank 0's batch taught both replicas
    assert not out[(1, 0)]["learned"] and out[(0, 0)]["learned"]
    # Rank 1's failed clips (labels 2) never reached the OIM table; rank 0's (labels 0 and 1) did.
    lut = out[(0, 0)]["lut"]
    assert lut[0].abs().sum() > 0 and lut[1].abs().sum() > 0 and lut[2].abs().sum() == 0
    # No worker had data at step 2: not even momentum or weight decay may move the weights.
    torch.testing.assert_close(out[(0, 2)]["params"], out[(0, 1)]["params"], rtol=0, atol=0)
    torch.testing.assert_close(out[(0, 2)]["lut"], out[(0, 1)]["lut"], rtol=0, atol=0)


def test_without_torch_distributed_a_failed_batch_takes_no_step():
    model, objective, optimizer = _setup()
    clips, labels = torch.rand(*CLIPS), torch.tensor([0, 0, 1, 1])
    assert train_batch(model, objective, optimizer, clips, labels, True) is not None  # momentum now nonzero
    before = [p.detach().clone() for p in model.parameters()]
    assert train_batch(model, objective, optimizer, clips, labels, False) is None
    for p, q in zip(model.parameters(), before, strict=True):
        torch.testing.assert_close(p.detach(), q, rtol=0, atol=0)


def test_oim_ignores_ignored_targets_and_rejects_unknown_ones():
    oim = OIMLoss(4, 3)
    features = torch.randn(2, 4)
    loss = oim(features, torch.tensor([IGNORED, IGNORED]))
    assert loss.item() == 0 and oim.lut.abs().sum() == 0
    with pytest.raises(ValueError, match="ignored"):
        oim(features, torch.tensor([-5, 0]))


def test_rng_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    np.random.standard_normal()  # a cached Gaussian in NumPy's state
    torch.save({"model": {}, "rng": rng_states()}, tmp_path / "state.pt")
    want = (torch.rand(3), np.random.rand(3), np.random.standard_normal(), random.random())
    set_rng_states(load_state(tmp_path / "state.pt")["rng"])
    got = (torch.rand(3), np.random.rand(3), np.random.standard_normal(), random.random())
    torch.testing.assert_close(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert got[2:] == want[2:]


def test_load_state_names_a_damaged_or_foreign_checkpoint(tmp_path):
    (tmp_path / "truncated.pt").write_bytes(b"PK\x03\x04 not a whole zip")
    with pytest.raises(ValueError, match=r"truncated\.pt: not a readable checkpoint"):
        load_state(tmp_path / "truncated.pt")
    torch.save({"epoch": 3}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"other\.pt: not a checkpoint of drsta train"):
        load_state(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match=r"none\.pt"):
        load_state(tmp_path / "none.pt")


def test_clips_to_input_takes_the_streams_read_only_batches_without_a_warning_or_a_write():
    clips = np.random.default_rng(0).integers(0, 256, (2, 3, 4, 5, 3), dtype=np.uint8)
    clips.flags.writeable = False  # as Ray Data hands out a zero-copy slice of a block
    before = clips.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model_input = clips_to_input(clips, torch.device("cpu"))
    assert model_input.dtype == torch.float32 and model_input.shape == (2, 3, 3, 4, 5)
    assert torch.equal(model_input, torch.from_numpy(before).permute(0, 1, 4, 2, 3).float() / 255)
    np.testing.assert_array_equal(clips, before)
