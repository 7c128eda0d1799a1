"""The `drsta` command: parse (`pipelines.commands`), then import and run the one subcommand asked for.

Errors are one line, `drsta CMD: error: ...`, never a traceback; the exit status (`drsta --help`) says whether
the usage was bad (2) or the work failed (1).
"""

from __future__ import annotations

import importlib
import logging
import os

from pipelines.commands import COMMANDS, VERBOSE_VARIABLE, WorkFailed, build_parser

# Bad usage (exit status 2): what the commands raise for a bad flag, value or file (STYLE.md rule 11).
USAGE_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Without --verbose: Ray Data's progress bars and INFO logs off, and MLflow's INFO logs (both read these in every
# process they run in, when imported or when a dataset starts).
QUIET_LIBRARIES = {
    "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
    "RAY_DATA_LOG_LEVEL": "WARNING",
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # a bar per model pulled
    "RAY_AIR_NEW_OUTPUT": "0",  # Ray Tune's banner with verbose=0 (its older output prints nothing at 0)
}


def configure_logging(level: str, verbose: bool = False) -> None:
    """drsta's loggers at `level` on stderr; every other library's at warning; Ray's own output only if verbose.

    Runs before any command module is imported: Ray Data reads its settings from the environment at import.
    """
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT, datefmt="%H:%M:%S")
    for name in ("drsta", "pipelines"):
        logging.getLogger(name).setLevel(level.upper())
    os.environ[VERBOSE_VARIABLE] = "1" if verbose else "0"
    if not verbose:
        for key, value in QUIET_LIBRARIES.items():
            os.environ.setdefault(key, value)


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.verbose)
    command = importlib.import_module(COMMANDS[args.subcommand].module)
    try:
        command.run(args)
    except WorkFailed as err:  # before USAGE_ERRORS: a WorkFailed is no ValueError, but keep the order explicit
        parser.exit(1, f"drsta {args.subcommand}: error: {err}\n")
    except USAGE_ERRORS as err:
        parser.exit(2, f"drsta {args.subcommand}: error: {err}\n")


if __name__ == "__main__":
    main()
