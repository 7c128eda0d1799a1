"""Search spaces over the experiment config (`tune_spaces/*.yaml`), validated strictly before any trial runs.

A space names a base config, fixed overrides, and a distribution per searched key:

    base_config: ../configs/synthetic_cpu.yaml      # relative to the space file
    searcher: optuna                                 # optuna | random | grid
    num_samples: 32
    max_concurrent: 4
    scheduler: {grace_period: 2, reduction_factor: 3}   # ASHA on val/mAP, over optim.epochs
    overrides: {train.eval_every: 1}
    params:
      model.num_attention_models: {choice: [1, 2, 4, 6, 8]}
      model.sigma: {loguniform: [0.25, 8.0]}
      loss.diversity_weight: {loguniform: [0.001, 10.0]}

Every key must be a config field; every choice and both ends of every range must be a value the config (and
so the model) accepts. Errors name the file, the key and what is allowed. Plain pydantic: no Ray here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from drsta.config import ExperimentConfig, describe_errors
from drsta.io import read_yaml

DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint")


class Distribution(BaseModel):
    """Exactly one of: choice [values], uniform [low, high], loguniform [low, high], randint [low, high)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    choice: list[Any] | None = None
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Distribution:
        given = [name for name in DISTRIBUTIONS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(DISTRIBUTIONS)}, got {given or 'none'}")
        if self.choice is not None and not self.choice:
            raise ValueError("choice needs at least one value")
        for name in ("uniform", "loguniform", "randint"):
            bounds = getattr(self, name)
            if bounds is not None and not bounds[0] < bounds[1]:
                raise ValueError(f"{name} needs [low, high] with low < high, got {list(bounds)}")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError(f"loguniform needs low > 0, got {self.loguniform[0]}")
        return self

    @property
    def kind(self) -> str:
        return next(name for name in DISTRIBUTIONS if getattr(self, name) is not None)

    def extremes(self) -> list[Any]:
        """The values whose validity implies every sampled value's: all choices, or both ends of a range."""
        if self.choice is not None:
            return list(self.choice)
        low, high = getattr(self, self.kind)
        return [low, high - 1] if self.kind == "randint" else [low, high]


class Scheduler(BaseModel):
    """ASHA early stopping on val/mAP, one rung step per epoch (max_t = the trial's optim.epochs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    grace_period: int = Field(1, ge=1, description="epochs every trial runs before it can be stopped")
    reduction_factor: int = Field(2, ge=2, description="1 / the fraction of trials kept at each rung")


class SearchSpace(BaseModel):
    """A validated search space; `base` is the resolved base config with the overrides applied."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    base_config: Path | None = None
    searcher: Literal["optuna", "random", "grid"] = "optuna"
    num_samples: int = Field(8, ge=1)
    max_concurrent: int = Field(2, ge=1)
    seed: int = 0
    scheduler: Scheduler = Scheduler()
    overrides: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Distribution] = Field(min_length=1)

    @classmethod
    def from_yaml(cls, path: str | Path) -> tuple[SearchSpace, ExperimentConfig]:
        """Load and validate a space file; returns it with its base config (overrides applied)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"search space {path} not found (see tune_spaces/ for examples)")
        data = read_yaml(path, "fix the file (tune_spaces/ has examples)")
        if not isinstance(data, dict):
            got = "an empty file" if data is None else f"a YAML {type(data).__name__}"
            raise ValueError(
                f"{path}: expected a mapping with params (and base_config, searcher, ...), got {got}; "
                "see tune_spaces/ for examples"
            )
        try:
            space = cls.model_validate(data)
        except ValidationError as err:
            raise ValueError(f"invalid search space {path}:{describe_errors(err, cls)}") from None
        return space, space._base(path)

    def _base(self, path: Path) -> ExperimentConfig:
        base = ExperimentConfig()
        if self.base_config is not None:
            base_path = path.parent / self.base_config
            if not base_path.is_file():
                raise FileNotFoundError(
                    f"{path}: base_config {self.base_config} not found (it is relative to the space file: {base_path})"
                )
            base = ExperimentConfig.from_yaml(base_path)
        try:
            base = base.with_overrides(self.overrides)
        except ValueError as err:
            raise ValueError(f"{path}: overrides: {err}") from None
        for key, distribution in self.params.items():
            if self.searcher == "grid" and distribution.choice is None:
                raise ValueError(f"{path}: params.{key}: the grid searcher needs choice lists, got {distribution.kind}")
            for value in distribution.extremes():
                try:
                    base.with_overrides({key: value})
                except ValueError as err:
                    raise ValueError(f"{path}: params.{key}: {value!r} is not allowed:\n{err}") from None
        return base
