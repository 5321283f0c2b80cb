"""Where the package's data lives, in a source checkout or an installed ament tree."""

from __future__ import annotations

import os
from pathlib import Path

_SOURCE_ROOT = Path(__file__).resolve().parent.parent


def share_dir() -> Path:
    """Directory holding ``sim/``, ``models/``, ``config/`` (``$WMIL_SHARE`` overrides)."""
    env = os.environ.get("WMIL_SHARE")
    if env:
        return Path(env)
    if (_SOURCE_ROOT / "sim" / "tasks").is_dir():
        return _SOURCE_ROOT
    try:  # installed by colcon: share/wmil
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("wmil"))
    except Exception:  # noqa: BLE001 - no ament index: fall back to the source layout
        return _SOURCE_ROOT


def tasks_dir() -> Path:
    """Directory of the task YAML files."""
    return share_dir() / "sim" / "tasks"


def models_dir() -> Path:
    """Directory of shipped model bundles and experts."""
    return share_dir() / "models"
