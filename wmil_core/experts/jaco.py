"""Jaco reach expert: Cartesian control of the tool centre point toward the target.

Each step the TCP (the hand's pinch site, which the task rewards) is driven toward the target
at a speed proportional to the distance (capped), while the hand keeps the downward orientation
it starts the episode in (:class:`wmil_core.tasks.cartesian.CartesianVelocity`: damped least
squares of the site Jacobian into arm joint velocities, which the arm's velocity actuators
track). On a task with ``controller: cartesian`` the expert's action is that TCP velocity
itself. The fingers are kept still. A prop target (the duplo brick, which rests on the table)
is approached to a point just above it, inside the 5 cm success radius, so the fingers do not
push it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from wmil_core.experts.base import register_expert
from wmil_core.tasks.cartesian import VMAX, CartesianVelocity

if TYPE_CHECKING:
    from wmil_core.tasks.env import WmilEnv

JACO_TASKS = ("jaco/reach-site", "jaco/reach-duplo", "jaco/reach-site-cartesian")

_KP = 4.0  # 1/s, position error -> TCP speed
_PROP_HOVER = 0.035  # m above a prop's origin (its base) to aim the TCP at


class JacoReach:
    """Cartesian reach with damped least squares over the 6 arm joints of the Jaco."""

    name = "jaco-reach"

    def __init__(self, hover: float = 0.0) -> None:
        self.hover = float(hover)

    def _find_target(self, env: WmilEnv) -> tuple[np.ndarray | None, int]:
        """(position table, row) of the target the task rewards; (None, -1) if not found."""
        task: Any = getattr(env.backend.env, "task", None)
        target = getattr(task, "_target", None)
        if target is None:
            return None, -1
        row = int(env.backend.physics.bind(target).element_id)
        data = env.backend.data
        return (data.site_xpos if target.tag == "site" else data.xpos), row

    def reset(self, env: WmilEnv) -> None:
        """Bind to ``env``'s simulator: TCP site, target, arm joints and their actuators."""
        self._ctl = CartesianVelocity()
        self._ctl.bind(env)
        self._tpos, self._trow = self._find_target(env)
        self._cartesian = env.spec_.controller == "cartesian"
        # actuator units over every actuator; the env takes the ones it does not hold
        self._low = env.backend.action_low.astype(np.float64)
        self._span = env.backend.action_high - env.backend.action_low
        self._free = env.actuators
        if not np.isin(self._ctl.actuators, self._free).all():
            raise ValueError(f"{env.task_name}: jaco-reach drives the arm joints; the task "
                             f"holds one of their actuators")

    def target(self, obs: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """World position the TCP is driven to (target, plus the hover height for a prop)."""
        if self._tpos is not None:
            goal = self._tpos[self._trow].copy()
        else:
            if obs is None:
                raise ValueError("jaco-reach: the task exposes no target; pass the observation")
            goal = np.asarray(obs["features"][:3], dtype=np.float64).copy()
        goal[2] += self.hover
        return goal

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Action in [-1, 1]^A: the TCP velocity toward the target (as a share of the speed
        cap on a Cartesian task; else the arm joint velocities that make it, fingers still:
        their actions are 0, or absent where the task holds the fingers)."""
        v = _KP * (self.target(obs) - self._ctl.tcp_position)
        speed = float(np.linalg.norm(v))
        if speed > VMAX:  # the TCP speed cap
            v *= VMAX / speed
        if self._cartesian:
            return v / VMAX
        ctrl = np.zeros(len(self._low))
        ctrl[self._ctl.actuators] = self._ctl.joint_velocities(v)
        full = np.clip(2.0 * (ctrl - self._low) / self._span - 1.0, -1.0, 1.0)
        return full[self._free]


@register_expert("jaco-reach")
def make_jaco_expert(task: str) -> JacoReach:
    """The Jaco reach expert for ``task`` (reach-site or reach-duplo)."""
    if task not in JACO_TASKS:
        raise ValueError(f"jaco-reach supports {', '.join(JACO_TASKS)}, not {task!r}")
    return JacoReach(hover=_PROP_HOVER if task == "jaco/reach-duplo" else 0.0)
