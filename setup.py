"""ament_python package `wmil`: the ROS 2 nodes (wmil) and the learning library (wmil_core)."""

from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "wmil"


def tree(src: str, dest: str) -> list[tuple[str, list[str]]]:
    """data_files entries that install every file below ``src`` under ``share/wmil/<dest>``."""
    entries: dict[str, list[str]] = {}
    for path in sorted(Path(src).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            target = str(Path("share", PACKAGE, dest, path.parent.relative_to(src)))
            entries.setdefault(target, []).append(str(path))
    return sorted(entries.items())


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=["wmil", "wmil.*", "wmil_core", "wmil_core.*"]),
    package_data={"wmil_core": ["py.typed"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
        ("share/" + PACKAGE + "/launch", glob("launch/*.launch.py")),
        ("share/" + PACKAGE + "/config", glob("config/*.yaml")),
        *tree("sim", "sim"),
        *tree("models", "models"),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="wmil developers",
    maintainer_email="wmil@example.com",
    description="Reward-free world-model imitation learning (IQ-MPC) for ROS 2.",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "wmil = wmil_core.cli:main",
            "planner_node = wmil.planner_node:main",
            "sim_node = wmil.sim_node:main",
            "learner_node = wmil.learner_node:main",
        ],
    },
)
