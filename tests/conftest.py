"""Shared test settings: headless rendering, and slow tests only when WMIL_RUN_SLOW=1 (CI)."""

import os

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``slow`` unless WMIL_RUN_SLOW=1."""
    if os.environ.get("WMIL_RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow end-to-end test: set WMIL_RUN_SLOW=1 (CI does)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
