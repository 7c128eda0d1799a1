"""Search spaces over the experiment config (`drsta/tune_spaces/*.yaml`), validated strictly before any trial runs.

A space names a base config, fixed overrides, and a distribution per searched key:

    base_config: ../configs/synthetic_cpu.yaml      # relative to the space file, or a built-in config's name
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

A param that must set several keys at once (an ablation's rows, a seed that fixes both the model's and the data's
randomness) is a word without a dot whose `bundles` name sets of overrides; Tune samples (or grids over) the names,
and `expand_bundles` turns a trial's sampled names back into plain per-key overrides:

    searcher: grid                                   # every variant × every seed
    scheduler: {grace_period: 25}                    # = optim.epochs: ASHA's one rung is the last epoch, no early stop
    params:
      variant:
        bundles:
          tp_baseline: {model.spatial_pooling: average, model.num_attention_models: 1, model.temporal_pooling: average}
          drsta: {}                                  # the base config as it is
      seed:
        bundles:
          seed0: {train.model_seed: 0, data.seed: 0}
          seed1: {train.model_seed: 1, data.seed: 1}

Two params may not set the same key (which would win is not obvious); with the grid searcher every combination of
the choices is validated, so a bundle that only works with some other param's value is caught before any trial.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from drsta.config import ExperimentConfig, describe_errors
from drsta.io import read_yaml
from drsta.resources import SPACE_DIR, resolve_config, resolve_space

DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint", "bundles")


class Distribution(BaseModel):
    """Exactly one of: choice [values], uniform [low, high], loguniform [low, high], randint [low, high), or
    bundles {name: {config key: value}}.

    For bundles, `choice` is derived: the bundle names, which is what Tune samples (see `expand_bundles`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    choice: list[Any] | None = None
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = None
    bundles: dict[str, dict[str, Any]] | None = None

    @model_validator(mode="before")
    @classmethod
    def _bundle_names_are_the_choices(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("bundles"), dict):
            names = list(data["bundles"])
            if data.get("choice") not in (None, names):  # a dumped space (choice derived) validates again
                raise ValueError("give bundles alone: their names are the choices")
            data = data | {"choice": names}
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> Distribution:
        given = [name for name in DISTRIBUTIONS if getattr(self, name) is not None]
        if self.bundles is not None:
            given.remove("choice")  # derived from the bundles
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(DISTRIBUTIONS)}, got {given or 'none'}")
        if self.choice is not None and not self.choice:
            raise ValueError(f"{self.kind} needs at least one value")
        for name in ("uniform", "loguniform", "randint"):
            bounds = getattr(self, name)
            if bounds is not None and not bounds[0] < bounds[1]:
                raise ValueError(f"{name} needs [low, high] with low < high, got {list(bounds)}")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError(f"loguniform needs low > 0, got {self.loguniform[0]}")
        return self

    @property
    def kind(self) -> str:
        if self.bundles is not None:
            return "bundles"
        return next(name for name in DISTRIBUTIONS if getattr(self, name) is not None)

    def extremes(self) -> list[Any]:
        """The values whose validity implies every sampled value's: all choices, or both ends of a range."""
        if self.choice is not None:
            return list(self.choice)  # for bundles, their names
        low, high = getattr(self, self.kind)
        return [low, high - 1] if self.kind == "randint" else [low, high]


class Scheduler(BaseModel):
    """ASHA early stopping on val/mAP, one rung step per epoch (max_t = the trial's optim.epochs).

    grace_period = optim.epochs turns early stopping off: ASHA's only rung is then the last epoch, so every trial
    runs all its epochs (what an ablation needs).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    grace_period: int = Field(
        1, ge=1, description="epochs every trial runs before it can be stopped (at most optim.epochs)"
    )
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
        """Load and validate a space file (a path, or a built-in space's name: `demo`, see
        `drsta.resources.space_names`); returns it with its base config (overrides applied)."""
        path = resolve_space(path)
        data = read_yaml(path, f"fix the file ({SPACE_DIR} has examples)")
        if not isinstance(data, dict):
            got = "an empty file" if data is None else f"a YAML {type(data).__name__}"
            raise ValueError(
                f"{path}: expected a mapping with params (and base_config, searcher, ...), got {got}; "
                f"see {SPACE_DIR} for examples"
            )
        try:
            space = cls.model_validate(data)
        except ValidationError as err:
            raise ValueError(f"invalid search space {path}:{describe_errors(err, cls)}") from None
        return space, space._base(path)

    def _base(self, path: Path) -> ExperimentConfig:
        base = ExperimentConfig()
        if self.base_config is not None:
            try:
                base_path = resolve_config(self.base_config, relative_to=path.parent)
            except FileNotFoundError as err:
                raise FileNotFoundError(f"{path}: base_config {err}") from None
            base = ExperimentConfig.from_yaml(base_path)
        try:
            base = base.with_overrides(self.overrides)
        except ValueError as err:
            raise ValueError(f"{path}: overrides: {err}") from None
        if self.scheduler.grace_period > base.optim.epochs:
            raise ValueError(
                f"{path}: scheduler.grace_period {self.scheduler.grace_period} is more than optim.epochs "
                f"{base.optim.epochs} (ASHA's max_t): set it to at most {base.optim.epochs} "
                f"({base.optim.epochs}: no trial stops early)"
            )
        self._check_keys(path)
        for key, distribution in self.params.items():
            if self.searcher == "grid" and distribution.choice is None:
                raise ValueError(f"{path}: params.{key}: the grid searcher needs choice lists, got {distribution.kind}")
            for value in distribution.extremes():
                try:
                    base.with_overrides(self.expand({key: value}))
                except ValueError as err:
                    raise ValueError(f"{path}: params.{key}: {value!r} is not allowed:\n{err}") from None
        if self.searcher == "grid":
            for point in self.grid():
                try:
                    base.with_overrides(self.expand(point))
                except ValueError as err:
                    trial = ", ".join(f"{key}={value!r}" for key, value in point.items())
                    raise ValueError(f"{path}: the grid's trial {trial} is not allowed:\n{err}") from None
        return base

    def _check_keys(self, path: Path) -> None:
        """Bundle params are words without a dot; no config key is set by two params."""
        setters: dict[str, str] = {}  # config key -> the param that sets it
        for key, distribution in self.params.items():
            if distribution.bundles is None:
                keys = [key]
            elif "." in key:
                raise ValueError(
                    f"{path}: params.{key}: a param with bundles is named by a word without a dot (e.g. variant): "
                    "its bundles say which config keys it sets"
                )
            else:
                keys = sorted({dotted for bundle in distribution.bundles.values() for dotted in bundle})
            for dotted in keys:
                if dotted in setters:
                    raise ValueError(
                        f"{path}: params.{key} and params.{setters[dotted]} both set {dotted}: let one param set it"
                    )
                setters[dotted] = key

    @property
    def bundles(self) -> dict[str, dict[str, dict[str, Any]]]:
        """{param: {bundle name: overrides}} of the bundle params (empty when there are none)."""
        return {key: d.bundles for key, d in self.params.items() if d.bundles is not None}

    def expand(self, sampled: Mapping[str, Any]) -> dict[str, Any]:
        """A trial's sampled values as plain config overrides (see `expand_bundles`)."""
        return expand_bundles(sampled, self.bundles)

    def grid(self) -> list[dict[str, Any]]:
        """Every trial of a space whose params are all choices (the grid searcher's), as sampled values: one dict
        per combination, {param: value or bundle name}, the first param varying slowest."""
        missing = [key for key, d in self.params.items() if d.choice is None]
        if missing:
            raise ValueError(f"params {', '.join(missing)} are not choice lists: a grid needs only choices")
        keys = list(self.params)
        return [
            dict(zip(keys, values, strict=True)) for values in itertools.product(*(self.params[k].choice for k in keys))
        ]


def expand_bundles(
    sampled: Mapping[str, Any], bundles: Mapping[str, Mapping[str, Mapping[str, Any]]]
) -> dict[str, Any]:
    """Sampled values -> plain config overrides: each bundle param's sampled name is replaced by its overrides.

    Args:
        sampled: {param: value}, what Tune sampled for one trial (a bundle param's value is a bundle name).
        bundles: {param: {bundle name: {config key: value}}} (`SearchSpace.bundles`).

    Returns:
        {config key: value}, for `ExperimentConfig.with_overrides`.
    """
    overrides: dict[str, Any] = {}
    for key, value in sampled.items():
        if key not in bundles:
            overrides[key] = value
        elif value in bundles[key]:
            overrides |= bundles[key][value]
        else:
            raise ValueError(f"params.{key}: no bundle named {value!r} (the bundles are {', '.join(bundles[key])})")
    return overrides
