"""The main job end to end on this machine: synthetic videos → ingest → a sweep over K, σ and λ (each trial
a 2-worker Ray Train run) → the champion in the MLflow registry → pulled → evaluated → a results table.

Everything goes under --out: the videos, the manifest, Ray's trial storage, the SQLite MLflow store with its
artifacts, and the pulled champion. --out must be new, empty, or an earlier demo's output (marked by a
`.drsta-demo` file): the demo replaces files there and never touches a directory it did not create. Re-running
continues what is there (ingest skips finished chunks, the sweep resumes or returns its results). A local Ray
is started for the run.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import mlflow
import ray
import ray.tune

from drsta.config import ExperimentConfig
from drsta.data.annotations import PARTS
from drsta.data.synthetic import SyntheticSpec, generate
from pipelines.commands import parse_settings
from pipelines.evaluate import CLAIMS, evaluate_with_claims
from pipelines.ingest import ingest
from pipelines.model_files import read_model_dir
from pipelines.models import pull
from pipelines.ray_runtime import disconnect, init_ray
from pipelines.tune import TRIALS_DIR, load_space, sweep

SPACE = Path("demo")  # the built-in space (drsta.resources)
SWEEP = "demo"
MARKER = ".drsta-demo"
# Goals for the paper's claims (drsta.claims): the paper shows them in figures only, so the numbers are ours.
# (comparison, value); None: the distinct parts' goal is min(K, number of parts), one part per attention model. A
# corrupted frame (the probe) is held to the goal of a degraded one: at most 0.7 of a clean frame's weight.
CLAIM_GOALS: dict[str, tuple[str, float | None] | None] = {
    "val/attn_foreground": ("≥", 1.5),
    "val/attn_part_specificity": None,
    "val/attn_distinct_parts": ("=", None),
    "val/temporal_bad_ratio": ("≤", 0.7),
    "val/temporal_bad_auc": (">", 0.5),
    "val/probe_noise_ratio": ("≤", 0.7),
    "val/probe_black_ratio": ("≤", 0.7),
    "val/probe_shift_ratio": ("≤", 0.7),
}
_COMPARE = {"≥": float.__ge__, "≤": float.__le__, ">": float.__gt__, "=": float.__eq__}


def step(message: str) -> None:
    print(f"\n=== demo: {message}", flush=True)


def run_demo(
    out: Path,
    space: Path = SPACE,
    train_ids: int = 16,
    test_ids: int = 12,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run every stage into `out`, with `settings` (dotted keys) over the space's base config; returns the sweep
    summary and the champion's evaluation."""
    search_space, base = load_space(space)
    base = base.with_overrides(settings or {})  # a bad setting is named before anything is written
    out = claim_output(out)
    start = time.perf_counter()
    uri = f"sqlite:///{out / 'mlflow.db'}"
    storage = out / "ray_results"
    overrides = (settings or {}) | {"train.tracking_uri": uri, "train.storage_path": str(storage)}

    synth = out / "synth"
    if not (synth / "tracklets.csv").is_file():
        step(f"generating {train_ids}+{test_ids} synthetic identities into {synth}")
        spec = SyntheticSpec(num_train_ids=train_ids, num_test_ids=test_ids, num_cameras=2, min_frames=8,
                             max_frames=24, height=base.input.height, width=base.input.width)  # fmt: skip
        remove_inside(out, synth)  # a run stopped half-way: generation is deterministic
        generate(spec, synth)
    # Workers' logs stay in Ray's log files: the sweep's status table is the progress shown here.
    init_ray(None, base, concurrent_runs=search_space.max_concurrent, log_to_driver=False, command="demo")
    try:
        step(f"ingesting {synth} with Ray Data")
        ingest("videos", synth, out / "ingest")
        step(f"sweeping {space.name} with Ray Tune (each trial: {base.train.num_workers} Ray Train workers)")
        resume = ray.tune.Tuner.can_restore(str(storage / TRIALS_DIR / SWEEP))
        summary = sweep(space, out / "ingest", SWEEP, resume=resume, overrides=overrides)

        step("pulling the champion from the registry and evaluating it")
        champion_dir = out / "champion"
        remove_inside(out, champion_dir)
        pulled = pull("drsta@champion", champion_dir, uri)
        program, _ = read_model_dir(champion_dir / "model", str(champion_dir))
        cfg = ExperimentConfig.from_dict(pulled["config"], source=str(champion_dir))
        result, claims = evaluate_with_claims(program, cfg, out / "ingest")
    finally:
        disconnect()
    tables = results_table(summary, pulled, result, out, uri, cfg.train.experiment)
    tables += claims_table(claims, cfg.model.num_attention_models)
    report(tables, out, time.perf_counter() - start)
    return {"sweep": summary, "champion": pulled["model_uri"], "mAP": result.mAP, "rank1": float(result.cmc[0]),
            "claims": claims}  # fmt: skip


def claim_output(out: Path) -> Path:
    """`out`, resolved and marked as the demo's: refused if it is a file, or a non-empty directory that an earlier
    demo did not create (the demo deletes and replaces its own files there)."""
    out = out.resolve()
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file: give a new directory")
    if out.is_dir() and not (out / MARKER).is_file() and any(out.iterdir()):
        raise FileExistsError(f"--out {out} is not empty and was not created by drsta demo, which replaces files "
                              "in its output: give a new or empty directory")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("Output of drsta demo: the demo may delete and replace anything in this directory.\n")
    return out


def remove_inside(root: Path, path: Path) -> None:
    """Delete `path` (a directory of the demo's output), after checking that it really lies inside `root`."""
    if path.is_symlink() or not path.resolve().is_relative_to(root):
        raise ValueError(f"{path} is a link or lies outside {root}: remove it yourself if it is safe to")
    shutil.rmtree(path, ignore_errors=True)


def report(lines: list[str], out: Path, seconds: float) -> None:
    """Print the results (also written to OUT/results.md)."""
    (out / "results.md").write_text("\n".join(lines) + "\n")
    step(f"results ({seconds / 60:.1f} min; also in {out / 'results.md'})")
    print("\n".join(lines), flush=True)


def results_table(
    summary: dict[str, Any], pulled: dict[str, Any], result: Any, out: Path, uri: str, experiment: str
) -> list[str]:
    """The sweep's trials, the champion's re-evaluation, the figures' paths and the MLflow UI command."""
    rows = summary["trials"]
    keys = [key for key in rows[0] if "." in key] if rows else []
    header = ["trial", *[key.split(".")[-1] for key in keys], "epochs", "rank-1", "mAP", ""]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        values = [f"{row[key]:.3g}" if isinstance(row[key], float) else str(row[key]) for key in keys]
        score = ["-", "-"] if row["mAP"] is None else [f"{row['rank1']:.1%}", f"{row['mAP']:.1%}"]
        mark = "best" if row["best"] else ("failed" if row["error"] else "")
        lines.append("| " + " | ".join([str(row["trial"]), *values, str(row["epochs"]), *score, mark]) + " |")
    best_runs = [f"{SWEEP}-{row['trial']}" for row in rows if row["best"]]
    client = mlflow.MlflowClient(uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    promotion = summary.get("promotion") or {}
    verdict = "became champion" if promotion.get("promoted") else "did not beat the champion"
    lines += [
        "",
        f"best trial → models:/drsta/{summary.get('model_version')} ({verdict}); champion: {pulled['model_uri']}",
        f"champion, pulled to {out / 'champion'} and re-evaluated: rank-1 {result.cmc[0]:.1%}, "
        f"mAP {result.mAP:.1%} ({result.num_valid_queries} queries)",
        "figures (the sweep, the best trial):",
        *[f"  {path}" for path in figures(client, experiment_id, best_runs)],
        f"MLflow UI: mlflow ui --backend-store-uri {uri} --port 5000",
        f"  then open {ui_address(experiment_id)}",
    ]
    return lines


def claims_table(claims: dict[str, float], num_models: int) -> list[str]:
    """The champion's claim metrics (`pipelines.evaluate.evaluate_with_claims`) against CLAIM_GOALS, as a table;
    a claim that could not be measured (no ground truth in the data, no degraded frame) shows "n/a"."""
    lines = [
        "",
        "the paper's claims, measured on the champion (drsta.claims; the goals are ours):",
        "| metric | value | goal | met | what it measures |",
        "|---|---|---|---|---|",
    ]
    for key, goal in CLAIM_GOALS.items():
        value = claims.get(key)
        target, met = "-", ""
        if goal is not None:
            comparison, threshold = goal
            threshold = float(min(num_models, len(PARTS))) if threshold is None else threshold
            target = f"{comparison} {threshold:g}"
            met = "" if value is None else ("yes" if _COMPARE[comparison](float(value), threshold) else "no")
        shown = "n/a" if value is None else f"{value:.3g}"
        lines.append(f"| {key} | {shown} | {target} | {met} | {CLAIMS[key]} |")
    if not CLAIM_GOALS.keys() <= claims.keys():
        lines.append("n/a: not measured (no ground truth in the data, or no degraded frame among the evaluated clips)")
    return lines


def ui_address(experiment_id: str, port: int = 5000) -> str:
    """The demo's experiment in `mlflow ui`, opened on its runs: MLflow 3.17's UI opens any experiment in its GenAI
    view (traces, sessions) unless the address chooses the model-training workflow."""
    return f"http://127.0.0.1:{port}/#/experiments/{experiment_id}?workflowType=machine_learning"


def figures(client: mlflow.MlflowClient, experiment_id: str, trial_runs: list[str]) -> list[Path]:
    """The PNG figures of the sweep's parent run and of the named trial runs (local artifact store)."""
    runs = client.search_runs([experiment_id], f"tags.drsta_sweep = '{SWEEP}'")
    runs += [run for name in trial_runs
             for run in client.search_runs([experiment_id], f"attributes.run_name = '{name}'")]  # fmt: skip
    return [
        path
        for run in runs
        for path in sorted(Path(run.info.artifact_uri.removeprefix("file://")).glob("figures/*.png"))
    ]


def run(args: argparse.Namespace) -> None:
    run_demo(args.out, args.space, args.train_ids, args.test_ids, parse_settings(args.set))


if __name__ == "__main__":
    from pipelines.cli import main

    main(["demo", *sys.argv[1:]])
