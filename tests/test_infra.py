"""infra/ holds together: manifests, cluster-launcher config, Dockerfile and scripts agree with each other and
with the security rules (token authentication everywhere, nothing exposed, no secrets). Fast: nothing starts."""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

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
    ray_pin = next(dep for dep in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
                   if dep.startswith("ray["))  # fmt: skip
    assert spec["rayVersion"].startswith(ray_pin.split("==")[1].rstrip("*"))
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
    from pipelines import train  # torch and Ray: only this test needs them
    from pipelines.tracking import default_tracking_uri

    job = one(KUBERAY / "rayjob.yaml", "RayJob")["spec"]
    assert job["shutdownAfterJobFinishes"] is True
    assert job["ttlSecondsAfterFinished"] > 0
    words = shlex.split(job["entrypoint"])
    assert words[:2] == ["drsta", "train"]
    parser = argparse.ArgumentParser(exit_on_error=False)
    train.add_arguments(parser)
    args = parser.parse_args(words[2:])  # the flags drsta train really has
    assert args.storage_path.startswith("s3://")
    assert args.address == "auto" and args.use_gpu
    assert args.config.is_absolute(), "the driver's working directory is Ray's, not the image's WORKDIR"
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
    [([], "missing command"), (["up", "--bogus", "1"], "unknown option --bogus"), (["up", "--port", "x"], "--port")],
)
def test_scripts_reject_bad_arguments_with_usage(script: str, args: list[str], message: str) -> None:
    done = subprocess.run(["bash", str(INFRA / "local" / script), *args], capture_output=True, text=True,
                          env={**os.environ, "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert done.returncode != 0
    assert message in done.stderr
    assert "usage:" in done.stderr or "integer" in done.stderr
