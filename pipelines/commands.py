"""The `drsta` command line's grammar: each subcommand's summary, description, examples, options and defaults; and
what the commands share with `pipelines.cli` (`WorkFailed`, the --verbose variable).

It lives apart from the commands so that `drsta --help` and `drsta CMD --help` import no torch, Ray or MLflow
(tests/test_cli.py holds it to that): `pipelines.cli` imports a command's module only to run it, and no command
imports `pipelines.cli`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from drsta.resources import config_names, space_names

ADDRESS_HELP = (
    "Ray cluster to run on: auto (the cluster `ray start` left on this host), HOST:6379 or ray://HOST:10001 "
    "(default: $RAY_ADDRESS, which a Ray job's driver gets, else a private local Ray for this command; never "
    "some other Ray instance on this host)"
)
MODEL_HELP = "models:/NAME@ALIAS, models:/NAME/VERSION, or a directory written by drsta models pull"
TRACKING_HELP = "MLflow tracking URI (default: sqlite:///mlflow.db in this directory)"
JOBS_API_DEFAULT = "http://127.0.0.1:8265"
SET_HELP = "override any config value, e.g. --set loss.diversity_weight=0 (repeatable; values are YAML)"
VERBOSE_VARIABLE = "DRSTA_VERBOSE"  # "1": Ray's own output too (pipelines.console); a local Ray inherits it
# `drsta submit` runs these on a cluster; the rest work on local files or need no cluster.
SUBMITTABLE = ("train", "tune", "benchmark", "evaluate", "ingest", "models", "embed")
# The readers of `drsta ingest --dataset` (drsta.data.datasets.READERS; tests/test_cli.py checks they agree).
DATASETS = ("duke", "ilidsvid", "mars", "prid2011", "videos")
# `drsta synth`'s defaults (drsta.data.synthetic.SyntheticSpec; tests/test_cli.py checks they agree).
SYNTH_DEFAULTS = {"seed": 0, "train_ids": 60, "test_ids": 60, "cameras": 3, "tracklets_per_camera": 1,
                  "min_frames": 16, "max_frames": 48, "height": 128, "width": 64, "gop": 12}  # fmt: skip

EPILOG = """\
exit status:
  0  done
  1  the work failed: e.g. a trial errored (tune), too many tracklets failed validation (ingest: finished
     chunks are kept and a re-run resumes), inputs could not be decoded (embed), a submitted job failed
  2  bad usage: a bad flag or value, a missing or ill-formed input file, an output that already exists
     (checked before any work starts wherever possible)

`drsta CMD --help` describes a command, with examples."""


class WorkFailed(RuntimeError):
    """The work failed though the usage was right (exit status 1): a trial errored, too many bad tracklets, ..."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples as written; each option's default shown where it has a real one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        unset = action.default is None or action.default is False or action.default in ([], argparse.SUPPRESS)
        shown = not unset and "default" not in text
        return f"{text} (default: %(default)s)" if shown and action.option_strings else text


@dataclass(frozen=True)
class Command:
    """A subcommand: where it runs (imported only then), what `drsta --help` says, and its options."""

    module: str
    summary: str
    description: str
    examples: str
    add_arguments: Callable[[argparse.ArgumentParser], None]


def parse_settings(settings: list[str]) -> dict[str, Any]:
    """`--set section.key=value` pairs as config overrides; values are read as YAML (0.1, true, null, text)."""
    overrides = {}
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or "." not in key:
            raise ValueError(f"--set {setting!r}: expected SECTION.KEY=VALUE, e.g. loss.diversity_weight=0")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def _config_help() -> str:
    return f"experiment YAML, or a built-in one: {', '.join(config_names())} (default: the built-in defaults)"


def _space_help() -> str:
    return f"search-space YAML, or a built-in one: {', '.join(space_names())}"


def _set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help=SET_HELP)


def _tracking(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tracking-uri", help=TRACKING_HELP)


def _jobs_api(parser: argparse.ArgumentParser) -> None:
    address = os.environ.get("RAY_API_SERVER_ADDRESS", JOBS_API_DEFAULT)  # shown as the default
    parser.add_argument("--address", default=address,
                        help="the cluster's dashboard (Jobs API), e.g. http://HEAD:8265")  # fmt: skip
    parser.add_argument("--token-file", type=Path, help="Ray auth token file (default: Ray's own lookup)")


def demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("demo-output"), help="where everything is written")
    parser.add_argument("--space", type=Path, default=Path("demo"), help=_space_help())
    parser.add_argument("--train-ids", type=int, default=16, help="synthetic training identities")
    parser.add_argument("--test-ids", type=int, default=12, help="synthetic test identities")
    _set(parser)


def synth_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = SYNTH_DEFAULTS
    parser.add_argument("--out", type=Path, required=True, help="output directory (new or empty)")
    parser.add_argument("--seed", type=int, default=defaults["seed"], help="the same seed writes the same bytes")
    parser.add_argument("--train-ids", type=int, default=defaults["train_ids"], help="training identities")
    parser.add_argument("--test-ids", type=int, default=defaults["test_ids"], help="test identities")
    parser.add_argument("--cameras", type=int, default=defaults["cameras"], help="cameras each identity walks past")
    parser.add_argument("--tracklets-per-camera", type=int, default=defaults["tracklets_per_camera"],
                        help="tracklets of each identity per camera")  # fmt: skip
    parser.add_argument("--min-frames", type=int, default=defaults["min_frames"], help="shortest tracklet, in frames")
    parser.add_argument("--max-frames", type=int, default=defaults["max_frames"], help="longest tracklet, in frames")
    parser.add_argument("--height", type=int, default=defaults["height"], help="frame height in pixels")
    parser.add_argument("--width", type=int, default=defaults["width"], help="frame width in pixels")
    parser.add_argument("--gop", type=int, default=defaults["gop"], help="H.264 keyframe interval, in frames")
    parser.add_argument("--mars-layout", action="store_true", help="also write MARS-layout JPEG frame folders")


def ingest_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, choices=DATASETS, help="the dataset's reader")
    parser.add_argument("--root", type=Path, required=True, help="the dataset's directory")
    parser.add_argument("--out", type=Path, required=True, help="output directory (manifest, report, quarantine)")
    parser.add_argument("--split", type=int, default=0, help="evaluation split (iLIDS-VID, PRID2011: 0-9)")
    parser.add_argument("--transcode-gop", type=int, help="re-encode frame folders as H.264 with this keyframe gap")
    parser.add_argument("--max-bad-fraction", type=float, default=0.05, help="stop past this fraction of bad ones")
    parser.add_argument("--chunk-size", type=int, default=64, help="tracklets per resumable chunk")
    parser.add_argument("--min-frames", type=int, default=1, help="quarantine tracklets shorter than this")
    outside = "videos: accept tracklets.csv paths that lead outside --root (absolute, .., symlinks)"
    parser.add_argument("--allow-outside-root", action="store_true", help=outside)
    parser.add_argument("--address", help=ADDRESS_HELP)


def train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help=_config_help())
    parser.add_argument("--manifest", type=Path, help="directory written by drsta ingest (data.manifest)")
    parser.add_argument("--num-workers", type=int, help="training workers (train.num_workers)")
    parser.add_argument("--use-gpu", action="store_true", default=None, help="one GPU per worker, NCCL, bf16")
    parser.add_argument("--epochs", type=int, help="optim.epochs")
    parser.add_argument("--name", help="run name (train.name)")
    parser.add_argument("--storage-path", help="checkpoint storage, shared on clusters (train.storage_path)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (train.tracking_uri)")
    parser.add_argument("--resume", action="store_true", help="continue the run (storage_path, name)")
    _set(parser)
    parser.add_argument("--address", help=ADDRESS_HELP)


def evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", type=Path, required=True, help="directory written by drsta ingest")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="a checkpoint directory of drsta train")
    source.add_argument("--model", help="a registered model, e.g. models:/drsta@champion or models:/drsta/3")
    _tracking(parser)
    parser.add_argument("--actors", type=int, default=1, help="embedding actors")
    parser.add_argument("--use-gpu", action="store_true", help="one GPU per embedding actor")
    _set(parser)
    parser.add_argument("--address", help=ADDRESS_HELP)


def tune_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--space", type=Path, required=True, help=_space_help())
    parser.add_argument("--manifest", type=Path, required=True, help="directory written by drsta ingest")
    parser.add_argument("--name", default="sweep", help="sweep name; with --resume, the sweep to continue")
    parser.add_argument("--resume", action="store_true", help="continue a sweep whose driver stopped")
    parser.add_argument("--num-samples", type=int, help="trials to run (default: the space's num_samples)")
    parser.add_argument("--max-concurrent", type=int, help="trials at once (default: the space's max_concurrent)")
    parser.add_argument("--searcher", choices=["optuna", "random", "grid"], help="default: the space's searcher")
    _set(parser)
    _tracking(parser)
    parser.add_argument("--storage-path", help="checkpoint and trial storage (shared on clusters)")
    parser.add_argument("--address", help=ADDRESS_HELP)


def benchmark_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, choices=["ilidsvid", "prid2011"], help="the split protocol")
    parser.add_argument("--root", type=Path, required=True, help="the dataset's directory (as for drsta ingest)")
    parser.add_argument("--out", type=Path, required=True, help="output: ingests, runs, results.md; to resume, again")
    parser.add_argument("--splits", default="all", help="'all' or split indices, e.g. 0,3,5")
    parser.add_argument("--config", type=Path, help=_config_help())
    _set(parser)
    parser.add_argument("--max-concurrent", type=int, default=2, help="splits trained at once")
    _tracking(parser)
    parser.add_argument("--address", help=ADDRESS_HELP)


def models_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, summary: str, examples: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=summary, description=summary, epilog=f"example:\n  {examples}",
                                 formatter_class=HelpFormatter)  # fmt: skip
        sub.add_argument("--name", default="drsta", help="registered model name")
        _tracking(sub)
        return sub

    action("list", "versions, aliases and mAP of a registered model", "drsta models list --name drsta")
    action("history", "every promotion of a registered model, oldest first", "drsta models history")
    pull = action("pull", "download a model (and its config) from the registry, checked safe to load",
                  "drsta models pull drsta@champion --out models/champion")  # fmt: skip
    pull.add_argument("model", help="NAME@ALIAS or NAME/VERSION, e.g. drsta@champion")
    pull.add_argument("--out", type=Path, required=True, help="directory to write the model into")
    promote = action("promote", "evaluate a version against the champion on the same data; the better one is "
                     "champion", "drsta models promote --version 7 --manifest data/synth-ingest")  # fmt: skip
    promote.add_argument("--version", type=int, required=True, help="the candidate version")
    promote.add_argument("--manifest", type=Path, required=True, help="the data both models are evaluated on")
    promote.add_argument("--address", help=ADDRESS_HELP)


def embed_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", type=Path, help="video files or folders of frames")
    parser.add_argument("--model", required=True, help=MODEL_HELP)
    parser.add_argument("--out", type=Path, required=True, help="the Parquet file to write")
    parser.add_argument("--manifest", type=Path, help="embed an ingested set instead of PATHS (keeps identities)")
    parser.add_argument("--role", default="gallery", choices=["train", "query", "gallery", "all"],
                        help="with --manifest: which tracklets")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=16, help="tracklets embedded at once")
    parser.add_argument("--cpu", action="store_true", help="stay on the CPU even when there is a GPU")
    _tracking(parser)


def search_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gallery", type=Path, required=True, help="a Parquet file written by drsta embed")
    parser.add_argument("--query", type=Path, nargs="+", required=True, help="video files or folders of frames")
    parser.add_argument("--top-k", type=int, default=10, help="gallery tracklets to show")
    parser.add_argument("--model", help=f"default: the gallery's model if it is a registry URI; {MODEL_HELP}")
    parser.add_argument("--figure", type=Path, help="also draw each query and its top-k tracklets into this image "
                        "(.png or .jpg), a row per query")  # fmt: skip
    parser.add_argument("--query-identity", type=int, nargs="+", metavar="N",
                        help="the queries' known identities, one per --query or one for all: --figure frames a "
                        "tracklet of the same identity green, another red (default: a query's identity in the "
                        "gallery when the gallery holds its path, else unknown: grey)")  # fmt: skip
    parser.add_argument("--force", action="store_true", help="overwrite --figure if it exists")
    _tracking(parser)


def explain_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, help="a video file or a folder of frames")
    parser.add_argument("--model", required=True, help=MODEL_HELP)
    parser.add_argument("--out", type=Path, required=True, help="the image to write (.png or .jpg)")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    parser.add_argument("--max-frames", type=int, default=4, help="frames shown in Fig. 1")
    _tracking(parser)


def submit_arguments(parser: argparse.ArgumentParser) -> None:
    _jobs_api(parser)
    parser.add_argument("--image", help="run in this container image instead of uploading the project")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="job environment variable")
    parser.add_argument("--submission-id", help="the job's id (default: Ray chooses one)")
    parser.add_argument("--no-wait", action="store_true", help="print the job id and return at once")
    forward = ("send the tracking URI's user:password (else MLFLOW_TRACKING_USERNAME / _PASSWORD / _TOKEN) as the "
               "job's environment variables; without it, a tracking URI with credentials is refused")  # fmt: skip
    parser.add_argument("--forward-credentials", action="store_true", help=forward)
    parser.add_argument("command", choices=SUBMITTABLE, help="the drsta command to run on the cluster")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")


def jobs_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    examples = {"list": "drsta jobs list --address http://HEAD:8265", "logs": "drsta jobs logs JOB_ID --follow",
                "stop": "drsta jobs stop JOB_ID"}  # fmt: skip
    summaries = {"list": "every job on the cluster, oldest first", "logs": "print a job's logs",
                 "stop": "stop a running job"}  # fmt: skip
    for name, summary in summaries.items():
        sub = actions.add_parser(name, help=summary, description=summary, epilog=f"example:\n  {examples[name]}",
                                 formatter_class=HelpFormatter)  # fmt: skip
        _jobs_api(sub)
        if name != "list":
            sub.add_argument("job_id", help="the job's submission id (see drsta jobs list)")
        if name == "logs":
            sub.add_argument("--follow", action="store_true", help="keep printing until the job ends")


COMMANDS: dict[str, Command] = {
    "demo": Command(
        "pipelines.demo",
        "the whole pipeline on this machine: synthesize, ingest, sweep, champion, evaluate",
        "Synthetic videos → Ray Data ingest → a Ray Tune sweep over K, σ and λ (each trial a 2-worker Ray Train\n"
        "run) → the best model registered as champion in MLflow → pulled and evaluated → results.md.\n"
        "Everything goes under --out; re-running continues what is there.",
        "drsta demo\ndrsta demo --out /tmp/demo --set optim.epochs=4",
        demo_arguments,
    ),
    "synth": Command(
        "pipelines.synth",
        "generate the synthetic video re-id benchmark, with per-frame ground truth",
        "Renders H.264 tracklets of synthetic people walking past cameras, with tracklets.csv and\n"
        "annotations.parquet (person and part boxes, occlusion, bad frames). The same seed writes the same bytes.",
        "drsta synth --out data/synth\ndrsta ingest --dataset videos --root data/synth --out data/synth-ingest",
        synth_arguments,
    ),
    "ingest": Command(
        "pipelines.ingest",
        "validate a dataset's tracklets on Ray Data and write the Parquet manifest",
        "Decodes and checks every tracklet in parallel; bad ones are quarantined with their reason. Resumable:\n"
        "finished chunks are kept, a re-run skips them. Past --max-bad-fraction it stops with exit status 1.",
        "drsta ingest --dataset videos --root data/synth --out data/synth-ingest\n"
        "drsta ingest --dataset mars --root /data/MARS --out /data/mars-ingest --address auto",
        ingest_arguments,
    ),
    "train": Command(
        "pipelines.train_command",
        "train DRSTA with Ray Train: DDP workers, checkpoints, evaluation, MLflow tracking",
        "A run is (train.storage_path, train.name): --resume continues it from its latest checkpoint, and a lost\n"
        "worker or node restarts from there. Values come from the defaults, then --config, then --set, then the\n"
        "named flags.",
        "drsta train --config synthetic_cpu --manifest data/synth-ingest\n"
        "drsta train --config paper --manifest /data/mars-ingest --use-gpu --num-workers 8 --address auto\n"
        "drsta train --config synthetic_cpu --manifest data/synth-ingest --set loss.diversity_weight=0",
        train_arguments,
    ),
    "evaluate": Command(
        "pipelines.evaluate",
        "CMC, mAP and the paper's attention claims of a checkpoint or a registered model",
        "Embeds every query and gallery tracklet on Ray (an actor pool holding the exported model) and scores\n"
        "them by the standard protocol; where the manifest has ground truth, also the Fig. 1 / Fig. 2 claims.",
        "drsta evaluate --manifest data/synth-ingest --model models:/drsta@champion\n"
        "drsta evaluate --manifest data/synth-ingest --checkpoint ray_results/run-1/checkpoint_000009",
        evaluate_arguments,
    ),
    "tune": Command(
        "pipelines.tune",
        "sweep K, σ, λ (or any config value) with Ray Tune; the best model may become champion",
        "Each trial is a distributed training run; ASHA stops weak ones. MLflow gets a parent run per sweep and a\n"
        "child run per trial. The best model is registered and promoted only if it beats the current champion.\n"
        "Exit status 1 if any trial errored (the others' results are still recorded).",
        "drsta tune --space default --manifest data/synth-ingest --num-samples 16\n"
        "drsta tune --space default --manifest data/synth-ingest --name sweep-1 --resume",
        tune_arguments,
    ),
    "benchmark": Command(
        "pipelines.benchmark",
        "the iLIDS-VID / PRID2011 protocol: 10 splits trained in parallel, mean ± std CMC and mAP",
        "Each split is ingested, trained and scored as its own run (one Ray Tune grid over the split index);\n"
        "OUT/results.md holds the table. Re-running the same command resumes.",
        "drsta benchmark --dataset ilidsvid --root data/iLIDS-VID --out bench/ilidsvid --config paper",
        benchmark_arguments,
    ),
    "models": Command(
        "pipelines.models",
        "the model registry: list, history, pull, promote",
        "Promotion evaluates the candidate and the champion on the same data and moves the champion alias only\n"
        "to a better model (the old one keeps `previous`); promotions never interleave.",
        "drsta models list\ndrsta models pull drsta@champion --out models/champion",
        models_arguments,
    ),
    "embed": Command(
        "pipelines.embed",
        "embed new footage (videos or frame folders) with a trained model into a Parquet file",
        "Each input gives one K·D descriptor from its test-time clip. With --manifest, an ingested set is\n"
        "embedded with its identities, e.g. as a gallery for drsta search.",
        "drsta embed --model models:/drsta@champion videos/a.mp4 frames/b/ --out gallery.parquet\n"
        "drsta embed --model models/champion --manifest data/synth-ingest --role gallery --out gallery.parquet",
        embed_arguments,
    ),
    "search": Command(
        "pipelines.search",
        "find a person: rank a gallery written by drsta embed against query footage",
        "The query is embedded with the gallery's model and ranked by distance between L2-normalised\n"
        "descriptors; prints the top-k tracklets and, when known, the identities. --figure draws them too, each\n"
        "tracklet framed green (the query's identity), red (another) or grey (unknown).",
        "drsta search --gallery gallery.parquet --query clip.mp4 --top-k 5\n"
        "drsta search --gallery gallery.parquet --query clip.mp4 --figure ranks.png --query-identity 12",
        search_arguments,
    ),
    "explain": Command(
        "pipelines.explain",
        "draw what the model looks at in a tracklet (the paper's Fig. 1 and Fig. 2)",
        "Fig. 1: each frame beside the receptive fields of the K spatial attention models.\n"
        "Fig. 2: the frames with their temporal attention weights, the heaviest framed in red.",
        "drsta explain --model models:/drsta@champion clip.mp4 --out explain.png",
        explain_arguments,
    ),
    "submit": Command(
        "pipelines.submit",
        "run a drsta command on a Ray cluster as a job, and follow it",
        "The job runs the command with this project as its working_dir (or inside --image). Credentials in a\n"
        "tracking URI are refused unless --forward-credentials. Exit status 1 if the job fails.",
        "drsta submit --address http://HEAD:8265 train --config synthetic_cpu --manifest /data/ingest\n"
        "drsta submit --address http://HEAD:8265 --no-wait tune --space default --manifest /data/ingest",
        submit_arguments,
    ),
    "jobs": Command(
        "pipelines.jobs",
        "jobs on a Ray cluster: list, logs, stop",
        "What it prints (entrypoints, logs) has the user:password of any URI removed.",
        "drsta jobs list\ndrsta jobs logs raysubmit_123 --follow",
        jobs_arguments,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The whole `drsta` grammar; nothing here imports a command's module."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("drsta")
    except PackageNotFoundError:  # run from a source tree that is not installed
        installed = "unknown (not installed)"
    parser = argparse.ArgumentParser(prog="drsta", description="DRSTA video person re-identification on Ray",
                                     epilog=EPILOG, formatter_class=HelpFormatter)  # fmt: skip
    parser.add_argument("--version", action="version", version=f"drsta {installed}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                        help="drsta's own log messages (Ray, MLflow and the others log warnings only)")  # fmt: skip
    parser.add_argument("--verbose", action="store_true", help="Ray's own logs and progress bars too")
    # dest "subcommand": `submit` has a `command` of its own (the command to run on the cluster)
    subcommands = parser.add_subparsers(dest="subcommand", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        examples = "\n".join(f"  {line}" for line in command.examples.splitlines())
        sub = subcommands.add_parser(name, help=command.summary, description=f"{command.summary}.\n\n"
                                     f"{command.description}", epilog=f"examples:\n{examples}",
                                     formatter_class=HelpFormatter)  # fmt: skip
        command.add_arguments(sub)
    return parser
