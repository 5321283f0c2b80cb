"""wmil_core: reward-free world-model imitation learning (IQ-MPC) in MuJoCo, without ROS."""

import os

# Headless rendering by default; a user's own MUJOCO_GL setting wins.
os.environ.setdefault("MUJOCO_GL", "egl")

__version__ = "0.1.0"
