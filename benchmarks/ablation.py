"""The paper's ablation on the synthetic benchmark: one Ray Tune grid of variants × seeds, and its table.

    python benchmarks/ablation.py [--manifest DIR] [--name ablation] [--tracking-uri URI] [--storage-path DIR]
                                  [--address auto] [--max-concurrent N] [--resume]
    python benchmarks/ablation.py --from-mlflow [--name ablation] [--tracking-uri URI] [--epoch final|best]
    python benchmarks/ablation.py --smoke      # tiny trunk, 2 epochs, 1 seed, a tiny synthetic set: minutes

The sweep is `drsta tune --space ablation --manifest DIR --name ablation` (the grid of the built-in space
drsta/tune_spaces/ablation.yaml: 6 variants × 3 seeds of the `synthetic_cpu` config, every trial all epochs, ~1.5 h
on a 2-core CPU; the same file runs on a cluster). Without --manifest, the default synthetic set (`drsta synth`:
60 + 60 identities, 3 cameras, 128×64, with ground truth) is generated and ingested into --data first. With
--from-mlflow nothing runs: the table is read from the finished sweep's child runs.

Each trial counts with its *final* evaluation (the last epoch's; `--epoch best`: the epoch of its best val/mAP,
which favours mAP and says nothing honest about the claim metrics). A child run is matched to its variant and
seed by its logged config: the bundle whose keys, applied to the space's base config, give exactly the run's
values. Only trials evaluated after their last epoch count (so a sweep still running can be read too). Cells are
mean ± sample std over the seeds (mAP and rank-1 in %); the goals compare means.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import mlflow
import numpy as np
import yaml

from drsta.config import ExperimentConfig
from drsta.data.synthetic import SyntheticSpec, generate
from drsta.resources import resolve_config, resolve_space
from drsta.search_space import SearchSpace
from pipelines.ingest import ingest
from pipelines.ray_runtime import connect, disconnect
from pipelines.tracking import default_tracking_uri, flatten_params

SCORE = "val/mAP"
Epoch = Literal["final", "best"] | int  # an int N: the evaluation after epoch N (1-based), to follow training length

# The paper's rows, by the variant names of the `ablation` space (others are shown by their name).
ROWS = {
    "tp_baseline": "(1) temporal average pooling, global feature",
    "spatial_attention": "(2) spatial attention, λ = 0",
    "spatial_attention_reg": "(3) + diversity regularizer, λ > 0",
    "temporal_attention": "(4) + temporal attention",
    "drsta": "(5) + feature enhancement (full DRSTA)",
    "drsta_fixed_w": "(6) full DRSTA, W fixed at ones (σ matters)",
}
BASELINE, SPATIAL, REGULARIZED, FULL = "tp_baseline", "spatial_attention", "spatial_attention_reg", "drsta"


@dataclass(frozen=True)
class Column:
    key: str  # the metric key in Tune and MLflow
    header: str
    scale: float  # shown as value × scale
    decimals: int


COLUMNS = (
    Column("val/mAP", "mAP %", 100, 1),
    Column("val/rank1", "rank-1 %", 100, 1),
    Column("val/attn_foreground", "foreground", 1, 2),
    Column("val/attn_part_specificity", "part spec.", 1, 2),
    Column("val/attn_distinct_parts", "distinct parts", 1, 2),
    Column("val/temporal_bad_ratio", "bad/clean", 1, 2),
    Column("val/temporal_bad_auc", "bad AUC", 1, 2),
    Column("val/probe_noise_ratio", "probe noise", 1, 2),
    Column("val/probe_black_ratio", "probe black", 1, 2),
    Column("val/probe_shift_ratio", "probe shift", 1, 2),
)

# --smoke: the space's grid on a tiny trunk and a tiny set, 2 epochs, its first seed only, one worker per trial.
SMOKE_OVERRIDES = {
    "model.backbone": "tiny",
    "model.attention_hidden_dim": 16,
    "model.embedding_dim": 32,
    "input.height": 64,
    "input.width": 40,
    "optim.epochs": 2,
    "train.eval_every": 1,
    "train.num_workers": 1,
    "data.batch_size_per_worker": 8,
}
SMOKE_SET = SyntheticSpec(seed=5, num_train_ids=8, num_test_ids=6, num_cameras=2, tracklets_per_id_per_camera=2,
                          min_frames=8, max_frames=16, height=64, width=40, gop=4)  # fmt: skip


@dataclass(frozen=True)
class Trial:
    """One child run of the sweep: which bundles it ran and its metrics at the chosen evaluation."""

    run_id: str
    variant: str
    seed: str
    step: int  # the epoch (0-based) whose evaluation is used
    metrics: dict[str, float]


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float  # sample std over the seeds (nan for one seed)
    n: int


@dataclass(frozen=True)
class Goal:
    text: str
    measured: str
    passed: bool | None  # None: a row or metric is missing


# --- Reading a sweep from MLflow ------------------------------------------------------------------------------------


def identify(params: Mapping[str, str], space: SearchSpace, base: ExperimentConfig) -> dict[str, str | None]:
    """{bundle param: the bundle this run's logged config shows} (None where no bundle, or more than one, fits).

    A bundle fits when applying it to `base` gives the run's values on every key that any bundle of that param
    sets: so a bundle with no keys (the base as it is) fits only runs that none of the others describes.
    """
    found: dict[str, str | None] = {}
    for param, bundles in space.bundles.items():
        keys = sorted({key for bundle in bundles.values() for key in bundle})
        fits = []
        for name, bundle in bundles.items():
            expected = flatten_params(base.with_overrides(bundle).to_dict())
            if all(params.get(key) == expected[key] for key in keys):
                fits.append(name)
        found[param] = fits[0] if len(fits) == 1 else None
    return found


def ran_all_epochs(client: mlflow.MlflowClient, run: mlflow.entities.Run) -> bool:
    """Whether the run was evaluated after its last epoch (`optim.epochs`). Not its MLflow status: a sweep sets
    that only when it ends, so this also reads the trials a sweep still running (or stopped) has finished."""
    last = int(run.data.params.get("optim.epochs", 0)) - 1
    return any(m.step == last and m.value >= 0 for m in client.get_metric_history(run.info.run_id, SCORE))


def evaluation_step(client: mlflow.MlflowClient, run_id: str, epoch: Epoch) -> int | None:
    """The step (epoch) of the run's last evaluation, of its best val/mAP (the first of equals), or `epoch` - 1 for
    an int if the run was evaluated after that epoch."""
    history = sorted(client.get_metric_history(run_id, SCORE), key=lambda m: (m.step, m.timestamp))
    if isinstance(epoch, int):
        return epoch - 1 if any(m.step == epoch - 1 and m.value >= 0 for m in history) else None
    if not history:
        return None
    if epoch == "final":
        return history[-1].step
    return max(history, key=lambda m: (m.value, -m.step)).step


def metrics_at(client: mlflow.MlflowClient, run_id: str, step: int, keys: Sequence[str]) -> dict[str, float]:
    """The value of each key logged at `step` (the last one logged there); keys never logged there are left out."""
    values = {}
    for key in keys:
        at_step = [m for m in client.get_metric_history(run_id, key) if m.step == step]
        if at_step:
            values[key] = max(at_step, key=lambda m: m.timestamp).value
    return values


def collect_trials(
    tracking_uri: str, sweep: str, space: SearchSpace, base: ExperimentConfig, epoch: Epoch
) -> tuple[list[Trial], list[str]]:
    """The sweep's finished child runs as Trials, and a line for each run left out (unfinished, unidentified)."""
    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(base.train.experiment)
    parents = (
        [] if experiment is None else client.search_runs([experiment.experiment_id], f"tags.drsta_sweep = '{sweep}'")
    )
    if not parents:
        raise ValueError(
            f"no sweep named {sweep!r} in MLflow experiment {base.train.experiment!r} at {tracking_uri}: pass the "
            "--name and --tracking-uri the sweep ran with"
        )
    parent = parents[0].info.run_id
    children = client.search_runs(
        [experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent}'", max_results=10_000
    )
    trials, left_out = [], []
    for child in sorted(children, key=lambda run: run.info.start_time or 0):
        name = child.info.run_name
        if not ran_all_epochs(client, child):
            left_out.append(f"{name}: {child.info.status}, did not run all its epochs")
            continue
        found = identify(child.data.params, space, base)
        if None in found.values() or set(found) != {"variant", "seed"}:
            left_out.append(f"{name}: its config matches no single variant and seed of the space ({found})")
            continue
        step = evaluation_step(client, child.info.run_id, epoch)
        if step is None:
            after = f" after epoch {epoch}" if isinstance(epoch, int) else ""
            left_out.append(f"{name}: no evaluation logged{after}")
            continue
        values = metrics_at(client, child.info.run_id, step, [column.key for column in COLUMNS])
        trials.append(Trial(child.info.run_id, found["variant"], found["seed"], step, values))
    return trials, left_out


# --- The table ------------------------------------------------------------------------------------------------------


def summarize(trials: Sequence[Trial]) -> dict[str, dict[str, Stat]]:
    """{variant: {metric key: mean, sample std and count over the variant's trials (seeds)}}."""
    by_variant: dict[str, list[Trial]] = {}
    for trial in trials:
        by_variant.setdefault(trial.variant, []).append(trial)
    summary = {}
    for variant, runs in by_variant.items():
        stats = {}
        for column in COLUMNS:
            values = np.array([run.metrics[column.key] for run in runs if column.key in run.metrics], dtype=float)
            if len(values):
                std = float(values.std(ddof=1)) if len(values) > 1 else math.nan
                stats[column.key] = Stat(float(values.mean()), std, len(values))
        summary[variant] = stats
    return summary


def cell(stat: Stat | None, column: Column) -> str:
    if stat is None:
        return "–"
    mean = f"{stat.mean * column.scale:.{column.decimals}f}"
    return mean if math.isnan(stat.std) else f"{mean} ± {stat.std * column.scale:.{column.decimals}f}"


def format_table(summary: Mapping[str, Mapping[str, Stat]], variants: Sequence[str], trials: Sequence[Trial]) -> str:
    """A Markdown table: one row per variant (in `variants`' order), a column per metric, mean ± std over seeds."""
    seeds = {variant: sorted({t.seed for t in trials if t.variant == variant}) for variant in variants}
    header = ["variant", "seeds", *(column.header for column in COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for variant in variants:
        stats = summary.get(variant, {})
        row = [ROWS.get(variant, variant), str(len(seeds[variant])), *(cell(stats.get(c.key), c) for c in COLUMNS)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def goals(summary: Mapping[str, Mapping[str, Stat]]) -> list[Goal]:
    """The ablation's goals, each on the means over seeds."""

    def mean(variant: str, key: str) -> float | None:
        stat = summary.get(variant, {}).get(key)
        return None if stat is None else stat.mean

    out = []
    full, baseline = mean(FULL, "val/mAP"), mean(BASELINE, "val/mAP")
    gain = None if full is None or baseline is None else 100 * (full - baseline)
    out.append(Goal("full DRSTA ≥ 5 mAP points above the temporal average pooling baseline",
                    "–" if gain is None else f"{gain:+.1f} points", None if gain is None else gain >= 5))  # fmt: skip
    ratio = mean(FULL, "val/temporal_bad_ratio")
    out.append(Goal("temporal attention weight of bad frames / clean frames ≤ 0.7 (full DRSTA)",
                    "–" if ratio is None else f"{ratio:.2f}", None if ratio is None else ratio <= 0.7))  # fmt: skip
    foreground = mean(FULL, "val/attn_foreground")
    out.append(Goal("spatial attention on the person / its area ≥ 1.5 (full DRSTA)",
                    "–" if foreground is None else f"{foreground:.2f}",
                    None if foreground is None else foreground >= 1.5))  # fmt: skip
    with_reg, without = mean(REGULARIZED, "val/attn_distinct_parts"), mean(SPATIAL, "val/attn_distinct_parts")
    known = with_reg is not None and without is not None
    out.append(Goal("more distinct dominant parts with λ > 0 (row 3) than with λ = 0 (row 2)",
                    f"{with_reg:.2f} vs {without:.2f}" if known else "–",
                    with_reg > without if known else None))  # fmt: skip
    return out


def format_goals(results: Sequence[Goal]) -> str:
    status = {True: "PASS", False: "FAIL", None: "n/a "}
    return "\n".join(f"{status[goal.passed]}  {goal.text}: {goal.measured}" for goal in results)


def report(tracking_uri: str, sweep: str, space_path: Path, epoch: Epoch, commands: Sequence[str]) -> str:
    """The whole printout: what was read, the table, the goals and how to reproduce it."""
    space, base = SearchSpace.from_yaml(space_path)
    trials, left_out = collect_trials(tracking_uri, sweep, space, base, epoch)
    variants = list(space.bundles["variant"])
    summary = summarize(trials)
    which = {"final": "final evaluation (last epoch)", "best": "evaluation of its best val/mAP epoch"}.get(
        epoch, f"evaluation after epoch {epoch}"
    )
    lines = [
        f"ablation {sweep!r} ({tracking_uri}): {len(trials)} finished trials of {len(space.grid())}; each trial's "
        f"{which}; mean ± sample std over seeds",
        *(f"  left out: {line}" for line in left_out),
        "",
        format_table(summary, variants, trials),
        "",
        format_goals(goals(summary)),
        "",
        "reproduce:",
        *(f"  {command}" for command in commands),
    ]
    return "\n".join(lines)


# --- Running the sweep ----------------------------------------------------------------------------------------------


def synthetic_set(spec: SyntheticSpec, root: Path, address: str | None) -> Path:
    """`root`/ingest: the synthetic set of `spec` generated into `root`/synth and ingested (reused if there), on
    the Ray at `address` (else RAY_ADDRESS, else a private one), as `drsta ingest` does."""
    manifest = root / "ingest"
    if not manifest.exists():
        if not (root / "synth").exists():
            generate(spec, root / "synth")
        connect(address, "ingest", log_to_driver=False)
        try:
            ingest("videos", root / "synth", manifest)
        finally:
            disconnect()
    return manifest


def smoke_space(space_path: Path, out: Path) -> Path:
    """A copy of the space for --smoke: SMOKE_OVERRIDES on top of its overrides, its first seed, grace = epochs."""
    data = yaml.safe_load(space_path.read_text())
    data["base_config"] = str(resolve_config(data["base_config"], relative_to=space_path.parent).resolve())
    data["overrides"] = data.get("overrides", {}) | SMOKE_OVERRIDES
    data["scheduler"] = data.get("scheduler", {}) | {"grace_period": SMOKE_OVERRIDES["optim.epochs"]}
    seeds = data["params"]["seed"]["bundles"]
    data["params"]["seed"]["bundles"] = dict([next(iter(seeds.items()))])
    out.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return out


def run_sweep(space_path: Path, manifest: Path, name: str, args: argparse.Namespace, tracking_uri: str) -> None:
    """`drsta tune --space ... --manifest ... --name ...`, in this process (its errors exit as the command's)."""
    from pipelines.cli import main as drsta  # here: it imports every command's module, which the table needs not

    argv = ["tune", "--space", str(space_path), "--manifest", str(manifest), "--name", name]
    argv += ["--tracking-uri", tracking_uri]
    for flag, value in (("--storage-path", args.storage_path), ("--address", args.address),
                        ("--max-concurrent", args.max_concurrent)):  # fmt: skip
        if value is not None:
            argv += [flag, str(value)]
    drsta(argv + (["--resume"] if args.resume else []))


def epoch_choice(value: str) -> Epoch:
    """--epoch: final, best, or a positive epoch number."""
    if value in ("final", "best"):
        return value
    if value.isdigit() and int(value) >= 1:
        return int(value)
    raise argparse.ArgumentTypeError(f"expected final, best or an epoch number ≥ 1, got {value!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="ablation", help="the ablation space: a path or a built-in name "
                        "(default: %(default)s)")  # fmt: skip
    parser.add_argument("--manifest", type=Path, help="an ingested synthetic set (default: generate one in --data)")
    parser.add_argument("--data", type=Path, default=Path("data/ablation"), help="where to generate the set")
    parser.add_argument("--name", default="ablation", help="the sweep's name (MLflow tag drsta_sweep)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///mlflow.db here)")
    parser.add_argument("--storage-path", help="checkpoint and trial storage (shared on clusters)")
    parser.add_argument("--address", help="a Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    parser.add_argument("--max-concurrent", type=int, help="trials at once (default: the space's)")
    parser.add_argument("--resume", action="store_true", help="continue a sweep whose driver stopped")
    parser.add_argument("--from-mlflow", action="store_true", help="only read a finished sweep and print the table")
    parser.add_argument("--epoch", type=epoch_choice, default="final", help="which evaluation of a trial: final, best, "
                        "or N (after epoch N, to see how the claims change with training length)")  # fmt: skip
    parser.add_argument("--smoke", action="store_true", help="tiny trunk, 2 epochs, 1 seed, tiny set (temporary)")
    args = parser.parse_args()
    space_path = resolve_space(args.space)
    if args.smoke:
        with tempfile.TemporaryDirectory(prefix="drsta-ablation-smoke-") as tmp:
            root = Path(tmp)
            uri = f"sqlite:///{root / 'mlflow.db'}"
            args.storage_path = str(root / "ray_results")
            space = smoke_space(space_path, root / "ablation-smoke.yaml")
            run_sweep(space, synthetic_set(SMOKE_SET, root, args.address), args.name, args, uri)
            print(report(uri, args.name, space, args.epoch, ["python benchmarks/ablation.py --smoke"]))
        return
    uri = default_tracking_uri(args.tracking_uri)
    manifest = args.manifest
    commands = []
    if not args.from_mlflow:
        if manifest is None:
            manifest = synthetic_set(SyntheticSpec(), args.data, args.address)
            commands.append(f"drsta synth --out {args.data / 'synth'} && drsta ingest --dataset videos --root "
                            f"{args.data / 'synth'} --out {manifest}")  # fmt: skip
        run_sweep(space_path, manifest, args.name, args, uri)
    commands += [
        f"drsta tune --space {args.space} --manifest {manifest or 'DIR'} --name {args.name} --tracking-uri {uri}",
        f"python benchmarks/ablation.py --from-mlflow --name {args.name} --tracking-uri {uri} --epoch {args.epoch}",
    ]
    print(report(uri, args.name, space_path, args.epoch, commands))


if __name__ == "__main__":
    main()
