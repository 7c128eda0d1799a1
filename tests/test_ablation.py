"""The ablation: the built-in space `ablation` is the paper's rows × seeds, and benchmarks/ablation.py's table read
from MLflow child runs made here in a temporary SQLite store (no training)."""

import argparse
import itertools
import math

import mlflow
import pytest
from mlflow.entities import Metric, Param

from drsta.config import ExperimentConfig
from drsta.resources import CONFIG_DIR, SPACE_DIR
from drsta.search_space import SearchSpace
from pipelines.tracking import flatten_params
from tests.benchmark_scripts import load_benchmark

SPACE = SPACE_DIR / "ablation.yaml"


ablation = load_benchmark("ablation")

# variant -> (spatial pooling, K, temporal pooling, feature enhancement, λ, W learned)
ROWS = {
    "tp_baseline": ("average", 1, "average", False, 0.1, True),
    "spatial_attention": ("attention", 4, "average", False, 0.0, True),
    "spatial_attention_reg": ("attention", 4, "average", False, 0.1, True),
    "temporal_attention": ("attention", 4, "attention", False, 0.1, True),
    "drsta": ("attention", 4, "attention", True, 0.1, True),
    "drsta_fixed_w": ("attention", 4, "attention", True, 0.1, False),
}
SEEDS = ("seed0", "seed1", "seed2")


def row(cfg: ExperimentConfig) -> tuple:
    m = cfg.model
    return (m.spatial_pooling, m.num_attention_models, m.temporal_pooling, m.feature_enhancement,
            cfg.loss.diversity_weight, m.learn_temporal_weights)  # fmt: skip


def test_the_ablation_is_one_grid_of_the_papers_rows_times_three_seeds_on_the_cpu_config():
    space, base = SearchSpace.from_yaml(SPACE)
    cpu = ExperimentConfig.from_yaml(CONFIG_DIR / "synthetic_cpu.yaml")
    assert base == cpu.with_overrides({"train.registered_model": None})
    assert space.searcher == "grid" and space.scheduler.grace_period == base.optim.epochs  # no trial stops early
    grid = space.grid()
    assert sorted((p["variant"], p["seed"]) for p in grid) == sorted(itertools.product(ROWS, SEEDS))
    configs = {}
    for point in grid:
        cfg = base.with_overrides(space.expand(point))
        assert row(cfg) == ROWS[point["variant"]], point
        assert cfg.train.model_seed == cfg.data.seed == SEEDS.index(point["seed"])
        # Nothing else moves: the same trunk, input, optimiser and enhancement for every row.
        assert cfg.with_overrides({**dict(zip(("model.spatial_pooling", "model.num_attention_models",
                                               "model.temporal_pooling", "model.feature_enhancement",
                                               "loss.diversity_weight", "model.learn_temporal_weights"),
                                              row(base), strict=True)),
                                   "train.model_seed": 0, "data.seed": 0}) == base  # fmt: skip
        configs[point["variant"], point["seed"]] = cfg
    assert len(set(map(str, configs.values()))) == len(grid)  # 18 different runs
    assert base.model.backbone == "resnet18" and base.model.enhancement_similarity == "scaled"


def test_the_smoke_space_is_the_same_grid_on_a_tiny_model_with_one_seed(tmp_path):
    space, base = SearchSpace.from_yaml(ablation.smoke_space(SPACE, tmp_path / "smoke.yaml"))
    assert [p["variant"] for p in space.grid()] == list(ROWS) and {p["seed"] for p in space.grid()} == {"seed0"}
    assert (base.model.backbone, base.optim.epochs, space.scheduler.grace_period) == ("tiny", 2, 2)
    for point in space.grid():
        assert row(base.with_overrides(space.expand(point))) == ROWS[point["variant"]]


# --- The table, from child runs made by hand ------------------------------------------------------------------------

MAP = {"tp_baseline": 0.40, "spatial_attention": 0.45, "spatial_attention_reg": 0.47, "temporal_attention": 0.50,
       "drsta": 0.52, "drsta_fixed_w": 0.51}  # fmt: skip
OFFSET = {"seed0": -0.01, "seed1": 0.0, "seed2": 0.01}  # mean 0, sample std 0.01


def final_metrics(variant: str, seed: str) -> dict[str, float]:
    temporal = variant in ("temporal_attention", "drsta", "drsta_fixed_w")
    return {
        "val/mAP": MAP[variant] + OFFSET[seed],
        "val/rank1": MAP[variant] + 0.2,
        "val/attn_foreground": 1.4 + OFFSET[seed],
        "val/attn_distinct_parts": {"spatial_attention": 2.0, "tp_baseline": 1.0}.get(variant, 3.0),
        "val/temporal_bad_ratio": 0.6 if temporal else 1.0,
        "val/probe_noise_ratio": 0.5,
    }  # no part specificity, bad AUC, black or shift probe: shown as "–"


def log_child(client, experiment, parent, name, cfg, history, status="FINISHED"):
    run = client.create_run(experiment, run_name=name, tags={"mlflow.parentRunId": parent})
    params = [Param(k, v) for k, v in flatten_params(cfg.to_dict()).items()]
    metrics = [Metric(key, value, 0, step) for step, values in history.items() for key, value in values.items()]
    client.log_batch(run.info.run_id, metrics=metrics, params=params)
    client.set_terminated(run.info.run_id, status)


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    """A sweep 'ablation' in a fresh SQLite store: every grid trial FINISHED with the metrics above at its last
    epoch (24) and a better val/mAP at epoch 9; plus a KILLED trial and one whose config is no variant."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('ablation') / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("drsta")
    parent = client.create_run(experiment, run_name="ablation", tags={"drsta_sweep": "ablation"}).info.run_id
    space, base = SearchSpace.from_yaml(SPACE)
    for i, point in enumerate(space.grid()):
        cfg = base.with_overrides(space.expand(point) | {"train.name": f"ablation-{i}", "data.manifest": "/data"})
        final = final_metrics(point["variant"], point["seed"])
        history = {4: {"val/mAP": 0.1}, 9: {"val/mAP": final["val/mAP"] + 0.05, "val/rank1": 0.99}, 24: final}
        log_child(client, experiment, parent, f"ablation-{i}", cfg, history)
    killed = base.with_overrides(space.expand({"variant": "drsta", "seed": "seed0"}))
    log_child(client, experiment, parent, "ablation-killed", killed, {4: {"val/mAP": 0.9}}, status="KILLED")
    odd = base.with_overrides({"loss.diversity_weight": 0.0})  # temporal attention with λ = 0: no row of the space
    log_child(client, experiment, parent, "ablation-odd", odd, {24: {"val/mAP": 0.9}})
    return uri


def test_the_table_is_mean_and_std_over_seeds_of_each_trials_final_evaluation(finished_sweep):
    space, base = SearchSpace.from_yaml(SPACE)
    trials, left_out = ablation.collect_trials(finished_sweep, "ablation", space, base, "final")
    assert len(trials) == 18 and {t.step for t in trials} == {24}
    assert sorted(line.split(":")[0] for line in left_out) == ["ablation-killed", "ablation-odd"]
    summary = ablation.summarize(trials)
    stat = summary["drsta"]["val/mAP"]
    assert (stat.mean, stat.std, stat.n) == (pytest.approx(0.52), pytest.approx(0.01), 3)
    assert "val/temporal_bad_auc" not in summary["drsta"]

    text = ablation.report(finished_sweep, "ablation", SPACE, "final", ["drsta tune --space ..."])
    lines = text.splitlines()
    assert "18 finished trials of 18; each trial's final evaluation (last epoch)" in lines[0]
    table = [line for line in lines if line.startswith("| (")]
    assert [line.split(" | ")[0] for line in table] == [f"| {label}" for label in ablation.ROWS.values()]
    full = next(line for line in table if "full DRSTA)" in line).split(" | ")
    assert full[1:5] == ["3", "52.0 ± 1.0", "72.0 ± 0.0", "1.40 ± 0.01"] and full[5] == "–"
    assert "PASS  full DRSTA ≥ 5 mAP points above the temporal average pooling baseline: +12.0 points" in lines
    assert "PASS  temporal attention weight of bad frames / clean frames ≤ 0.7 (full DRSTA): 0.60" in lines
    assert "FAIL  spatial attention on the person / its area ≥ 1.5 (full DRSTA): 1.40" in lines
    assert "PASS  more distinct dominant parts with λ > 0 (row 3) than with λ = 0 (row 2): 3.00 vs 2.00" in lines
    assert lines[-1] == "  drsta tune --space ..."


def test_best_epoch_takes_each_trials_best_map_evaluation(finished_sweep):
    space, base = SearchSpace.from_yaml(SPACE)
    trials, _ = ablation.collect_trials(finished_sweep, "ablation", space, base, "best")
    assert {t.step for t in trials} == {9}
    drsta = ablation.summarize(trials)["drsta"]
    assert drsta["val/mAP"].mean == pytest.approx(0.57) and drsta["val/rank1"].mean == pytest.approx(0.99)
    assert "val/attn_foreground" not in drsta  # not evaluated at that epoch: missing, not taken from another


def test_an_epoch_number_takes_the_evaluation_after_that_epoch(finished_sweep):
    """`--epoch N` follows the claims over training length: the evaluation after epoch N, where there is one."""
    space, base = SearchSpace.from_yaml(SPACE)
    trials, left_out = ablation.collect_trials(finished_sweep, "ablation", space, base, 10)
    assert len(trials) == 18 and {t.step for t in trials} == {9}
    assert ablation.summarize(trials)["drsta"]["val/mAP"].mean == pytest.approx(0.57)
    trials, left_out = ablation.collect_trials(finished_sweep, "ablation", space, base, 7)  # never evaluated
    assert trials == [] and sum(line.endswith("no evaluation logged after epoch 7") for line in left_out) == 18
    assert ablation.epoch_choice("12") == 12 and ablation.epoch_choice("best") == "best"
    with pytest.raises(argparse.ArgumentTypeError, match="epoch number"):
        ablation.epoch_choice("0")


def test_missing_rows_and_one_seed_are_shown_not_guessed():
    stat = ablation.Stat(0.5, math.nan, 1)
    assert ablation.cell(stat, ablation.COLUMNS[0]) == "50.0"
    results = ablation.goals({"drsta": {"val/mAP": stat}})
    assert [goal.passed for goal in results] == [None, None, None, None]
    assert ablation.format_goals(results).splitlines()[0].startswith("n/a   full DRSTA")


def test_an_unknown_sweep_is_named(finished_sweep):
    space, base = SearchSpace.from_yaml(SPACE)
    with pytest.raises(ValueError, match="no sweep named 'nope' in MLflow experiment 'drsta'"):
        ablation.collect_trials(finished_sweep, "nope", space, base, "final")
