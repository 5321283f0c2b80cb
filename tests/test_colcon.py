"""ros2_ws builds with colcon, and the install tree holds what the launch file needs."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_workspace_links_the_package():
    link = ROOT / "ros2_ws" / "src" / "wmil"
    assert link.is_symlink() and link.resolve() == ROOT


def test_colcon_build_installs_executables_launch_config_and_data(tmp_path):
    colcon = shutil.which("colcon", path=str(Path(sys.executable).parent))
    if colcon is None:
        pytest.fail("colcon is not installed (colcon-common-extensions is in requirements.txt)")
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "wmil").symlink_to(ROOT)
    proc = subprocess.run([colcon, "build", "--symlink-install"], cwd=ws, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    prefix = ws / "install" / "wmil"
    for exe in ("planner_node", "sim_node", "learner_node", "wmil"):
        assert (prefix / "lib" / "wmil" / exe).is_file(), exe
    share = prefix / "share" / "wmil"
    assert (share / "launch" / "planner.launch.py").exists()
    assert (share / "config" / "wmil.yaml").exists()
    assert (share / "package.xml").exists()
    assert (share / "sim" / "tasks" / "dmc.yaml").exists()
    assert (share / "models" / "README.md").exists()
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "wmil").exists()
    assert (ws / "install" / "setup.bash").exists()
