"""A drsta model directory as it is logged to MLflow (a LoggedModel's artifacts, or `DIR/model` of `drsta models
pull`), read without running anything in it.

    model/MLmodel            the MLflow pytorch flavour; must be the pt2 format, with no `code:` path
    model/data/model.pt2     the torch.export program: the only program file ever opened
    model/config.yaml        the resolved training config (YAML, read with safe_load)
    model/metadata.json      input contract, metrics, provenance
    model/state_dict.pt      the weights (torch.load(weights_only=True))

MLflow's own loader would `torch.load` a pickle-flavour `data/model.pth` (MLflow 3.17 allows pickles by
default) and put a flavour's `code:` directory on `sys.path`; drsta never calls it. A directory is accepted
only if it is exactly the layout above, and the program is checked by `drsta.model.archive` before torch
loads it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from drsta.archive import UnsafeModelError, check_program, load_program

PROGRAM = Path("data") / "model.pt2"
PICKLE_FILES = ("data/model.pth", "data/pickle_module_info.txt")


def forbid_pickle_loading() -> None:
    """Turn off MLflow's pickle deserialization for this process (and the processes it starts)."""
    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "false"


def check_model_dir(model_dir: Path, name: str) -> Path:
    """The path of the directory's program, once its MLmodel is our pt2 flavour; UnsafeModelError otherwise.

    Args:
        model_dir: the directory holding MLmodel.
        name: how to name the model in errors (its URI or directory).
    """
    mlmodel_path = model_dir / "MLmodel"
    if not mlmodel_path.is_file():
        raise ValueError(f"{name}: not a drsta model (no MLmodel in {model_dir})")
    try:
        mlmodel = yaml.safe_load(mlmodel_path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise UnsafeModelError(f"{name}: MLmodel is not valid YAML ({err})") from None
    flavors = mlmodel.get("flavors") if isinstance(mlmodel, dict) else None
    if not isinstance(flavors, dict) or "pytorch" not in flavors:
        raise UnsafeModelError(f"{name}: MLmodel has no pytorch flavour; drsta loads only its own pt2 models")
    unknown = sorted(set(flavors) - {"pytorch", "python_function"})
    if unknown:
        raise UnsafeModelError(f"{name}: MLmodel has flavours {unknown}; drsta loads only its own pt2 models")
    for flavor, fields in flavors.items():
        if not isinstance(fields, dict):
            raise UnsafeModelError(f"{name}: MLmodel flavour {flavor!r} is malformed")
        if fields.get("code") is not None or mlmodel.get("code") is not None:
            raise UnsafeModelError(f"{name}: MLmodel carries a code: path ({flavor}), which MLflow would import; "
                                   "drsta models never ship code")  # fmt: skip
    pytorch = flavors["pytorch"]
    if pytorch.get("model_data") != "data" or "pickle_module_name" in pytorch:
        raise UnsafeModelError(f"{name}: MLmodel is not the pt2 format of the pytorch flavour")
    for pickled in PICKLE_FILES:
        if (model_dir / pickled).exists():
            raise UnsafeModelError(f"{name}: {pickled} is a pickled model (the pytorch flavour's pickle format), "
                                   "which drsta never loads: register the model in the pt2 format")  # fmt: skip
    program = model_dir / PROGRAM
    if program.is_symlink() or not program.is_file():
        raise UnsafeModelError(f"{name}: {PROGRAM} is missing (or a link); drsta models hold exactly that program")
    return program


def read_model_dir(model_dir: Path, name: str) -> tuple[bytes, dict[str, Any]]:
    """The checked program bytes and the metadata (metadata.json plus "config": config.yaml) of a model dir."""
    forbid_pickle_loading()
    program_path = check_model_dir(model_dir, name)
    program = program_path.read_bytes()
    check_program(program, f"{name} ({PROGRAM})")
    return program, read_metadata(model_dir, name)


def load_model_dir(model_dir: Path, name: str) -> tuple[nn.Module, dict[str, Any]]:
    """The loaded program (clips (B, N, 3, H, W) in [0, 1] -> dict of tensors) and metadata of a model dir."""
    program, metadata = read_model_dir(model_dir, name)
    return load_program(program, f"{name} ({PROGRAM})"), metadata


def read_metadata(model_dir: Path, name: str) -> dict[str, Any]:
    """metadata.json with the training config (config.yaml) under "config"."""
    try:
        metadata = json.loads((model_dir / "metadata.json").read_text())
        metadata["config"] = yaml.safe_load((model_dir / "config.yaml").read_text())
    except FileNotFoundError as err:
        raise ValueError(f"{name}: {Path(err.filename).name} is missing; not a model written by drsta") from None
    except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError, TypeError) as err:
        raise ValueError(f"{name}: metadata.json or config.yaml is damaged ({err}); pull the model again") from None
    return metadata
