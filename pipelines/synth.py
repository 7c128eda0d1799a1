"""Generate the synthetic video re-id benchmark (H.264 tracklets + tracklets.csv, optionally MARS-layout JPEGs).

Then: drsta ingest --dataset videos --root data/synth --out data/synth-ingest
"""

from __future__ import annotations

import argparse
import re
import sys
import time

from drsta.data.synthetic import SpecError, SyntheticSpec, generate
from pipelines.console import progress_bar

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
    with progress_bar("synth", total=0, unit="tracklets") as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        out = generate(spec, args.out, mars_layout=args.mars_layout, progress=progress)
    print(f"synth: wrote {out} in {time.perf_counter() - start:.0f} s "
          f"(tracklets.csv, annotations.parquet, videos/{', mars/' if args.mars_layout else ''})")  # fmt: skip


if __name__ == "__main__":
    from pipelines.cli import main

    main(["synth", *sys.argv[1:]])
