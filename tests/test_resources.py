"""The built-in configs and search spaces: found by name from any directory, a path to an existing file wins, and
anything else is refused with the built-in names."""

import re
from pathlib import Path

import pytest

from drsta.config import ExperimentConfig
from drsta.resources import CONFIG_DIR, SPACE_DIR, config_names, resolve_config, resolve_space, space_names
from drsta.search_space import SearchSpace


def test_the_built_in_files_are_in_the_package():
    package = Path(__file__).parents[1] / "drsta"
    assert (package / "configs", package / "tune_spaces") == (CONFIG_DIR, SPACE_DIR)
    assert {"default", "paper", "authors_code", "synthetic_cpu", "tiny"} <= set(config_names())
    assert {"default", "demo", "smoke", "ablation", "paper"} <= set(space_names())
    assert config_names() == sorted(config_names()) and space_names() == sorted(space_names())


@pytest.mark.parametrize("value", ["paper", "paper.yaml", Path("paper")])
def test_a_bare_name_is_the_built_in_config(tmp_path, monkeypatch, value):
    monkeypatch.chdir(tmp_path)  # away from the repository: nothing may depend on the working directory
    assert resolve_config(value) == CONFIG_DIR / "paper.yaml"
    assert ExperimentConfig.from_yaml(value) == ExperimentConfig.from_yaml(CONFIG_DIR / "paper.yaml")


@pytest.mark.parametrize("value", ["demo", "demo.yaml"])
def test_a_bare_name_is_the_built_in_space(tmp_path, monkeypatch, value):
    monkeypatch.chdir(tmp_path)
    assert resolve_space(value) == SPACE_DIR / "demo.yaml"
    space, base = SearchSpace.from_yaml(value)  # its base_config (../configs/tiny.yaml) resolves in the package
    assert base == ExperimentConfig.from_yaml("tiny").with_overrides(space.overrides)


def test_an_existing_file_wins_over_a_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "paper.yaml").write_text("optim: {epochs: 3}\n")
    assert resolve_config("paper.yaml") == Path("paper.yaml")
    assert ExperimentConfig.from_yaml("paper.yaml").optim.epochs == 3
    assert resolve_config("paper") == CONFIG_DIR / "paper.yaml"  # no file named `paper` here
    assert resolve_space(tmp_path / "paper.yaml") == tmp_path / "paper.yaml"
    assert resolve_config("paper.yaml", relative_to=SPACE_DIR) == SPACE_DIR / "paper.yaml"


@pytest.mark.parametrize(
    ("resolve", "kind", "names"),
    [(resolve_config, "config", config_names), (resolve_space, "search space", space_names)],
    ids=["config", "space"],
)
@pytest.mark.parametrize("value", ["nope", "nope.yaml", "sub/nope.yaml"])
def test_an_unknown_value_is_refused_with_the_built_in_names(tmp_path, monkeypatch, resolve, kind, names, value):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        resolve(value)
    message = str(err.value)
    assert message.startswith(f"{value} not found: it is not a file, nor the name of a built-in {kind}; ")
    assert message.endswith(f"give a path or one of these names: {', '.join(names())}")


def test_a_directory_and_a_path_to_a_missing_built_in_file_are_explained(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"it is a directory, not a file"):
        resolve_config(tmp_path)
    # The repository's old layout: a path is never taken for a name, but the message gives the name.
    with pytest.raises(FileNotFoundError, match=r"give a path or one of these names: .*; 'paper' is the built-in"):
        resolve_config("configs/paper.yaml")
    with pytest.raises(FileNotFoundError, match=re.escape(f"(relative to {tmp_path}: {tmp_path / 'x.yaml'})")):
        resolve_config("x.yaml", relative_to=tmp_path)


def test_loaders_report_a_missing_file_through_the_resolver(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.yaml not found: .*one of these names: authors_code, "):
        ExperimentConfig.from_yaml(tmp_path / "nope.yaml")
    with pytest.raises(FileNotFoundError, match=r"nope\.yaml not found: .*built-in search space; .* ablation, "):
        SearchSpace.from_yaml(tmp_path / "nope.yaml")
