"""Generate the synthetic video re-id benchmark (H.264 tracklets + tracklets.csv, optionally MARS-layout JPEGs).

    drsta synth --out data/synth [--seed 0] [--train-ids 60] [--test-ids 60] [--cameras 3] [--mars-layout]

Then: drsta ingest --dataset videos --root data/synth --out data/synth-ingest
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from drsta.data.synthetic import SpecError, SyntheticSpec, generate

# Each SyntheticSpec field this command sets, and its flag: a value out of range is reported by its flag.
FLAGS = {
    "seed": "--seed",
    "num_train_ids": "--train-ids",
    "num_test_ids": "--test-ids",
    "num_cameras": "--cameras",
    "tracklets_per_id_per_camera": "--tracklets-per-camera",
    "min_frames": "--min-frames",
    "max_frames": "--max-frames",
    "height": "--height",
    "width": "--width",
    "gop": "--gop",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = SyntheticSpec()
    parser.add_argument("--out", type=Path, required=True, help="output directory (new or empty)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--train-ids", type=int, default=defaults.num_train_ids, help="training identities")
    parser.add_argument("--test-ids", type=int, default=defaults.num_test_ids, help="test identities")
    parser.add_argument("--cameras", type=int, default=defaults.num_cameras)
    parser.add_argument("--tracklets-per-camera", type=int, default=defaults.tracklets_per_id_per_camera)
    parser.add_argument("--min-frames", type=int, default=defaults.min_frames)
    parser.add_argument("--max-frames", type=int, default=defaults.max_frames)
    parser.add_argument("--height", type=int, default=defaults.height)
    parser.add_argument("--width", type=int, default=defaults.width)
    parser.add_argument("--gop", type=int, default=defaults.gop, help="H.264 keyframe interval, in frames")
    parser.add_argument("--mars-layout", action="store_true", help="also write MARS-layout JPEG frame folders")


def spec_from_args(args: argparse.Namespace) -> SyntheticSpec:
    """The spec the flags describe; a value out of range is a ValueError naming its flag."""
    values = {field: getattr(args, flag.removeprefix("--").replace("-", "_")) for field, flag in FLAGS.items()}
    try:
        return SyntheticSpec(**values)
    except SpecError as err:
        flag = " + ".join(FLAGS.get(field, field) for field in err.field.split(" + "))
        raise ValueError(f"{flag} must be {_flags_in(err.expected)}, got {err.value!r}") from None


def _flags_in(text: str) -> str:
    """`text` with SyntheticSpec field names replaced by their flags (only names with "_": "width" is a word too)."""
    return re.sub(r"\b[a-z]+_[a-z_]+\b", lambda match: FLAGS.get(match[0], match[0]), text)


def run(args: argparse.Namespace) -> None:
    spec = spec_from_args(args)
    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done == total or done % max(1, total // 20) == 0:
            print(f"synth: {done}/{total} tracklets ({time.perf_counter() - start:.0f} s)", flush=True)

    out = generate(spec, args.out, mars_layout=args.mars_layout, progress=progress)
    print(f"synth: wrote {out} (tracklets.csv, videos/{', mars/' if args.mars_layout else ''})")


if __name__ == "__main__":
    from pipelines.cli import main

    main(["synth", *sys.argv[1:]])
