"""Reacher expert: inverse kinematics to the target, then computed-torque PD in joint space.

The target's position is the fingertip (forward kinematics of the observed joint angles) plus
the observed ``to_target`` vector. Of the two elbow solutions of the 2-link inverse kinematics
the one nearer the current pose is tracked, with the shoulder error wrapped to (-pi, pi].
The joint-space PD acceleration goes through the arm's mass matrix, which for a planar 2-link
arm is ``[[a + 2b cos q2, c + b cos q2], [c + b cos q2, c]]``; a, b, c are read off MuJoCo's
mass matrix once.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import mujoco
import numpy as np

from wmil_core.experts.base import register_expert

if TYPE_CHECKING:
    from wmil_core.tasks.env import WmilEnv

REACHER_TASKS = ("dmc/reacher-easy", "dmc/reacher-hard")

# Critically damped-ish (zeta ~0.87, omega ~17 rad/s); kd * agent_dt stays well below 2 so
# the sampled loop (0.04 s per agent step) does not chatter.
_KP = 300.0  # 1/s^2
_KD = 30.0  # 1/s
_TWO_PI = 2.0 * math.pi


def _wrap(angle: float) -> float:
    return (angle + math.pi) % _TWO_PI - math.pi


def two_link_ik(x: float, y: float, l1: float, l2: float) -> list[tuple[float, float]]:
    """Both (shoulder, elbow) solutions putting the tip of a planar 2-link arm at (x, y).

    Out-of-reach points give the nearest reachable pose (arm stretched or folded).
    """
    c2 = (x * x + y * y - l1 * l1 - l2 * l2) / (2.0 * l1 * l2)
    c2 = min(1.0, max(-1.0, c2))
    out = []
    for q2 in (math.acos(c2), -math.acos(c2)):
        q1 = math.atan2(y, x) - math.atan2(l2 * math.sin(q2), l1 + l2 * math.cos(q2))
        out.append((q1, q2))
    return out


class ReacherFeedback:
    """Joint-space computed-torque feedback to the inverse-kinematics pose of the target."""

    name = "reacher-feedback"

    def __init__(self) -> None:
        self._model: mujoco.MjModel | None = None

    def _fit(self, model: mujoco.MjModel) -> None:
        if model.nv != 2 or model.nu != 2:
            raise ValueError("reacher-feedback needs the 2-link dm_control reacher")
        self._l1 = float(np.linalg.norm(model.body("hand").pos))
        self._l2 = float(np.linalg.norm(model.body("finger").pos))
        data = mujoco.MjData(model)

        def mass_at(q2: float) -> np.ndarray:
            data.qpos[:] = (0.0, q2)
            mujoco.mj_forward(model, data)
            mass = np.zeros((2, 2))
            mujoco.mj_fullM(model, data, mass)
            return mass

        straight, bent = mass_at(0.0), mass_at(math.pi / 2)
        self._ma, self._mc = float(bent[0, 0]), float(bent[1, 1])
        self._mb = 0.5 * float(straight[0, 0] - bent[0, 0])
        self._damping = tuple(float(v) for v in model.dof_damping)
        self._gear = tuple(float(v) for v in model.actuator_gear[:, 0])
        self._model = model

    def reset(self, env: WmilEnv) -> None:
        """Fit to ``env``'s model (once) and locate joints and ``to_target`` in observations."""
        model = env.backend.model
        if model is not self._model:
            self._fit(model)
        names = env.joint_names
        if names != ["shoulder", "wrist"] or env.backend.feature_keys[:1] != ["to_target"]:
            raise ValueError(
                f"{env.task_name}: reacher-feedback needs joints [shoulder, wrist] "
                "and features starting with to_target"
            )
        self._low = tuple(float(v) for v in env.action_low)
        self._span = tuple(
            float(h - lo) for lo, h in zip(env.action_low, env.action_high, strict=True)
        )

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Action in [-1, 1]^2 for the state observation ``obs``."""
        q1, q2, w1, w2 = obs["joints"][:4].tolist()
        dx, dy = obs["features"][:2].tolist()
        l1, l2 = self._l1, self._l2
        tx = l1 * math.cos(q1) + l2 * math.cos(q1 + q2) + dx
        ty = l1 * math.sin(q1) + l2 * math.sin(q1 + q2) + dy
        best = math.inf
        e1 = e2 = 0.0
        for g1, g2 in two_link_ik(tx, ty, l1, l2):
            c1, c2 = _wrap(g1 - q1), g2 - q2  # the wrist is limited: no wrapping
            if abs(c1) + abs(c2) < best:
                best, e1, e2 = abs(c1) + abs(c2), c1, c2
        acc1 = _KP * e1 - _KD * w1
        acc2 = _KP * e2 - _KD * w2
        cq = math.cos(q2)
        off = self._mc + self._mb * cq
        tau1 = (self._ma + 2.0 * self._mb * cq) * acc1 + off * acc2 + self._damping[0] * w1
        tau2 = off * acc1 + self._mc * acc2 + self._damping[1] * w2
        (low1, low2), (span1, span2) = self._low, self._span
        a1 = 2.0 * (tau1 / self._gear[0] - low1) / span1 - 1.0
        a2 = 2.0 * (tau2 / self._gear[1] - low2) / span2 - 1.0
        return np.array([min(1.0, max(-1.0, a1)), min(1.0, max(-1.0, a2))])


@register_expert("reacher-feedback")
def make_reacher_expert(task: str) -> ReacherFeedback:
    """The reacher expert for ``task`` (easy or hard)."""
    if task not in REACHER_TASKS:
        raise ValueError(f"reacher-feedback supports {', '.join(REACHER_TASKS)}, not {task!r}")
    return ReacherFeedback()
