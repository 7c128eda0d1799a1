"""The `drsta` command: one subcommand per pipeline (more arrive with each pipeline).

    drsta demo [--out demo-output]

Errors are one line, `drsta CMD: error: ...`, never a traceback; the exit status (`drsta --help`) says whether
the usage was bad (2) or the work failed (1).
"""

from __future__ import annotations

import argparse

from pipelines import (
    benchmark,
    demo,
    embed,
    evaluate,
    explain,
    ingest,
    jobs,
    models,
    search,
    submit,
    synth,
    train,
    tune,
)

EPILOG = """\
exit status:
  0  done
  1  the work failed: e.g. too many tracklets failed validation (ingest: finished chunks are kept and
     a re-run resumes), inputs could not be decoded (embed), a submitted job failed (submit)
  2  bad usage: a bad flag or value, a missing or ill-formed input file, an output that already exists
     (checked before any work starts wherever possible)
"""

# The work failed (exit status 1). Checked before USAGE_ERRORS. (embed and submit exit with 1 themselves.)
WORK_FAILED: tuple[type[Exception], ...] = (ingest.TooManyBadTracklets,)
# Bad usage (exit status 2): what the commands raise for a bad flag, value or file (STYLE.md rule 11).
USAGE_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)

COMMANDS = {
    "demo": demo,
    "synth": synth,
    "ingest": ingest,
    "train": train,
    "evaluate": evaluate,
    "tune": tune,
    "benchmark": benchmark,
    "models": models,
    "embed": embed,
    "search": search,
    "explain": explain,
    "submit": submit,
    "jobs": jobs,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="drsta",
        description="DRSTA video person re-identification on Ray",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subcommands = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        sub = subcommands.add_parser(name, help=(module.__doc__ or "").splitlines()[0])
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except WORK_FAILED as err:
        parser.exit(1, f"drsta {args.command}: error: {err}\n")
    except USAGE_ERRORS as err:
        parser.exit(2, f"drsta {args.command}: error: {err}\n")


if __name__ == "__main__":
    main()
