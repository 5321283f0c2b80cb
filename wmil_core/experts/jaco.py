"""Jaco reach expert: damped-least-squares Cartesian control of the tool centre point.

Each step the TCP (the hand's pinch site, which the task rewards) is driven toward the target
at a speed proportional to the distance (capped), while the hand keeps the downward orientation
it starts the episode in: a 6-D twist (position, weighted orientation) goes through damped least
squares of the site Jacobian into arm joint velocities, which the arm's velocity actuators
track. Holding the orientation leaves no null space for the arm to drift in. The fingers are
kept still. A prop target (the duplo brick, which rests on the table) is approached to a point
just above it, inside the 5 cm success radius, so the fingers do not push it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import mujoco
import numpy as np

from wmil_core.experts.base import register_expert

if TYPE_CHECKING:
    from wmil_core.tasks.env import WmilEnv

JACO_TASKS = ("jaco/reach-site", "jaco/reach-duplo")
_TCP_SITE = "jaco_arm/jaco_hand/pinchsite"

_KP = 4.0  # 1/s, position error -> TCP speed
_VMAX = 0.3  # m/s, TCP speed cap
_KR = 2.0  # 1/s, orientation error -> angular speed
_WMAX = 1.0  # rad/s, angular speed cap
_ROT_WEIGHT = 0.3  # m/rad, weight of orientation against position in the least squares
_DAMPING = 0.05  # damped least squares lambda
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
        return (self._data.site_xpos if target.tag == "site" else self._data.xpos), row

    def reset(self, env: WmilEnv) -> None:
        """Bind to ``env``'s simulator: TCP site, target, arm joints and their actuators."""
        m, d = env.backend.model, env.backend.data
        self._model, self._data = m, d
        task: Any = getattr(env.backend.env, "task", None)
        hand = getattr(task, "_hand", None)
        if hand is not None:
            self._tcp = int(env.backend.physics.bind(hand.tool_center_point).element_id)
        else:
            self._tcp = int(m.site(_TCP_SITE).id)
        self._tpos, self._trow = self._find_target(env)
        pairs = zip(env.joint_ids, env.joint_names, strict=True)
        arm = [j for j, n in pairs if "finger" not in n]
        if len(arm) != 6:
            raise ValueError(f"{env.task_name}: jaco-reach expects 6 arm joints, got {len(arm)}")
        self._dofs = np.array([m.jnt_dofadr[j] for j in arm])
        act_of_joint = {
            int(m.actuator_trnid[a, 0]): a
            for a in range(m.nu)
            if int(m.actuator_trntype[a]) == int(mujoco.mjtTrn.mjTRN_JOINT)
        }
        missing = [j for j in arm if j not in act_of_joint]
        if missing:
            raise ValueError(f"{env.task_name}: arm joint {missing[0]} has no actuator")
        self._acts = np.array([act_of_joint[j] for j in arm])
        # actuator units over every actuator; the env takes the ones it does not hold
        self._low = env.backend.action_low.astype(np.float64)
        self._span = env.backend.action_high - env.backend.action_low
        self._qd_max = np.minimum(-self._low[self._acts], env.backend.action_high[self._acts])
        self._free = env.actuators
        if not np.isin(self._acts, self._free).all():
            raise ValueError(f"{env.task_name}: jaco-reach drives the arm joints; the task "
                             f"holds one of their actuators")
        self._rot_goal = d.site_xmat[self._tcp].reshape(3, 3).copy()
        self._jac = np.zeros((6, m.nv))
        self._weights = np.array([1.0, 1.0, 1.0, _ROT_WEIGHT, _ROT_WEIGHT, _ROT_WEIGHT])
        self._reg = _DAMPING**2 * np.eye(6)

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
        """Action in [-1, 1]^A: arm joint velocities toward the target, fingers still (the
        finger actions are 0, or absent where the task holds the fingers)."""
        m, d = self._model, self._data
        err = self.target(obs) - d.site_xpos[self._tcp]
        v = _KP * err
        speed = float(np.linalg.norm(v))
        if speed > _VMAX:
            v *= _VMAX / speed
        # orientation error: 0.5 * sum_i rot[:, i] x goal[:, i] = 0.5 * vee(G R^T - R G^T)
        s = self._rot_goal @ d.site_xmat[self._tcp].reshape(3, 3).T
        w = (0.5 * _KR) * np.array([s[2, 1] - s[1, 2], s[0, 2] - s[2, 0], s[1, 0] - s[0, 1]])
        spin = float(np.linalg.norm(w))
        if spin > _WMAX:
            w *= _WMAX / spin
        mujoco.mj_jacSite(m, d, self._jac[:3], self._jac[3:], self._tcp)
        jac = self._weights[:, None] * self._jac[:, self._dofs]
        twist = self._weights * np.concatenate([v, w])
        qd = jac.T @ np.linalg.solve(jac @ jac.T + self._reg, twist)
        peak = float(np.max(np.abs(qd) / self._qd_max))
        if peak > 1.0:
            qd /= peak  # keep the direction, respect the velocity limits
        ctrl = np.zeros(len(self._low))
        ctrl[self._acts] = qd
        full = np.clip(2.0 * (ctrl - self._low) / self._span - 1.0, -1.0, 1.0)
        return full[self._free]


@register_expert("jaco-reach")
def make_jaco_expert(task: str) -> JacoReach:
    """The Jaco reach expert for ``task`` (reach-site or reach-duplo)."""
    if task not in JACO_TASKS:
        raise ValueError(f"jaco-reach supports {', '.join(JACO_TASKS)}, not {task!r}")
    return JacoReach(hover=_PROP_HOVER if task == "jaco/reach-duplo" else 0.0)
