"""The `drsta` command: one subcommand per pipeline (more arrive with each pipeline).

drsta demo [--config configs/default.yaml]
"""

from __future__ import annotations

import argparse

from pipelines import demo, embed, evaluate, explain, ingest, jobs, models, search, submit, synth, train, tune

COMMANDS = {
    "demo": demo,
    "synth": synth,
    "ingest": ingest,
    "train": train,
    "evaluate": evaluate,
    "tune": tune,
    "models": models,
    "embed": embed,
    "search": search,
    "explain": explain,
    "submit": submit,
    "jobs": jobs,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="drsta", description="DRSTA video person re-identification on Ray")
    subcommands = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        sub = subcommands.add_parser(name, help=(module.__doc__ or "").splitlines()[0])
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        parser.exit(2, f"drsta {args.command}: error: {err}\n")


if __name__ == "__main__":
    main()
