"""infra/ holds together: manifests, cluster-launcher config, Dockerfile and scripts agree with each other and
with the security rules (token authentication everywhere, nothing exposed, no secrets), and infra/local's scripts
refuse state that others could have tampered with. Fast: nothing starts (the scripts meet fake `ray` / `mlflow`)."""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

from drsta.resources import config_names
from tests.local_cluster import free_port

REPO = Path(__file__).resolve().parents[1]
INFRA = REPO / "infra"
KUBERAY = INFRA / "kuberay"
LAUNCHER = INFRA / "cluster-launcher" / "aws-gpu.yaml"
DOCKERFILE = INFRA / "Dockerfile"
SCRIPTS = sorted(INFRA.rglob("*.sh"))


def load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def image_tag() -> str:
    """The tag the Dockerfile's build command gives the image."""
    match = re.search(r"docker build -f infra/Dockerfile -t (\S+) \.", DOCKERFILE.read_text())
    assert match, "infra/Dockerfile should show its build command: docker build -f infra/Dockerfile -t IMAGE ."
    return match.group(1)


def one(path: Path, kind: str) -> dict[str, Any]:
    docs = [doc for doc in load(path) if doc.get("kind") == kind]
    assert len(docs) == 1, f"{path.name} should hold one {kind}"
    return docs[0]


def cluster_specs() -> dict[str, dict[str, Any]]:
    """Every RayCluster spec: the standalone cluster's and the RayJob's own."""
    return {
        "raycluster": one(KUBERAY / "raycluster.yaml", "RayCluster")["spec"],
        "rayjob": one(KUBERAY / "rayjob.yaml", "RayJob")["spec"]["rayClusterSpec"],
    }


def groups(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [spec["headGroupSpec"], *spec["workerGroupSpecs"]]


def containers(group: dict[str, Any]) -> list[dict[str, Any]]:
    return group["template"]["spec"]["containers"]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {var["name"]: var for var in container.get("env", [])}


def walk(node: Any, key: str | None = None) -> Iterator[tuple[str | None, Any]]:
    """Every (key, value) pair of a YAML document, depth first; list items keep their list's key."""
    yield key, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, k)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item, key)


def all_docs() -> list[dict[str, Any]]:
    return [doc for path in INFRA.rglob("*.y*ml") for doc in load(path)]


@pytest.mark.parametrize("path", sorted(INFRA.rglob("*.y*ml")), ids=lambda p: str(p.relative_to(INFRA)))
def test_every_yaml_parses(path: Path) -> None:
    assert load(path), f"{path} holds no document"


def test_image_tag_matches_package_and_cuda() -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    base = re.search(r"^FROM nvidia/cuda:(\d+)\.(\d+)\.\d+-\S+", DOCKERFILE.read_text(), re.MULTILINE)
    assert base, "infra/Dockerfile should build FROM an nvidia/cuda image"
    assert image_tag() == f"ghcr.io/drsta/drsta:{version}-cu{base.group(1)}{base.group(2)}"


def test_every_container_runs_the_image() -> None:
    images = {value for doc in all_docs() for key, value in walk(doc) if key in ("image", "head_image", "worker_image")}
    assert images == {image_tag()}


def test_rayjob_cluster_is_the_standalone_cluster() -> None:
    """rayjob.yaml repeats raycluster.yaml's spec (manifests cannot share one): the two must not drift apart."""
    specs = cluster_specs()
    assert specs["rayjob"] == specs["raycluster"]


@pytest.mark.parametrize("name", ["raycluster", "rayjob"])
def test_cluster_spec_versions_and_autoscaling(name: str) -> None:
    spec = cluster_specs()[name]
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    ray = next(Requirement(dep) for dep in dependencies if dep.startswith("ray["))
    assert ray.specifier.contains(spec["rayVersion"]), f"rayVersion {spec['rayVersion']} is outside {ray}"
    assert spec["enableInTreeAutoscaling"] is True
    for group in spec["workerGroupSpecs"]:
        assert 0 <= group["minReplicas"] <= group.get("replicas", group["minReplicas"]) <= group["maxReplicas"]


@pytest.mark.parametrize("name", ["raycluster", "rayjob"])
def test_head_has_no_gpu_and_no_work(name: str) -> None:
    head = cluster_specs()[name]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert head["rayStartParams"].get("num-gpus", "0") == "0"
    for container in containers(head):
        for kind in ("requests", "limits"):
            assert "nvidia.com/gpu" not in container["resources"].get(kind, {})


@pytest.mark.parametrize("name", ["raycluster", "rayjob"])
def test_gpu_workers_match_their_limits(name: str) -> None:
    """Ray schedules by rayStartParams, Kubernetes by the limits: the two must say the same."""
    gpu_groups = [g for g in cluster_specs()[name]["workerGroupSpecs"] if g["rayStartParams"].get("num-gpus")]
    assert gpu_groups, "a GPU worker group is expected"
    for group in gpu_groups:
        params = group["rayStartParams"]
        (container,) = containers(group)
        limits, requests = container["resources"]["limits"], container["resources"]["requests"]
        assert limits["nvidia.com/gpu"] == params["num-gpus"] == requests["nvidia.com/gpu"]
        assert limits["cpu"] == params["num-cpus"] == requests["cpu"]
        assert float(params["num-gpus"]) >= 1


@pytest.mark.parametrize("name", ["raycluster", "rayjob"])
def test_every_container_authenticates_with_the_token_secret(name: str) -> None:
    spec = cluster_specs()[name]
    assert spec["authOptions"]["mode"] == "token"
    for group in groups(spec):
        for container in containers(group):
            env = env_of(container)
            assert env["RAY_AUTH_MODE"]["value"] == "token", container["name"]
            ref = env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": spec["authOptions"]["secretName"], "key": "auth_token"}, container["name"]


@pytest.mark.parametrize("name", ["raycluster", "rayjob"])
def test_containers_get_mlflow_and_s3_settings_from_config(name: str) -> None:
    for group in groups(cluster_specs()[name]):
        for container in containers(group):
            env = env_of(container)
            assert "MLFLOW_TRACKING_URI" in env
            for var in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                assert env[var]["valueFrom"]["secretKeyRef"]["name"] == "drsta-s3", var


def test_nothing_is_exposed_outside_the_cluster() -> None:
    """A ClusterIP head Service only: no Ingress, LoadBalancer, NodePort or host port; 8265 only in the pod."""
    docs = [doc for path in KUBERAY.glob("*.yaml") for doc in load(path)]
    assert not [doc for doc in docs if doc.get("kind") in ("Ingress", "Gateway", "HTTPRoute")]
    for doc in docs:
        for key, value in walk(doc):
            assert key not in ("hostPort", "nodePort", "enableIngress", "hostNetwork"), f"{key} in {doc['kind']}"
            if key in ("type", "serviceType"):
                assert value not in ("LoadBalancer", "NodePort"), f"{key}: {value} in {doc['kind']}"
            if value in (8265, "8265"):
                assert key == "containerPort", f"port 8265 under {key} in {doc['kind']}"
    for spec in cluster_specs().values():
        assert spec["headGroupSpec"].get("serviceType", "ClusterIP") == "ClusterIP"


def test_rayjob_trains_into_s3_and_mlflow_and_cleans_up(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines import commands
    from pipelines.tracking import default_tracking_uri

    job = one(KUBERAY / "rayjob.yaml", "RayJob")["spec"]
    assert job["shutdownAfterJobFinishes"] is True
    assert job["ttlSecondsAfterFinished"] > 0
    words = shlex.split(job["entrypoint"])
    assert words[:2] == ["drsta", "train"]
    parser = argparse.ArgumentParser(exit_on_error=False)
    commands.train_arguments(parser)
    args = parser.parse_args(words[2:])  # the flags drsta train really has
    assert args.storage_path.startswith("s3://")
    assert args.address == "auto" and args.use_gpu
    # The driver's working directory is Ray's, not the image's WORKDIR: a built-in config's name or an absolute path.
    assert str(args.config) in config_names() or args.config.is_absolute()
    assert args.manifest.is_absolute()
    # No --tracking-uri: the driver (on the head) takes the MLflow server from the ConfigMap's variable.
    assert args.tracking_uri is None
    assert "MLFLOW_TRACKING_URI" in env_of(containers(job["rayClusterSpec"]["headGroupSpec"])[0])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert default_tracking_uri(None) == "http://mlflow.example:5000"


def test_example_secrets_hold_placeholders_only() -> None:
    docs = load(KUBERAY / "secrets.example.yaml")
    secrets = [doc for doc in docs if doc["kind"] == "Secret"]
    assert {doc["metadata"]["name"] for doc in secrets} == {"drsta-ray-auth", "drsta-s3"}
    for doc in secrets:
        assert "data" not in doc, "base64 `data` hides values: use stringData placeholders"
        for key, value in doc["stringData"].items():
            assert value.startswith("REPLACE_WITH_"), f"{doc['metadata']['name']}.{key} looks like a real value"


def test_no_token_like_string_anywhere_in_infra() -> None:
    for path in INFRA.rglob("*"):
        if path.is_file():
            assert not re.search(r"\b[0-9a-f]{32,}\b", path.read_text()), f"{path} holds a token-like string"


def test_cluster_launcher_config_is_valid_for_ray() -> None:
    """Ray's own checks, as `ray up` runs them: the schema, then the filled-in config's consistency."""
    jsonschema = pytest.importorskip("jsonschema")
    import ray.autoscaler
    from ray.autoscaler._private.commands import prepare_config
    from ray.autoscaler._private.util import validate_config

    config = yaml.safe_load(LAUNCHER.read_text())
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)
    validate_config(prepare_config(config))


def test_cluster_launcher_head_is_cpu_only_and_workers_have_gpus() -> None:
    config = yaml.safe_load(LAUNCHER.read_text())
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0 and head["resources"]["CPU"] == 0
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    assert any(t["resources"].get("GPU", 0) >= 1 for t in workers)
    for node_type in workers:
        assert 0 <= node_type["min_workers"] <= node_type["max_workers"] <= config["max_workers"]


def test_cluster_launcher_uses_the_token_and_keeps_the_dashboard_local() -> None:
    config = yaml.safe_load(LAUNCHER.read_text())
    assert "--env RAY_AUTH_MODE=token" in config["docker"]["run_options"]
    assert config["file_mounts"] == {"~/.ray/auth_token": "~/.ray/auth_token"}
    assert any("test -s ~/.ray/auth_token" in command for command in config["setup_commands"])
    (head_start,) = [c for c in config["head_start_ray_commands"] if "ray start" in c]
    assert "--head" in head_start and "--dashboard-host=127.0.0.1" in head_start
    assert all("dashboard-host" not in c for c in config["worker_start_ray_commands"])


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of infra/Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_dockerfile_builds_on_cuda_with_pinned_torch() -> None:
    instructions = dockerfile_instructions()
    froms = [args for op, args in instructions if op == "FROM"]
    assert froms[-1].startswith("nvidia/cuda:13.0")
    runs = " ".join(args for op, args in instructions if op == "RUN")
    assert "torch==2.14.1" in runs and "torchvision==0.29.1" in runs
    assert "download.pytorch.org/whl/cu130" in runs


def test_dockerfile_runs_as_non_root_without_secrets() -> None:
    instructions = dockerfile_instructions()
    user = [args for op, args in instructions if op == "USER"][-1]
    assert user.split(":")[0] not in ("root", "0")
    env = " ".join(args for op, args in instructions if op in ("ENV", "ARG"))
    assert "RAY_USAGE_STATS_ENABLED=0" in env
    assert not re.search(r"(TOKEN|SECRET|PASSWORD|ACCESS_KEY)\w*=", env, re.IGNORECASE)
    copied = [args.split()[0] for op, args in instructions if op == "COPY" and not args.startswith("--")]
    assert "." not in copied, "copy named paths only: `COPY . ` would take .venv, data and local secrets"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(INFRA)))
def test_script_syntax(script: Path) -> None:
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_scripts_pass_shellcheck() -> None:
    done = subprocess.run(["shellcheck", "-x", *map(str, SCRIPTS)], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stdout


@pytest.mark.parametrize("script", ["cluster.sh", "mlflow.sh"])
@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "missing command"),
        (["up", "--bogus", "1"], "unknown option --bogus"),
        (["up", "--port", "x"], "--port"),
        (["status"], "status needs --dir"),
    ],
)
def test_scripts_reject_bad_arguments_with_usage(script: str, args: list[str], message: str) -> None:
    done = subprocess.run(["bash", str(INFRA / "local" / script), *args], capture_output=True, text=True,
                          env={**os.environ, "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert done.returncode != 0
    assert message in done.stderr
    assert "usage:" in done.stderr or "integer" in done.stderr


# infra/local's scripts and the state they keep. A fake `ray` / `mlflow` records its arguments (bin/argv) and
# environment (bin/environ) and fails, so a script runs up to the first start and no further.
LOCAL = INFRA / "local"
NOBODY = 65534
SECRET_FILE = {"cluster.sh": "auth_token", "mlflow.sh": "admin_password"}
NEEDS_SECRET = {"cluster.sh": [], "mlflow.sh": ["--auth", "basic"]}  # the options under which up uses it
FAKE = '#!/bin/sh\nprintf "%s\\n" "$*" >>"${0%/*}/argv"\nenv >"${0%/*}/environ"\nexit 1\n'


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in [("ray", FAKE), ("mlflow", FAKE), ("python", f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')]:
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def run_local(script: str, args: list[str], fake_bin: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """infra/local/<script> with args, meeting the fake `ray` and `mlflow`."""
    env = {**os.environ, "PATH": f"{fake_bin}:/usr/bin:/bin", "RAY": str(fake_bin / "ray"),
           "MLFLOW": str(fake_bin / "mlflow"), **env}  # fmt: skip
    return subprocess.run(["bash", str(LOCAL / script), *args], capture_output=True, text=True, env=env, timeout=120)


def up(script: str, state_dir: Path | None) -> list[str]:
    """`up` on a free port, with the option that makes it use its secret file."""
    where = [] if state_dir is None else ["--dir", str(state_dir)]
    return ["up", *where, "--port", str(free_port()), "--timeout", "20", *NEEDS_SECRET[script]]


def started(fake_bin: Path) -> bool:
    return (fake_bin / "argv").exists()


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can give a file to another user")


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("script", ["cluster.sh", "mlflow.sh"])
@pytest.mark.parametrize(
    ("case", "message"),
    [("world-writable", "open to group or others (mode 777): run 'chmod 700"),
     ("group-readable", "open to group or others (mode 750)"),
     ("someone else's", f"belongs to uid {NOBODY}, not to you"),
     ("a symbolic link", "is a symbolic link: pass the directory itself"),
     ("in a directory others can change", "which someone else can change")],
)  # fmt: skip
def test_up_refuses_a_state_dir_that_is_not_private(
    script: str, case: str, message: str, fake_bin: Path, tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    given = state_dir
    if case == "in a directory others can change":
        (tmp_path / "shared").mkdir(mode=0o777)
        (tmp_path / "shared").chmod(0o777)
        state_dir = given = tmp_path / "shared" / "state"
    else:
        state_dir.mkdir(mode=0o700)
    if case == "world-writable":
        state_dir.chmod(0o777)
    elif case == "group-readable":
        state_dir.chmod(0o750)
    elif case == "someone else's":
        need_root()
        os.chown(state_dir, NOBODY, NOBODY)
    elif case == "a symbolic link":
        given = tmp_path / "link"
        given.symlink_to(state_dir)
    done = run_local(script, up(script, given), fake_bin)
    assert done.returncode != 0
    assert message in done.stderr
    assert not started(fake_bin), "the script started something"
    assert not list(state_dir.iterdir()), "the script wrote into a directory it refused"


@pytest.mark.parametrize("script", ["cluster.sh", "mlflow.sh"])
@pytest.mark.parametrize("case", ["readable by others", "someone else's", "a symbolic link", "empty"])
def test_up_refuses_a_planted_secret(script: str, case: str, fake_bin: Path, tmp_path: Path) -> None:
    """A token or password found in the state dir is used only if it is a non-empty file of ours, mode 600."""
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    secret = state_dir / SECRET_FILE[script]
    planted = tmp_path / "planted" if case == "a symbolic link" else secret
    planted.write_text("" if case == "empty" else "known-to-whoever-planted-it\n")
    planted.chmod(0o644 if case == "readable by others" else 0o600)
    if case == "someone else's":
        need_root()
        os.chown(secret, NOBODY, NOBODY)
    elif case == "a symbolic link":
        secret.symlink_to(planted)
    before = os.lstat(secret)
    done = run_local(script, up(script, state_dir), fake_bin)
    assert done.returncode != 0
    assert f"{secret} is not a secret this script can trust" in done.stderr
    assert "Delete it to have a new one generated" in done.stderr and f"chmod 600 {secret}" in done.stderr
    assert not started(fake_bin), "the script started something with the planted secret"
    after = os.lstat(secret)
    assert (after.st_mode, after.st_uid, after.st_mtime_ns) == (before.st_mode, before.st_uid, before.st_mtime_ns)


@pytest.mark.parametrize("script", ["cluster.sh", "mlflow.sh"])
@pytest.mark.parametrize("given", ["no --dir", "a new --dir"])
def test_up_keeps_its_state_and_secret_private(script: str, given: str, fake_bin: Path, tmp_path: Path) -> None:
    """A new state dir is mode 700 (mktemp -d without --dir), the secret and every other file mode 600; the secret
    reaches the server as a file or environment variable, never as an argument, and is never printed."""
    before = set(tmp_path.iterdir())
    state_dir = None if given == "no --dir" else tmp_path / "new" / "state"
    done = run_local(script, up(script, state_dir), fake_bin, TMPDIR=str(tmp_path))
    assert done.returncode != 0 and started(fake_bin), done.stderr  # the fake server fails once started
    if state_dir is None:
        (state_dir,) = set(tmp_path.iterdir()) - before - {fake_bin}
        assert state_dir.name.startswith("drsta-")
    assert str(state_dir) in done.stdout + done.stderr
    assert oct(state_dir.stat().st_mode & 0o777) == "0o700"
    files = [path for path in state_dir.rglob("*") if path.is_file()]
    assert {path.name for path in files} >= {SECRET_FILE[script], "mlflow.log" if script == "mlflow.sh" else "env"}
    assert {oct(path.stat().st_mode & 0o777) for path in files} == {"0o600"}
    secret = (state_dir / SECRET_FILE[script]).read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{64}", secret)
    assert secret not in (fake_bin / "argv").read_text() + done.stdout + done.stderr
    environ = (fake_bin / "environ").read_text()
    if script == "cluster.sh":
        assert f"RAY_AUTH_TOKEN_PATH={state_dir / 'auth_token'}\n" in environ
    else:
        assert f"MLFLOW_AUTH_ADMIN_PASSWORD={secret}\n" in environ


def test_postgres_password_reaches_mlflow_through_its_environment_only(fake_bin: Path, tmp_path: Path) -> None:
    """`ps` shows every user the arguments of every process: the store URI must not be one of them."""
    uri = "postgresql://drsta:pg-password-42@127.0.0.1:1/drsta"
    args = ["up", "--backend", "postgresql", "--dir", str(tmp_path / "mlflow"), "--port", str(free_port())]
    done = run_local("mlflow.sh", args, fake_bin, MLFLOW_BACKEND_STORE_URI=uri)
    assert done.returncode != 0 and started(fake_bin), done.stderr
    argv = (fake_bin / "argv").read_text()
    assert argv.startswith("server ") and "pg-password-42" not in argv
    assert f"MLFLOW_BACKEND_STORE_URI={uri}\n" in (fake_bin / "environ").read_text()
    assert "pg-password-42" not in done.stdout + done.stderr
    for path in (tmp_path / "mlflow").rglob("*"):
        assert "pg-password-42" not in path.read_text(), path


@pytest.mark.parametrize("script", ["cluster.sh", "mlflow.sh"])
def test_down_refuses_a_symlinked_state_dir(script: str, fake_bin: Path, tmp_path: Path) -> None:
    """Through a link, the PID files, state and temp dir that `down` acts on would be another directory's."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    ray_temp = Path(tempfile.mkdtemp(prefix="drsta-ray-", dir="/tmp"))  # what the state names for deletion
    try:
        pid_file = elsewhere / ("head.pid" if script == "cluster.sh" else "mlflow.pid")
        pid_file.write_text(f"{dead_pid()}\n")
        (elsewhere / "state").write_text(f"port=1\ndashboard_port=2\ntemp_dir={ray_temp}\n")
        (tmp_path / "link").symlink_to(elsewhere)
        done = run_local(script, ["down", "--dir", str(tmp_path / "link")], fake_bin)
        assert pid_file.exists() and ray_temp.exists(), "down deleted through the link"
        assert done.returncode != 0
        assert "is a symbolic link" in done.stderr
    finally:
        shutil.rmtree(ray_temp, ignore_errors=True)


@pytest.mark.parametrize("attack", ["a path out of /tmp", "a command"])
def test_cluster_down_deletes_nothing_outside_and_runs_nothing_from_its_state(
    attack: str, fake_bin: Path, tmp_path: Path
) -> None:
    """STATE_DIR/state is read as data, and `down` deletes only a temp dir of exactly the shape `up` makes."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep me")
    start = Path(tempfile.mkdtemp(prefix="drsta-ray-", dir="/tmp"))  # a real directory for ".." to climb out of
    try:
        temp_dir = f"{start}/../..{victim}" if attack == "a path out of /tmp" else f"$(rm -rf {victim})"
        state_dir = tmp_path / "state"
        state_dir.mkdir(mode=0o700)
        (state_dir / "head.pid").write_text(f"{dead_pid()}\n")
        (state_dir / "state").write_text(f"port=1\ndashboard_port=2\ntemp_dir={temp_dir}\n")
        done = run_local("cluster.sh", ["down", "--dir", str(state_dir)], fake_bin)
        assert (victim / "precious").read_text() == "keep me"
        assert done.returncode != 0
        assert "state is missing or damaged" in done.stderr
    finally:
        shutil.rmtree(start, ignore_errors=True)


@pytest.mark.parametrize("script", ["cluster.sh", "mlflow.sh"])
@pytest.mark.parametrize("writable", ["common.sh", "its directory"])
def test_scripts_source_no_common_sh_others_can_change(script: str, writable: str, tmp_path: Path) -> None:
    """common.sh runs with the caller's rights: a copy others could have changed (here, to leave a mark) is refused."""
    copy = tmp_path / "local"
    copy.mkdir()
    for path in LOCAL.glob("*.sh"):
        shutil.copy(path, copy / path.name)
    mark = tmp_path / "common.sh-ran"
    with (copy / "common.sh").open("a") as common:
        common.write(f'\ntouch "{mark}"\n')
    changeable = copy / "common.sh" if writable == "common.sh" else copy
    changeable.chmod(changeable.stat().st_mode | 0o022)
    done = subprocess.run(["bash", str(copy / script), "status", "--dir", str(tmp_path / "state")],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert not mark.exists(), "the script sourced a common.sh others can change"
    assert done.returncode != 0
    assert f"{changeable} could be changed by someone else" in done.stderr
