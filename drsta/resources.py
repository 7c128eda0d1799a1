"""The YAML files that ship inside the package: experiment configs and Tune search spaces.

They live in `drsta/configs/` and `drsta/tune_spaces/` (package data, so a plain `pip install` has them), and are
found by name from anywhere: `--config paper` is `drsta/configs/paper.yaml`, `--space demo` is
`drsta/tune_spaces/demo.yaml`. A path to an existing file always wins over a name, so a config of your own is
given by its path.

The two directories are siblings: the spaces' `base_config: ../configs/X.yaml` lines rely on it.
"""

from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).parent / "configs"
SPACE_DIR = Path(__file__).parent / "tune_spaces"


def config_names() -> list[str]:
    """The built-in experiment configs, by name (file name without `.yaml`), sorted."""
    return _names(CONFIG_DIR)


def space_names() -> list[str]:
    """The built-in search spaces, by name (file name without `.yaml`), sorted."""
    return _names(SPACE_DIR)


def resolve_config(value: str | Path, relative_to: Path | None = None) -> Path:
    """The experiment config file that `value` names: a path to an existing file, else a built-in config's name.

    Args:
        value: a path (`my/run.yaml`) or a built-in name (`paper` or `paper.yaml`, see `config_names`).
        relative_to: the directory a relative path is taken from (default: the working directory).

    Raises:
        FileNotFoundError: `value` is neither; the message lists the built-in names.
    """
    return _resolve(value, relative_to, CONFIG_DIR, "config")


def resolve_space(value: str | Path, relative_to: Path | None = None) -> Path:
    """The search space file that `value` names: a path to an existing file, else a built-in space's name.

    Args:
        value: a path (`my/sweep.yaml`) or a built-in name (`demo` or `demo.yaml`, see `space_names`).
        relative_to: the directory a relative path is taken from (default: the working directory).

    Raises:
        FileNotFoundError: `value` is neither; the message lists the built-in names.
    """
    return _resolve(value, relative_to, SPACE_DIR, "search space")


def _names(directory: Path) -> list[str]:
    return sorted(path.stem for path in directory.glob("*.yaml"))


def _resolve(value: str | Path, relative_to: Path | None, directory: Path, kind: str) -> Path:
    path = Path(value)
    candidate = path if relative_to is None else relative_to / path
    if candidate.is_file():
        return candidate
    names = _names(directory)
    # A bare name (no directory part; `.yaml` optional) is looked up among the built-in files.
    name = path.stem if path.suffix == ".yaml" else path.name
    if len(path.parts) == 1 and name in names:
        return directory / f"{name}.yaml"
    where = "" if relative_to is None else f" (relative to {relative_to}: {candidate})"
    problem = "is a directory, not a file" if candidate.is_dir() else "is not a file"
    # A path to a built-in file that is not there (e.g. `configs/paper.yaml`, where the repository used to keep it).
    hint = f"; {name!r} is the built-in {name}.yaml" if name in names else ""
    raise FileNotFoundError(
        f"{value} not found: it {problem}{where}, nor the name of a built-in {kind}; "
        f"give a path or one of these names: {', '.join(names)}{hint}"
    )
