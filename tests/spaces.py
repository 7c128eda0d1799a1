"""Built-in search spaces changed for a test, written where the test can pass them as --space."""

from pathlib import Path
from typing import Any

import yaml

from drsta.resources import SPACE_DIR

SMOKE = SPACE_DIR / "smoke.yaml"


def smoke_space(directory: Path, overrides: dict[str, Any] | None = None, **fields: Any) -> Path:
    """The smoke space with `fields` replaced and `overrides` added to its config overrides, as
    DIRECTORY/space.yaml (its base config named by absolute path, so it resolves from there)."""
    space = yaml.safe_load(SMOKE.read_text())
    space |= {"base_config": str((SMOKE.parent / space["base_config"]).resolve())} | fields
    space["overrides"] |= overrides or {}
    path = directory / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    return path
