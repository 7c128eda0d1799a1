"""Typed, validated configuration: one model per component, composed into `ExperimentConfig`.

YAML files are serialized instances: every key must be a field (unknown keys are errors naming them), and the
fully resolved config (`to_dict`) is what gets logged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(_Strict):
    """The DRSTA architecture."""

    backbone: Literal["resnet50", "resnet18", "tiny"] = Field(
        "resnet50", description="frame trunk; resnet50 is the paper's (D = 2048), tiny is for CPU tests"
    )
    pretrained_weights: Path | None = Field(
        None, description="local torchvision ImageNet state_dict for the trunk; null trains from scratch"
    )
    last_stride: Literal[1, 2] = Field(2, description="stride of the trunk's last stage (2: 8×4 cells at 256×128)")
    num_frames: int = Field(6, ge=1, description="N, frames per clip (the authors' seqlen); the model is tied to it")
    num_attention_models: int = Field(6, ge=1, description="K, spatial attention models (the paper's figures: 6)")
    attention_hidden_dim: int = Field(256, ge=1, description="hidden units of each spatial attention model")
    sigma: float = Field(1.0, gt=0, description="σ of the temporal similarity (Eq. 2), in frames")
    feature_enhancement: bool = Field(True, description="apply Eq. 1–4; false for the ablation")
    embedding_dim: int | None = Field(
        None, ge=1, description="linear + BN reduction of the K·D descriptor to this size; null keeps K·D"
    )
    tiny_trunk_dim: int = Field(64, ge=1, description="D of the tiny trunk (ignored by the ResNets)")


class InputConfig(_Strict):
    """Frame size fed to the model."""

    height: int = Field(256, ge=32, description="frame height in pixels (the paper's 256)")
    width: int = Field(128, ge=32, description="frame width in pixels (the paper's 128)")


class LossConfig(_Strict):
    """The training objective: weighted identity losses + λ · diversity penalty."""

    oim_weight: float = Field(1.0, ge=0, description="weight of the OIM loss (the paper's)")
    triplet_weight: float = Field(0.0, ge=0, description="weight of the batch-hard triplet loss")
    xent_weight: float = Field(0.0, ge=0, description="weight of label-smoothed cross-entropy")
    diversity_weight: float = Field(1.0, ge=0, description="λ, weight of the diversity regularizer")
    oim_scale: float = Field(30.0, gt=0, description="OIM's 1 / temperature (open-reid: 30)")
    oim_momentum: float = Field(0.5, ge=0, lt=1, description="OIM lookup-table momentum (open-reid: 0.5)")
    oim_queue_size: int = Field(0, ge=0, description="OIM circular queue length for unlabelled identities")
    triplet_margin: float = Field(0.3, gt=0, description="margin of the batch-hard triplet loss")
    label_smoothing: float = Field(0.1, ge=0, lt=1, description="ε of label-smoothed cross-entropy")

    @model_validator(mode="after")
    def _one_identity_loss(self) -> LossConfig:
        if self.oim_weight == self.triplet_weight == self.xent_weight == 0:
            raise ValueError("at least one of oim_weight, triplet_weight, xent_weight must be > 0")
        return self


class DataConfig(_Strict):
    """The training and evaluation streams."""

    manifest: Path | None = Field(None, description="directory of the Parquet manifest written by drsta ingest")
    seed: int = Field(0, description="run seed: (seed, epoch) fixes each epoch's sampling plan")
    sampler: Literal["random", "identity"] = Field(
        "random", description="random order, or P identities × K tracklets per batch (for the triplet loss)"
    )
    tracklets_per_id: int = Field(4, ge=1, description="K of the identity sampler")
    batch_size_per_worker: int = Field(8, ge=1, description="clips per optimisation step on each worker")
    decode_batch_size: int = Field(4, ge=1, description="clips decoded per Ray Data task")
    flip_p: float = Field(0.5, ge=0, le=1, description="probability of a horizontal flip (whole clip)")
    crop_p: float = Field(0.5, ge=0, le=1, description="probability of a random crop resized back (whole clip)")
    erase_p: float = Field(0.5, ge=0, le=1, description="probability of random erasing (same box on every frame)")
    eval_clips_per_tracklet: int = Field(
        1, ge=1, description="test-time clips per tracklet (1: chunk middles); their descriptors are averaged"
    )


class OptimConfig(_Strict):
    """Optimiser and schedule (open-reid's defaults: SGD + Nesterov, ×0.1 every 40 epochs, 50 epochs)."""

    optimizer: Literal["sgd", "adam"] = Field("sgd", description="SGD with Nesterov momentum, or Adam")
    lr: float = Field(0.1, gt=0, description="learning rate of the new layers (attention, enhancement, head)")
    trunk_lr_scale: float = Field(0.1, ge=0, description="trunk learning rate = lr × this (pretrained trunk)")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (Nesterov)")
    weight_decay: float = Field(5e-4, ge=0, description="L2 weight decay")
    step_size: int = Field(40, ge=1, description="epochs between learning-rate drops")
    gamma: float = Field(0.1, gt=0, le=1, description="learning-rate factor at each drop")
    epochs: int = Field(50, ge=1, description="training epochs")


class TrainConfig(_Strict):
    """Where and how the distributed run happens."""

    name: str = Field("drsta", min_length=1, description="run name; (storage_path, name) identifies a run to resume")
    storage_path: str = Field("ray_results", description="checkpoint storage: a shared path or URI on clusters")
    num_workers: int = Field(1, ge=1, description="training workers (DDP processes)")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs each training worker reserves")
    use_gpu: bool = Field(False, description="one GPU per worker, NCCL; bf16 autocast when amp is on")
    amp: bool = Field(True, description="bf16 autocast on GPU (ignored on CPU)")
    eval_every: int = Field(5, ge=1, description="evaluate every this many epochs (and after the last)")
    checkpoints_to_keep: int = Field(2, ge=1, description="best checkpoints kept, by val/mAP")
    max_failures: int = Field(3, ge=-1, description="worker/node failures survived by restarting (-1: no limit)")
    model_seed: int = Field(0, description="seed of the model's initial weights")
    tracking_uri: str | None = Field(None, description="MLflow tracking URI; null: sqlite:///mlflow.db here")
    experiment: str = Field("drsta", min_length=1, description="MLflow experiment name")
    registered_model: str | None = Field("drsta", description="register the final model under this name; null: no")


class ExperimentConfig(_Strict):
    """Everything one run needs."""

    model: ModelConfig = ModelConfig()
    input: InputConfig = InputConfig()
    loss: LossConfig = LossConfig()
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> ExperimentConfig:
        """Validate a plain dict; errors name `source` and every offending key."""
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise ValueError(f"invalid {source}:\n{_describe(err)}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> ExperimentConfig:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} not found")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            sections = ", ".join(cls.model_fields)
            raise ValueError(f"{path} must hold a mapping of sections ({sections}), got {type(data).__name__}")
        return cls.from_dict(data, source=str(path))

    def with_overrides(self, overrides: dict[str, Any]) -> ExperimentConfig:
        """A copy with dotted keys replaced (e.g. {"train.num_workers": 2}), validated again."""
        data = self.to_dict()
        for dotted, value in overrides.items():
            section, _, key = dotted.partition(".")
            if section not in data or key not in data[section]:
                raise ValueError(f"unknown config key {dotted!r}")
            data[section][key] = value
        return self.from_dict(data, source="config with overrides")

    def to_dict(self) -> dict[str, Any]:
        """The fully resolved config as plain YAML/JSON-friendly values."""
        return self.model_dump(mode="json")


def _describe(err: ValidationError) -> str:
    lines = []
    for issue in err.errors():
        key = ".".join(str(part) for part in issue["loc"]) or "(top level)"
        message = "unknown key (not a field of this section)" if issue["type"] == "extra_forbidden" else issue["msg"]
        lines.append(f"  {key}: {message}")
    return "\n".join(lines)
