"""Simulation tasks: the YAML registry and one gymnasium interface over every simulator."""

from wmil_core.tasks.env import WmilEnv, make_env
from wmil_core.tasks.spec import OBS_MODES, TaskSpec, get_task, registry

__all__ = ["OBS_MODES", "TaskSpec", "WmilEnv", "get_task", "make_env", "registry"]
