"""Loading a model never runs code: a corpus of malicious artifacts, each refused with a clear error.

Every payload, when unpickled, evaluated or executed, creates a marker file. Each case first shows that the
payload is live (plain torch or MLflow runs it), then that every drsta path refuses the artifact and the marker
never appears.
"""

import contextlib
import io
import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import mlflow
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from PIL import Image

from drsta.archive import UnsafeModelError, check_program, load_program
from drsta.config import ExperimentConfig
from drsta.engine import load_state
from drsta.model import build_model
from drsta.resources import CONFIG_DIR
from pipelines.cli import main
from pipelines.embed import MODEL_URI_KEY
from pipelines.inference import load_pulled
from pipelines.models import pull
from pipelines.tracking import RunTracker, load_registered, log_model, set_alias

pytestmark = pytest.mark.integration

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
TINY = CONFIG_DIR / "tiny.yaml"


class Payload:
    """Unpickling this creates the marker file: it stands for any code an attacker would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class PickledModule(torch.nn.Module):
    """A module whose pickle (MLflow's pickle flavour) is the payload."""

    def __init__(self, marker: Path) -> None:
        super().__init__()
        self.marker = str(marker)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return clips

    def __reduce_ex__(self, protocol):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A genuine drsta model (v1, champion) in a SQLite store, its pulled copy, and its clips."""
    root = tmp_path_factory.mktemp("safe-loading")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    cfg = ExperimentConfig.from_yaml(TINY).with_overrides({"loss.xent_weight": 0.0})
    torch.manual_seed(4)
    model = build_model(cfg.model).eval()
    tracker = RunTracker(uri, "drsta", "genuine", artifact_location=str(root / "artifacts"))
    tracker.start()
    clips = torch.rand(2, cfg.model.num_frames, 3, cfg.input.height, cfg.input.width)
    version = log_model(tracker, model, clips, cfg.to_dict(), {}, "fingerprint")
    set_alias("drsta", "champion", version.version, uri)
    pull("drsta@champion", root / "pulled", uri)
    return {"uri": uri, "root": root, "tracker": tracker, "cfg": cfg, "clips": clips, "model": model}


@pytest.fixture
def marker(tmp_path) -> Path:
    path = tmp_path / "PAYLOAD-RAN"
    yield path
    assert not path.exists(), "a payload ran"


def fail(argv: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return exit_info.value.code, err


def genuine_program(registry) -> bytes:
    return (registry["root"] / "pulled" / "model" / "data" / "model.pt2").read_bytes()


def register_dir(registry, model_dir: Path, name: str) -> str:
    """Log `model_dir` as a run's `model/` artifacts and register it as a version of `name`; its URI."""
    client, run_id = registry["tracker"].client, registry["tracker"].run_id
    client.log_artifacts(run_id, str(model_dir), f"{name}-model")
    with contextlib.suppress(mlflow.exceptions.MlflowException):  # registered by an earlier case
        client.create_registered_model(name)
    source = f"{client.get_run(run_id).info.artifact_uri}/{name}-model"
    version = client.create_model_version(name, source, run_id=run_id)
    return f"models:/{name}/{version.version}"


def pickle_flavour_dir(registry, marker: Path, directory: Path) -> Path:
    """A real MLflow pickle-flavour model (data/model.pth) beside a genuine config and metadata."""
    mlflow.pytorch.save_model(PickledModule(marker), directory, serialization_format="pickle")
    for name in ("config.yaml", "metadata.json"):
        shutil.copy(registry["root"] / "pulled" / "model" / name, directory / name)
    return directory


def test_a_pickle_flavour_registry_version_is_refused_everywhere(registry, marker, tmp_path, capsys, monkeypatch):
    evil = pickle_flavour_dir(registry, marker, tmp_path / "evil-model")
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")  # MLflow 3.17's default: its loader runs it
    with pytest.raises(AttributeError):  # the payload runs, then MLflow fails on what it returned
        mlflow.pytorch.load_model(str(evil))
    assert marker.exists()
    marker.unlink()
    uri = register_dir(registry, evil, "evil")

    with pytest.raises(UnsafeModelError, match="pickle"):
        load_registered(uri, registry["uri"], tmp_path / "dl")
    assert os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"
    video = frames(tmp_path / "query", registry)
    for argv in (
        ["embed", str(video), "--model", uri, "--out", str(tmp_path / "e.parquet")],
        ["explain", str(video), "--model", uri, "--out", str(tmp_path / "e.png")],
        ["models", "pull", uri, "--out", str(tmp_path / "pulled")],
        ["evaluate", "--model", uri, "--manifest", str(tmp_path / "none")],
    ):
        code, err = fail([*argv, "--tracking-uri", registry["uri"]], capsys)
        assert code == 2 and "models:/evil/1" in err and "pickle" in err, err
    assert not (tmp_path / "pulled").exists() and not (tmp_path / "e.parquet").exists()


def test_a_pulled_directory_with_a_code_path_or_a_pickled_model_is_refused(registry, marker, tmp_path, capsys):
    with_code = tmp_path / "with-code"
    shutil.copytree(registry["root"] / "pulled", with_code)
    mlmodel = with_code / "model" / "MLmodel"
    spec = yaml.safe_load(mlmodel.read_text())
    spec["flavors"]["pytorch"]["code"] = "code"
    mlmodel.write_text(yaml.safe_dump(spec))
    (with_code / "model" / "code").mkdir()
    (with_code / "model" / "code" / "evil.py").write_text(f"open({str(marker)!r}, 'w')\n")
    with pytest.raises(UnsafeModelError, match="code: path"):
        load_pulled(with_code)

    pickled = tmp_path / "pickled"
    pickle_flavour_dir(registry, marker, pickled / "model")
    code, err = fail(["embed", str(frames(tmp_path / "q", registry)), "--model", str(pickled),
                      "--out", str(tmp_path / "e.parquet")], capsys)  # fmt: skip
    assert code == 2 and "pickle" in err and str(pickled) in err


def test_only_data_model_pt2_is_ever_opened(registry, marker, tmp_path):
    pulled = tmp_path / "pulled"
    shutil.copytree(registry["root"] / "pulled", pulled)
    (pulled / "model" / "a.pt2").write_bytes(with_pickled_constant(genuine_program(registry), marker))
    program, _ = load_pulled(pulled)
    with torch.no_grad():
        want = registry["model"](registry["clips"]).embedding
    torch.testing.assert_close(program(registry["clips"])["embedding"], want)


def frames(folder: Path, registry) -> Path:
    """A folder of 6 PNG frames of the model's input size."""
    cfg = registry["cfg"]
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(6):
        pixels = rng.integers(0, 255, (cfg.input.height, cfg.input.width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return folder


# --- .pt2 archives that torch.export.load would let run code -------------------------------------------------


def rewrite(program: bytes, change) -> bytes:
    """The archive with `change(files)` applied to its {relative path: bytes} members."""
    source = zipfile.ZipFile(io.BytesIO(program))
    root = source.namelist()[0].split("/")[0]
    files = {name.split("/", 1)[1]: source.read(name) for name in source.namelist()}
    change(files)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for name, data in files.items():
            target.writestr(f"{root}/{name}", data)
    return out.getvalue()


def pickled_payload(marker: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save(Payload(marker), buffer)
    return buffer.getvalue()


def with_pickled_constant(program: bytes, marker: Path) -> bytes:
    def change(files):
        config = json.loads(files["data/constants/model_constants_config.json"])
        meta = next(iter(config["config"].values()))
        config["config"]["evil"] = meta | {"path_name": "tensor_99", "use_pickle": True}
        files["data/constants/model_constants_config.json"] = json.dumps(config).encode()
        files["data/constants/tensor_99"] = pickled_payload(marker)

    return rewrite(program, change)


def with_opaque_object(program: bytes, marker: Path) -> bytes:
    def change(files):
        config = json.loads(files["data/constants/model_constants_config.json"])
        config["config"]["evil"] = {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": True,
                                    "tensor_meta": None}  # fmt: skip
        files["data/constants/model_constants_config.json"] = json.dumps(config).encode()
        files["data/constants/opaque_obj_0"] = pickle.dumps(Payload(marker))

    return rewrite(program, change)


def with_pickled_sample_inputs(program: bytes, marker: Path) -> bytes:
    def change(files):
        buffer = io.BytesIO()
        torch.save(((Payload(marker),), {}), buffer)
        files["data/sample_inputs/model.pt"] = buffer.getvalue()

    return rewrite(program, change)


def with_shape_expression(program: bytes, marker: Path) -> bytes:
    def change(files):
        text = files["models/model.json"].decode()
        symbol = "Symbol('s7', positive=True, integer=True)"
        assert symbol in text
        evil = f"Add(Integer(0), {symbol}) if open({str(marker)!r}, 'w') else {symbol}"
        files["models/model.json"] = text.replace(json.dumps(symbol), json.dumps(evil), 1).encode()

    return rewrite(program, change)


def with_guard(program: bytes, marker: Path) -> bytes:
    def change(files):
        graph = json.loads(files["models/model.json"])
        graph["guards_code"] = [f"open({str(marker)!r}, 'w') is not None"]
        files["models/model.json"] = json.dumps(graph).encode()

    return rewrite(program, change)


def with_foreign_call(program: bytes, marker: Path) -> bytes:
    def change(files):
        text = files["models/model.json"].decode()
        files["models/model.json"] = text.replace('"torch.ops.aten.relu.default"', '"torch.save"', 1).encode()

    return rewrite(program, change)


LIVE_AT_LOAD = [with_pickled_constant, with_opaque_object, with_pickled_sample_inputs, with_shape_expression,
                with_guard]  # fmt: skip


@pytest.mark.parametrize("attack", LIVE_AT_LOAD, ids=lambda f: f.__name__)
def test_torch_export_runs_the_payload_and_drsta_refuses_it(registry, marker, tmp_path, attack, capsys):
    evil = attack(genuine_program(registry), marker)
    with contextlib.suppress(Exception):  # plain torch: the payload runs while loading or on the first call
        torch.export.load(io.BytesIO(evil)).module()(registry["clips"])
    assert marker.exists(), f"{attack.__name__} is not a live payload for torch.export.load"
    marker.unlink()
    capsys.readouterr()  # torch's own warnings while it ran the payload

    with pytest.raises(UnsafeModelError):
        load_program(evil)
    pulled = tmp_path / "pulled"
    shutil.copytree(registry["root"] / "pulled", pulled)
    (pulled / "model" / "data" / "model.pt2").write_bytes(evil)
    code, err = fail(["embed", str(frames(tmp_path / "q", registry)), "--model", str(pulled),
                      "--out", str(tmp_path / "e.parquet")], capsys)  # fmt: skip
    assert code == 2 and "model.pt2" in err and str(pulled) in err, err
    uri = register_dir(registry, pulled / "model", f"evil-{attack.__name__.replace('_', '-')}")
    code, err = fail(["evaluate", "--model", uri, "--manifest", str(tmp_path), "--tracking-uri", registry["uri"]],
                     capsys)  # fmt: skip
    assert code == 2 and uri in err, err


def test_a_graph_calling_anything_but_aten_is_refused(registry):
    with pytest.raises(UnsafeModelError, match=r"torch\.save"):
        check_program(with_foreign_call(genuine_program(registry), Path("unused")), "evil")


def test_not_an_archive_is_refused_with_its_name():
    with pytest.raises(UnsafeModelError, match=r"m\.pt2: not a \.pt2 archive"):
        check_program(b"garbage", "m.pt2")


# --- checkpoints and galleries ---------------------------------------------------------------------------------


def test_a_checkpoint_with_a_payload_is_refused(registry, marker, tmp_path, capsys):
    checkpoint = tmp_path / "checkpoint_000001"
    checkpoint.mkdir()
    torch.save({"model": registry["model"].state_dict(), "extra": Payload(marker)}, checkpoint / "state.pt")
    with pytest.raises(ValueError, match="refused"):
        load_state(checkpoint / "state.pt")  # what a resumed worker and load_trained_model read
    code, err = fail(["evaluate", "--checkpoint", str(checkpoint), "--manifest", str(tmp_path)], capsys)
    assert code == 2 and "state.pt" in err and "refused" in err


def test_a_gallery_never_picks_a_local_model(registry, marker, tmp_path, capsys):
    evil = tmp_path / "evil"
    pickle_flavour_dir(registry, marker, evil / "model")
    gallery = tmp_path / "gallery.parquet"
    table = pa.table({"path": ["x"], "identity": [1], "camera": [1], "embedding": [[0.0, 1.0]]})
    pq.write_table(table.replace_schema_metadata({MODEL_URI_KEY: str(evil).encode()}), gallery)
    query = frames(tmp_path / "q", registry)
    code, err = fail(["search", "--gallery", str(gallery), "--query", str(query)], capsys)
    assert code == 2 and str(evil) in err and "--model" in err
    code, err = fail(["search", "--gallery", str(gallery), "--query", str(query), "--model", str(evil)], capsys)
    assert code == 2 and "pickle" in err  # even when the user names it: the pickle flavour is never loaded
