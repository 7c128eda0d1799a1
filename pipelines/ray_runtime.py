"""How every drsta command finds its Ray cluster, or starts one: one policy, in `connect`.

1. `--address` given (`auto` for the cluster `ray start` left on this host, `HOST:6379`, `ray://HOST:10001`):
   connect there.
2. Else RAY_ADDRESS, which Ray gives a job's driver (`drsta submit`, `ray job submit`): connect there.
3. Else start a private local Ray for this command; it stops with the command. It starts with LOCAL_RAY_ENV:
   idle worker processes kept a minute, Ray Train's controller polling every 0.5 s.

The commands that train (train, tune, benchmark, demo) connect through `init_ray`, which gives a private Ray room
for their workers and their data stream.

A bare `ray.init()` is never used: it silently joins the Ray instance that `ray.init` finds on this host (the one
`ray start` left last), someone else's cluster or a test cluster, and on a host with several instances Ray's own
housekeeping asks the wrong one (Ray Train's PlacementGroupCleaner finds "its" cluster through the State API,
which resolves RAY_API_SERVER_ADDRESS, RAY_ADDRESS, then the newest `ray start`; several instances per host are
unsupported, ray-project/ray PR #45836). A private Ray therefore pins RAY_API_SERVER_ADDRESS, for the driver and
every process of that Ray, to its own dashboard.

Every driver marks its job as drsta's: the job's metadata (JobConfig, kept in the GCS job table) carries
`drsta: COMMAND`. `pipelines.cluster` only ever touches placement groups of jobs so marked.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import ray
from ray.job_config import JobConfig
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from drsta.config import ExperimentConfig
from pipelines.console import quiet_ray_loggers, ray_logging_level

logger = logging.getLogger(__name__)

DRSTA_JOB = "drsta"
"""Key of the job metadata that marks a Ray job as drsta's; its value is the drsta command (train, tune, ...)."""
API_SERVER_VARIABLE = "RAY_API_SERVER_ADDRESS"
SETTLE_TIMEOUT_S = 600  # unpacking a working_dir on a busy node; Ray's own runtime-env setup timeout is 600 s too
# The environment a private Ray starts with (a variable already set wins); the test cluster's too, and
# infra/local/cluster.sh sets the last two.
# - Ray Train gives a worker group 60 s to start; on a small, busy machine (several trials' workers importing
#   torch at once) that is not enough and the run fails with WorkerGroupStartupTimeoutError.
# Measured with benchmarks/tune.py on a 2-core machine:
# - Ray kills a worker process idle for 1 s once a node has more workers than CPUs, which a node running training
#   workers always has: every epoch's decode tasks then start new processes (torch and decord imported again,
#   3.5 s an epoch, more than the epoch itself at the tiny scale). Idle for a minute instead, the decoders of one
#   epoch decode the next.
# - Ray Train's controller takes each worker's reports one per poll, every 2 s: epochs shorter than that wait for
#   it. Every 0.5 s instead.
LOCAL_RAY_ENV = {"RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "600", "RAY_idle_worker_killing_time_threshold_ms": "60000",
                 "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5"}  # fmt: skip

_pinned_api_server: str | None = None  # the RAY_API_SERVER_ADDRESS this process set for its private Ray
_unpinned_api_server: str | None = None  # what RAY_API_SERVER_ADDRESS was before that
_connected_here = False  # whether the current Ray connection was made by `connect` (and so is `disconnect`'s)


def connect(
    address: str | None,
    command: str,
    num_cpus: int = 0,
    log_to_driver: bool = True,
) -> None:
    """Connect this command's driver to Ray: `address`, else RAY_ADDRESS, else a private local Ray.

    A process already connected keeps its connection (the commands' former `ignore_reinit_error=True`), and
    `disconnect` leaves it alone: a command run inside a program that has its own Ray connection (a test, a
    notebook, `drsta demo`) never shuts that connection down.

    Args:
        address: the --address flag (None when not given).
        command: the drsta command, recorded in the job's metadata.
        num_cpus: logical CPUs a private Ray needs at least; it gets max(this machine's CPUs, num_cpus).
        log_to_driver: print the workers' output here.
    """
    global _pinned_api_server, _unpinned_api_server, _connected_here
    if ray.is_initialized():
        return
    job_config = JobConfig(metadata={DRSTA_JOB: command})
    quiet_ray_loggers()
    _unpin_api_server()  # the private Ray of an earlier command in this process is gone
    if address or os.environ.get("RAY_ADDRESS"):
        working_dir = _working_directory()
        ray.init(address=address, job_config=job_config, log_to_driver=log_to_driver,
                 logging_level=ray_logging_level())  # fmt: skip
        _connected_here = True
        settle_working_dir(working_dir)
        return
    set_local_ray_env()
    port = _free_port()
    _pinned_api_server = f"http://127.0.0.1:{port}"
    _unpinned_api_server = os.environ.get(API_SERVER_VARIABLE)
    os.environ[API_SERVER_VARIABLE] = _pinned_api_server  # inherited by the private Ray's raylet and its workers
    try:
        ray.init(address="local", num_cpus=max(os.cpu_count() or 1, num_cpus), dashboard_host="127.0.0.1",
                 dashboard_port=port, job_config=job_config, log_to_driver=log_to_driver,
                 logging_level=ray_logging_level())  # fmt: skip
    except BaseException:
        _unpin_api_server()
        raise
    _connected_here = True


def init_ray(
    address: str | None,
    cfg: ExperimentConfig,
    concurrent_runs: int = 1,
    log_to_driver: bool = True,
    command: str = "train",
) -> None:
    """Connect to Ray by drsta's one policy (`connect`: --address, else RAY_ADDRESS, else a private local Ray),
    with room locally for the training workers *and* the decode tasks.

    Locally the training workers would otherwise hold every CPU and the data stream could not run: the local
    Ray gets two logical CPUs beyond the workers' of `concurrent_runs` runs (oversubscribing a small machine).
    """
    needed = int(concurrent_runs * cfg.train.num_workers * cfg.train.cpus_per_worker) + 2
    # A local Ray keeps its dashboard: it serves the State API that Ray Train uses to watch (and clean up after)
    # its runs.
    connect(address, command, num_cpus=needed, log_to_driver=log_to_driver)


def set_local_ray_env() -> None:
    """LOCAL_RAY_ENV into this process's environment (a variable already set wins), for a Ray started here."""
    for key, value in LOCAL_RAY_ENV.items():
        os.environ.setdefault(key, value)


def disconnect() -> None:
    """End the Ray connection `connect` made (stopping a private Ray); a connection made elsewhere stays.

    RAY_API_SERVER_ADDRESS gets back its value from before the private Ray: left pointing at the stopped
    dashboard, it would override the address of every later Jobs API client in this process (Ray's
    `get_address_for_submission_client` prefers it to an explicit address).
    """
    global _connected_here
    if _connected_here:
        ray.shutdown()
        _connected_here = False
    _unpin_api_server()


def _unpin_api_server() -> None:
    global _pinned_api_server
    if _pinned_api_server is not None and os.environ.get(API_SERVER_VARIABLE) == _pinned_api_server:
        if _unpinned_api_server is None:
            del os.environ[API_SERVER_VARIABLE]
        else:
            os.environ[API_SERVER_VARIABLE] = _unpinned_api_server
    _pinned_api_server = None


def settle_working_dir(working_dir: Path | None) -> None:
    """In a job with a working_dir, have every other node on this host unpack it now, then step back into it.

    Several Ray nodes on one host (infra/local/cluster.sh, ray.cluster_utils.Cluster) share one session directory
    and so one `runtime_resources/working_dir_files/_ray_pkg_<hash>/`, while each node's runtime-env agent keeps
    its own record of what it unpacked. Ray installs a job's runtime env on every node when the job starts, and
    Ray 2.60 unpacks a working_dir its agent has not seen with `overwrite=True` (`WorkingDirPlugin.create` →
    `packaging.download_and_unpack_package`): it deletes the directory and unpacks a fresh copy at the same
    path. Every process already inside (this driver, a worker started early) then sits in a deleted directory,
    and `os.getcwd()` raises FileNotFoundError (e.g. inside MLflow's `resolve_uri_if_local`). Once each node ran
    a zero-CPU task in the job's runtime env, every agent has the package and never unpacks it again for this
    job: the driver steps into the fresh copy, and whatever the job starts later stays in it.

    Args:
        working_dir: this driver's working directory as it was before `ray.init` (None if it was already gone).
    """
    uri = ray.get_runtime_context().runtime_env.working_dir()
    if not uri or uri.startswith("local://"):  # no working_dir, or one Ray uses in place and never unpacks
        return
    here = ray.get_runtime_context().get_node_id()
    nodes = [node for node in ray.nodes() if node["Alive"]]
    host = next(node["NodeManagerAddress"] for node in nodes if node["NodeID"] == here)
    neighbours = [node["NodeID"] for node in nodes if node["NodeManagerAddress"] == host and node["NodeID"] != here]
    ready = [_installed.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote()
             for node in neighbours]  # fmt: skip
    ray.get(ready, timeout=SETTLE_TIMEOUT_S)
    if working_dir is not None and working_dir.is_dir():
        os.chdir(working_dir)  # the fresh copy at the same path


@ray.remote(num_cpus=0)
def _installed() -> None:
    """Runs in the job's runtime env on one node: by then that node's agent has unpacked the working_dir."""


def _working_directory() -> Path | None:
    """This process's working directory, also when it was deleted under it (Linux names it "PATH (deleted)")."""
    try:
        return Path.cwd()
    except FileNotFoundError:
        link = Path("/proc/self/cwd")
        return Path(os.readlink(link).removesuffix(" (deleted)")) if link.is_symlink() else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
