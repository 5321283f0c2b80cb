"""Task specifications read from ``sim/tasks/*.yaml`` and the registry of task names."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any, Literal

from wmil_core.config import load_yaml
from wmil_core.paths import tasks_dir

Family = Literal["dmc", "jaco", "myo"]
ObsMode = Literal["state", "pixels", "pixels+joints"]
OBS_MODES: tuple[str, ...] = ("state", "pixels", "pixels+joints")
SuccessRule = Literal["none", "final_reward", "solved"]


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """Everything needed to build one task's environment.

    ``joints`` selects the robot joints published as ``joints`` (positions then velocities):
    ``"actuated"`` (joints driven by an actuator, in model order), ``"all"`` (every hinge or
    slide joint), a list of joint names, or ``{"exclude": [names]}`` (all but those).
    ``features`` lists simulator observation keys concatenated into ``features`` (``"a - b"``:
    the difference of two observations of one shape), or ``"all"``.
    """

    name: str  # registry name, e.g. "dmc/cartpole-swingup"
    family: Family
    env_id: str  # simulator's own id: "cartpole:swingup", "reach_site_features", "myoHand...-v0"
    joints: Any = "actuated"
    features: Any = "all"
    action_repeat: int = 1  # control steps per agent step
    image_size: int = 64  # pixels (square)
    frames: int = 3  # frames stacked in `image`
    camera: int | str = 0
    modes: tuple[str, ...] = OBS_MODES
    success: SuccessRule = "none"
    expert: str | None = None
    # {rotation: {joint: <hinge>, vectors: [<feature keys>], points: [...]},
    #  mirror: {joints: [<hinges>]}}: see wmil_core.symmetry
    symmetry: Any = None
    # {<actuator name>: <action in [-1, 1]>}: actuators the task holds at a fixed command
    # (a reach holds the Jaco's fingers still); the agent's actions are the other actuators
    hold_actions: Any = None
    # {target: <feature key>, achieved: <feature key>, min_distance: <m>}: the goal the task
    # rewards and the feature that reaches it, for hindsight goals (wmil_core.hindsight)
    goal: Any = None
    # joint: the actions drive the actuators (scaled to their ranges); cartesian (Jaco only):
    # the actions are the hand's pinch-site velocity, world frame, up to VMAX m/s per axis
    # (wmil_core.tasks.cartesian)
    controller: str = "joint"

    def __post_init__(self) -> None:
        if self.family not in ("dmc", "jaco", "myo"):
            raise ValueError(f"{self.name}: family must be dmc, jaco or myo, got {self.family!r}")
        if self.action_repeat < 1:
            raise ValueError(f"{self.name}: action_repeat must be >= 1, got {self.action_repeat}")
        if not 8 <= self.image_size <= 1024:
            raise ValueError(f"{self.name}: image_size must be in [8, 1024], got {self.image_size}")
        if self.frames < 1:
            raise ValueError(f"{self.name}: frames must be >= 1, got {self.frames}")
        for mode in self.modes:
            if mode not in OBS_MODES:
                raise ValueError(f"{self.name}: unknown observation mode {mode!r}")
        if self.success not in ("none", "final_reward", "solved"):
            raise ValueError(f"{self.name}: success must be none, final_reward or solved")
        j = self.joints
        ok = (
            j in ("actuated", "all")
            or (isinstance(j, (list, tuple)) and all(isinstance(n, str) for n in j))
            or (isinstance(j, dict) and set(j) == {"exclude"})
        )
        if not ok:
            raise ValueError(
                f"{self.name}: joints must be actuated, all, a list or {{exclude: [...]}}"
            )
        f = self.features
        names_ok = isinstance(f, (list, tuple)) and all(isinstance(n, str) for n in f)
        if not (f == "all" or names_ok):
            raise ValueError(f"{self.name}: features must be 'all' or a list of observation keys")
        hold = self.hold_actions
        if hold is not None and not (
                isinstance(hold, dict) and hold
                and all(isinstance(k, str) for k in hold)
                and all(isinstance(v, (int, float)) and -1.0 <= v <= 1.0 for v in hold.values())):
            raise ValueError(f"{self.name}: hold_actions must map actuator names to actions "
                             f"in [-1, 1]")
        if self.controller not in ("joint", "cartesian"):
            raise ValueError(f"{self.name}: controller must be joint or cartesian, got "
                             f"{self.controller!r}")
        if self.controller == "cartesian" and self.family != "jaco":
            raise ValueError(f"{self.name}: controller cartesian drives a Jaco arm; this task "
                             f"is {self.family}")
        goal = self.goal
        if goal is not None and not (
                isinstance(goal, dict) and set(goal) == {"target", "achieved", "min_distance"}
                and isinstance(goal["target"], str) and isinstance(goal["achieved"], str)
                and goal["target"] != goal["achieved"]
                and isinstance(goal["min_distance"], (int, float)) and goal["min_distance"] >= 0):
            raise ValueError(f"{self.name}: goal must be {{target: <feature key>, achieved: "
                             f"<another feature key>, min_distance: <metres >= 0>}}")
        sym = self.symmetry
        if sym is not None:
            one = isinstance(sym, dict) and "rotation" in sym and set(sym) <= {"rotation",
                                                                             "mirror"}
            rot = sym["rotation"] if one else None
            keys_ok = isinstance(rot, dict) and {"joint"} <= set(rot) <= {
                "joint", "vectors", "points", "max_angle"}
            lists = [rot.get(k, []) for k in ("vectors", "points")] if keys_ok else []
            angle = rot.get("max_angle", 1.0) if keys_ok else None
            if not (keys_ok and isinstance(rot["joint"], str)
                    and isinstance(angle, (int, float)) and angle > 0
                    and all(isinstance(v, list) for v in lists) and any(lists)
                    and all(isinstance(k, str) for v in lists for k in v)):
                raise ValueError(f"{self.name}: symmetry must be {{rotation: {{joint: <name>, "
                                 f"vectors: [<feature keys>], points: [<feature keys>], "
                                 f"max_angle: <radians > 0>}}}}")
            mirror = sym.get("mirror")
            if mirror is not None and not (
                    isinstance(mirror, dict) and set(mirror) == {"joints"}
                    and isinstance(mirror["joints"], list) and mirror["joints"]
                    and all(isinstance(n, str) for n in mirror["joints"])):
                raise ValueError(f"{self.name}: symmetry mirror must be {{joints: [<hinge "
                                 f"names>]}}")


_FIELDS = {f.name for f in dataclasses.fields(TaskSpec)} - {"name", "family", "env_id"}


def _make_spec(
    family: str, short: str, env_id: str, settings: dict[str, Any], src: Path
) -> TaskSpec:
    unknown = sorted(set(settings) - _FIELDS - {"env_id"})
    if unknown:
        raise ValueError(f"{src}: task {short}: unknown setting {unknown[0]!r}")
    values = {k: v for k, v in settings.items() if k != "env_id"}
    if "modes" in values:
        values["modes"] = tuple(values["modes"])
    if isinstance(values.get("joints"), list):
        values["joints"] = tuple(values["joints"])
    if isinstance(values.get("features"), list):
        values["features"] = tuple(values["features"])
    return TaskSpec(name=f"{family}/{short}", family=family, env_id=env_id, **values)


def _dmc_all() -> list[tuple[str, str]]:
    from dm_control import suite

    return [(d, t) for d, t in suite.ALL_TASKS]


def load_task_file(path: Path) -> dict[str, TaskSpec]:
    """Parse one task YAML file into specs keyed by full task name."""
    doc = load_yaml(path)
    if not isinstance(doc, dict) or "family" not in doc:
        raise ValueError(f"{path}: a task file needs a mapping with a 'family' key")
    family = doc["family"]
    defaults = dict(doc.get("defaults") or {})
    tasks = dict(doc.get("tasks") or {})
    specs: dict[str, TaskSpec] = {}
    if family == "dmc" and doc.get("register_all"):
        for domain, task in _dmc_all():
            short = f"{domain}-{task}".replace("_", "-")
            tasks.setdefault(short, {})
    for short, settings in tasks.items():
        settings = {**defaults, **(settings or {})}
        if family == "dmc":
            env_id = settings.get("env_id") or _dmc_env_id(short)
        else:
            env_id = settings.get("env_id")
            if not env_id:
                raise ValueError(f"{path}: task {short}: env_id is required for family {family}")
        specs[f"{family}/{short}"] = _make_spec(family, short, env_id, settings, path)
    return specs


@functools.cache
def _dmc_ids() -> dict[str, str]:
    return {f"{d}-{t}".replace("_", "-"): f"{d}:{t}" for d, t in _dmc_all()}


def _dmc_env_id(short: str) -> str:
    try:
        return _dmc_ids()[short]
    except KeyError:
        raise ValueError(f"dmc/{short}: not a dm_control suite task") from None


@functools.cache
def _registry(directory: str) -> dict[str, TaskSpec]:
    specs: dict[str, TaskSpec] = {}
    files = sorted(Path(directory).glob("*.yaml"))
    if not files:
        raise ValueError(f"{directory}: no task files (*.yaml)")
    for path in files:
        specs.update(load_task_file(path))
    return specs


def registry(directory: str | Path | None = None) -> dict[str, TaskSpec]:
    """All registered tasks, keyed by name, from ``sim/tasks/*.yaml``."""
    return dict(_registry(str(directory or tasks_dir())))


def get_task(name: str) -> TaskSpec:
    """The spec of task ``name``; an unknown name raises ValueError listing close matches."""
    specs = registry()
    if name in specs:
        return specs[name]
    import difflib

    close = difflib.get_close_matches(name, specs, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else " (see `wmil tasks`)"
    raise ValueError(f"unknown task {name!r}{hint}")
