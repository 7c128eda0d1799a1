"""A plain (non-editable) install: the package carries its built-in configs and search spaces, and the installed
`drsta` finds them by name from any directory.

The install goes into a fresh venv in a temporary directory, offline: drsta itself is built from a copy of the
files the Dockerfile copies (so a file the package needs but pyproject.toml does not ship is missing there too),
and its dependencies, pip and setuptools are the running interpreter's, seen through a `.pth` file.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]

# Run in the new venv: where drsta was imported from, and what the built-in names resolve to.
PROBE = """
import json, drsta, pipelines
from drsta.config import ExperimentConfig
from drsta.resources import CONFIG_DIR, SPACE_DIR, resolve_config, resolve_space
from drsta.search_space import SearchSpace
ExperimentConfig.from_yaml("paper")
SearchSpace.from_yaml("demo")  # its base_config, ../configs/tiny.yaml, is found beside it
print(json.dumps({
    "drsta": drsta.__file__, "pipelines": pipelines.__file__,
    "paper": str(resolve_config("paper")), "demo": str(resolve_space("demo")),
    "configs": sorted(p.name for p in CONFIG_DIR.glob("*.yaml")),
    "spaces": sorted(p.name for p in SPACE_DIR.glob("*.yaml")),
}))
"""


def run(command: list[str | Path], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{command}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    """(venv, a directory outside the repository, the environment to run in) with drsta installed non-editable."""
    tmp = tmp_path_factory.mktemp("packaging")
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for name in ("drsta", "pipelines"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"
    venv = tmp / "venv"
    # No pip of its own (ensurepip takes a while): the running interpreter's pip is seen through the .pth file.
    run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp, env=env)
    python = venv / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(run([python, "-c", purelib], cwd=tmp, env=env).stdout.strip())
    # A path listed in a .pth file joins sys.path after the venv's own site-packages, and the .pth files inside it
    # are not run: the editable install's import hook (a .pth there) stays off, so the copy installed here wins.
    parent = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "parent_site_packages.pth").write_text("".join(f"{path}\n" for path in parent))
    # --ignore-installed: pip sees the parent's (editable) drsta and must leave it alone.
    install = ["-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--ignore-installed"]
    run([python, *install, source], cwd=tmp, env=env)
    shutil.rmtree(source)  # nothing may still point at the sources
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    return venv, elsewhere, env


@pytest.mark.integration
def test_the_installed_package_carries_the_built_in_files(installed):
    venv, elsewhere, env = installed
    found = json.loads(run([venv / "bin" / "python", "-c", PROBE], elsewhere, env).stdout)
    for key in ("drsta", "pipelines", "paper", "demo"):
        assert Path(found[key]).is_relative_to(venv), f"{key} comes from {found[key]}, not the installed copy"
    assert found["configs"] == sorted(p.name for p in (ROOT / "drsta" / "configs").glob("*.yaml"))
    assert found["spaces"] == sorted(p.name for p in (ROOT / "drsta" / "tune_spaces").glob("*.yaml"))


@pytest.mark.integration
@pytest.mark.parametrize("argv", [["demo", "--help"], ["train", "--config", "default", "--help"]], ids=" ".join)
def test_the_installed_command_runs_from_any_directory(installed, argv):
    venv, elsewhere, env = installed
    done = run([venv / "bin" / "drsta", *argv], elsewhere, env)
    assert done.stdout.startswith("usage: drsta"), done.stdout
