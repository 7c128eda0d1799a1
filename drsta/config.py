"""Typed, validated configuration: one model per component, composed into `ExperimentConfig`.

YAML files are serialized instances: every key must be a field (unknown keys are errors naming them), and the
fully resolved config (`to_dict`) is what gets logged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from drsta.io import read_yaml
from drsta.resources import CONFIG_DIR, resolve_config


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(_Strict):
    """The DRSTA architecture. Defaults are the paper's model (but for `enhancement_similarity`, whose printed form
    does nothing at ResNet scale: the `paper` config keeps it); the other values of `spatial_pooling`,
    `temporal_pooling`, `feature_enhancement` give the ablation's rows, and `attention_head`, `component_dim` the
    authors' public code (the `authors_code` config)."""

    backbone: Literal["resnet50", "resnet18", "tiny"] = Field(
        "resnet50", description="frame trunk; resnet50 is the paper's (D = 2048), tiny is for CPU tests"
    )
    pretrained_weights: Path | None = Field(
        None, description="local torchvision ImageNet state_dict for the trunk; null trains from scratch"
    )
    last_stride: Literal[1, 2] = Field(2, description="stride of the trunk's last stage (2: 8×4 cells at 256×128)")
    num_frames: int = Field(6, ge=1, description="N, frames per clip (the authors' seqlen); the model is tied to it")
    num_attention_models: int = Field(
        6,
        ge=1,
        description="K, spatial attention models (supplementary Fig. 1: 6; authors' code: 3); must be 1 with "
        "spatial_pooling 'average'",
    )
    spatial_pooling: Literal["attention", "average"] = Field(
        "attention",
        description="'attention': the K spatial attention models (paper Sec. 3.1); 'average': no attention, each "
        "frame's feature is the mean of its h·w cells (the ablation's baseline; K = 1, the reported map is the "
        "uniform 1/(h·w), the diversity penalty 0)",
    )
    attention_head: Literal["per_model", "shared"] = Field(
        "per_model",
        description="'per_model': each attention model has its own hidden layer (the paper's "
        "w_kᵀ ReLU(W_k l + b_k)); 'shared': the authors' code, a 1×1 conv D → attention_hidden_dim + BN + ReLU "
        "shared by the K models, then a 1×1 conv → K + BN; ignored with spatial_pooling 'average'",
    )
    attention_hidden_dim: int = Field(
        256,
        ge=1,
        description="hidden units of each attention model ('per_model'; not in our sources, our choice) or of the "
        "shared layer ('shared'; authors' code: 64)",
    )
    component_dim: int | None = Field(
        None,
        ge=1,
        description="the authors' code: a Linear D → component_dim shared by the K components, then L2 "
        "normalisation of each, per frame right after spatial pooling (enhancement and temporal attention then "
        "work in component_dim; descriptor K·component_dim, authors' 128); null: no projection, the paper's K·D",
    )
    feature_enhancement: bool = Field(
        True, description="apply the supplementary's Eq. 1–4 between spatial and temporal pooling; false to ablate"
    )
    enhancement_similarity: Literal["inner_product", "scaled", "cosine"] = Field(
        "scaled",
        description="the appearance similarity Φ_k of Eq. 1: 'inner_product', X_kᵀX_k as the supplementary prints "
        "it; 'scaled', X_kᵀX_k / √C (C the feature size: D, or component_dim), as scaled dot-product attention; "
        "'cosine', the inner product of the L2-normalised features (Φ in [−1, 1]). With a ResNet trunk's "
        "unnormalised features (component_dim null) 'inner_product' reaches 10²–10³ while Ψ of Eq. 2 starts in "
        "[0, 1], so Eq. 3's softmax is one-hot: each frame pools only itself and W, b, σ do nothing. Our choice, "
        "'scaled' (measured at init on randomly initialised ResNet-18/50 trunks and synthetic frames): the only one "
        "where both appearance and frame distance shape Eq. 3 ('cosine' is near uniform, C ≈ softmax(Ψ)). With "
        "component_dim the components are unit-norm, so 'inner_product' equals 'cosine'",
    )
    sigma: float = Field(
        1.0,
        gt=0,
        description="σ of the temporal similarity Ψ = W ⊙ exp(−|i−j|/σ) + b (Eq. 2), in frames (not in our "
        "sources: our choice). With learn_temporal_weights W is a free N×N parameter, so σ only sets Ψ's initial "
        "value and each entry's gradient scale, not what Ψ can become: a σ sweep then explores initialisation. "
        "With enhancement_similarity 'inner_product' and the trunk's unnormalised features (component_dim null, "
        "ResNet scale) Eq. 3's softmax is one-hot and σ, W and b have no effect at all",
    )
    learn_temporal_weights: bool = Field(
        True,
        description="learn W of Eq. 2 from ones (the supplementary: W and b 'encode the positional information', "
        "model parameters); false fixes W at ones so Ψ = exp(−|i−j|/σ) + b and σ sets the temporal falloff "
        "(b is learned either way)",
    )
    temporal_pooling: Literal["attention", "average"] = Field(
        "attention",
        description="'attention': per component a softmax over the N frames of a linear score (paper Sec. 3.3); "
        "'average': the mean over the N frames (temporal average pooling; the reported weights are 1/N)",
    )
    embedding_dim: int | None = Field(
        None,
        ge=1,
        description="a Linear (no bias) + BN reducing the K·D (or K·component_dim) descriptor to this size; null "
        "keeps it (the paper's K·D)",
    )
    tiny_trunk_dim: int = Field(64, ge=1, description="D of the tiny trunk (ignored by the ResNets)")

    @model_validator(mode="after")
    def _average_pooling_has_one_component(self) -> ModelConfig:
        if self.spatial_pooling == "average" and self.num_attention_models != 1:
            raise ValueError(
                "spatial_pooling 'average' pools one global feature per frame (K = 1), but num_attention_models is "
                f"{self.num_attention_models}: set num_attention_models to 1 too, so the logged config says what runs"
            )
        return self


class InputConfig(_Strict):
    """Frame size fed to the model."""

    height: int = Field(256, ge=32, description="frame height in pixels (the paper's 256)")
    width: int = Field(128, ge=32, description="frame width in pixels (the paper's 128)")


class LossConfig(_Strict):
    """The training objective: weighted identity losses + λ · diversity penalty."""

    oim_weight: float = Field(1.0, ge=0, description="weight of the OIM loss (the paper's identity loss)")
    triplet_weight: float = Field(0.0, ge=0, description="weight of the batch-hard triplet loss")
    xent_weight: float = Field(0.0, ge=0, description="weight of label-smoothed cross-entropy")
    diversity_weight: float = Field(
        1.0,
        ge=0,
        description="λ, weight of the diversity regularizer (the paper's value is not in our sources; the authors' "
        "code adds its form with weight 1)",
    )
    diversity_reduction: Literal["mean_squared", "authors_sqrt_sum"] = Field(
        "mean_squared",
        description="how the per-frame penalties r_n = ‖Q_n Q_nᵀ − I‖²_F become the loss term: 'mean_squared', the "
        "paper's r_n averaged over every frame of the worker's batch; 'authors_sqrt_sum', the authors' code's "
        "√(Σ_n r_n + 1e-5) with the sum over every frame of the worker's batch (a Frobenius norm, not its square; "
        "it grows with the batch size); either is multiplied by diversity_weight",
    )
    oim_scale: float = Field(30.0, gt=0, description="OIM's 1 / temperature (open-reid: 30)")
    oim_momentum: float = Field(0.5, ge=0, lt=1, description="OIM lookup-table momentum (open-reid: 0.5)")
    triplet_margin: float = Field(0.3, gt=0, description="margin of the batch-hard triplet loss")
    label_smoothing: float = Field(0.1, ge=0, lt=1, description="ε of label-smoothed cross-entropy")

    @model_validator(mode="before")
    @classmethod
    def _accept_the_removed_queue_size_at_zero(cls, data: Any) -> Any:
        # oim_queue_size (OIM's queue of unlabelled identities) was removed: no training split has unlabelled
        # clips, so it never did anything. Every config logged before (runs, checkpoints, registered models)
        # holds it, at 0 unless set; those still load. Any other value is refused: it suggests it does something.
        if isinstance(data, dict) and "oim_queue_size" in data:
            if data["oim_queue_size"] != 0:
                raise ValueError(
                    "oim_queue_size was removed (training has no unlabelled clips, so the queue never held "
                    "anything): delete the key"
                )
            data = {key: value for key, value in data.items() if key != "oim_queue_size"}
        return data

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
    decode_batch_size: int = Field(
        16, ge=1, description="clips decoded per Ray Data task (fewer, larger tasks: benchmarks/data.py)"
    )
    decode_cpus: float = Field(
        1.0,
        gt=0,
        description="logical CPUs each decode task reserves: 1, one single-threaded decoder per core; a fraction "
        "oversubscribes the cores but still schedules where training holds all but part of a CPU (sweeps that "
        "fill a cluster: with whole-CPU tasks their streams would wait for a CPU forever)",
    )
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
    worker_node_labels: dict[str, str] = Field(
        default_factory=dict,
        description="Ray label selector for the training workers' nodes (labels set by `ray start --labels`), "
        "e.g. {drsta-role: train}: CPU-only nodes without the label then only decode; {}: any node (GPU "
        "workers already need GPU nodes)",
    )
    use_gpu: bool = Field(False, description="one GPU per worker, NCCL; bf16 autocast when amp is on")
    amp: bool = Field(True, description="bf16 autocast on GPU (ignored on CPU)")
    eval_every: int = Field(5, ge=1, description="evaluate every this many epochs (and after the last)")
    checkpoints_to_keep: int = Field(2, ge=1, description="best checkpoints kept, by val/mAP")
    max_failures: int = Field(3, ge=-1, description="worker/node failures survived by restarting (-1: no limit)")
    model_seed: int = Field(0, description="seed of the model's initial weights")
    tracking_uri: str | None = Field(None, description="MLflow tracking URI; null: sqlite:///mlflow.db here")
    experiment: str = Field("drsta", min_length=1, description="MLflow experiment name")
    registered_model: str | None = Field("drsta", description="register the final model under this name; null: no")
    system_metrics_s: float | None = Field(
        10.0,
        gt=0,
        description="log each node's CPU, memory, disk, network (and GPU) to MLflow every this many "
        "seconds (the run's System metrics); null: not",
    )

    @field_validator("worker_node_labels")
    @classmethod
    def _ray_accepts_the_selector(cls, selector: dict[str, str]) -> dict[str, str]:
        """Refused here, before anything starts: Ray itself only fails once the workers are placed."""
        from ray._private.label_utils import validate_label_selector  # imported only for a selector to check

        if selector and (problem := validate_label_selector(selector)):
            raise ValueError(
                f"train.worker_node_labels {selector}: {problem} Give label keys and values as `ray start --labels` "
                "takes them, e.g. {drsta-role: train}; a value may also be !value, in(a,b) or !in(a,b)."
            )
        return selector


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
            raise ValueError(f"invalid {source}:{describe_errors(err, cls)}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> ExperimentConfig:
        """Load and validate a config file: a path, or a built-in config's name (`paper`, see
        `drsta.resources.config_names`)."""
        path = resolve_config(path)
        every_key = f"{CONFIG_DIR / 'default.yaml'} shows every key"
        data = read_yaml(path, f"fix the file ({every_key})")
        if data is None:
            data = {}  # an empty file: every default
        if not isinstance(data, dict):
            sections = ", ".join(cls.model_fields)
            raise ValueError(
                f"{path} must hold a mapping of sections ({sections}), got a YAML {type(data).__name__}; {every_key}"
            )
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


def describe_errors(err: ValidationError, model: type[BaseModel]) -> str:
    """`err` as " key: problem" for one problem (to follow "invalid <file>:" on its line), or as an indented list
    of them on their own lines for several; an unknown key lists its section's keys, so a misspelling is easy to
    fix."""
    lines = []
    for issue in err.errors():
        key = ".".join(str(part) for part in issue["loc"]) or "(top level)"
        message = issue["msg"]
        if issue["type"] == "extra_forbidden":
            section = _section(model, issue["loc"][:-1])
            known = f"; the known keys are {', '.join(section.model_fields)}" if section is not None else ""
            message = f"unknown key (not a field of this section{known})"
        lines.append(f"{key}: {message}")
    return f" {lines[0]}" if len(lines) == 1 else "".join(f"\n  {line}" for line in lines)


def _section(model: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model class found at `loc` inside `model` (None where that is not a model, e.g. inside a dict)."""
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return None
        model = field.annotation
    return model
