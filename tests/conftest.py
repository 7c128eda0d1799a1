import os

import numpy as np
import pytest
import torch

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def ray_cluster():
    """A real three-node Ray cluster on this machine (ray.cluster_utils.Cluster), shared by the integration tests:
    a 1-CPU head and two 2-CPU worker nodes (logical CPUs: the machine has 2 cores)."""
    import ray
    from ray.cluster_utils import Cluster

    from pipelines.ray_runtime import set_local_ray_env

    set_local_ray_env()  # as a private Ray has it: a longer worker-group start, idle workers kept, a faster poll
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=2)
    cluster.add_node(num_cpus=2)
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture(scope="session")
def manifest(tmp_path_factory, ray_cluster):
    """A small synthetic set (8 training, 6 test identities, 2 cameras, 64×40 frames), ingested."""
    from drsta.data.synthetic import SyntheticSpec, generate
    from pipelines.ingest import ingest

    root = tmp_path_factory.mktemp("synthetic-set")
    spec = SyntheticSpec(seed=5, num_train_ids=8, num_test_ids=6, num_cameras=2, tracklets_per_id_per_camera=2,
                         min_frames=8, max_frames=16, height=64, width=40, gop=4)  # fmt: skip
    generate(spec, root / "synth")
    ingest("videos", root / "synth", root / "ingest")
    return root / "ingest"
