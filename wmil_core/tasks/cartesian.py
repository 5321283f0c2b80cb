"""Cartesian velocity control of the Jaco's tool centre point (the hand's pinch site).

A commanded linear velocity of the TCP (m/s, world frame) becomes the six arm joints'
velocities by damped least squares of the site Jacobian, while the hand keeps the orientation it
had when the controller was bound (the start of the episode): a 6-D twist (the commanded
velocity, and an angular velocity proportional to the orientation error, capped) weighted
position against orientation. Holding the orientation leaves the arm no null space to drift in.
Joint velocities over the actuators' limits are scaled down together, keeping the direction.

This is the interface of tasks with ``controller: cartesian`` (their actions are the TCP's
velocity, as a Cartesian servo or a Kinova arm's own Cartesian velocity mode takes it) and the
inner loop of the Jaco reach expert on either interface (wmil_core/experts/jaco.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import mujoco
import numpy as np

if TYPE_CHECKING:
    from wmil_core.tasks.env import WmilEnv

TCP_SITE = "jaco_arm/jaco_hand/pinchsite"
VMAX = 0.3  # m/s, the largest TCP speed commanded on each axis
_KR = 2.0  # 1/s, orientation error -> angular speed
_WMAX = 1.0  # rad/s, angular speed cap
_ROT_WEIGHT = 0.3  # m/rad, weight of orientation against position in the least squares
_DAMPING = 0.05  # damped least squares lambda


class CartesianVelocity:
    """TCP linear velocity -> arm joint velocities for one Jaco arm (bind with :meth:`bind`)."""

    def bind(self, env: WmilEnv) -> None:
        """Attach to ``env``'s current simulator (rebind after each reset: the manipulation
        suite may build a new one) and hold the hand's present orientation."""
        m, d = env.backend.model, env.backend.data
        self.model, self.data = m, d
        task: Any = getattr(env.backend.env, "task", None)
        hand = getattr(task, "_hand", None)
        if hand is not None:
            self.tcp = int(env.backend.physics.bind(hand.tool_center_point).element_id)
        else:
            self.tcp = int(m.site(TCP_SITE).id)
        arm = [j for j, n in zip(env.joint_ids, env.joint_names, strict=True)
               if "finger" not in n]
        if len(arm) != 6:
            raise ValueError(f"{env.task_name}: Cartesian control expects 6 arm joints, got "
                             f"{len(arm)}")
        self.dofs = np.array([m.jnt_dofadr[j] for j in arm])
        act_of_joint = {
            int(m.actuator_trnid[a, 0]): a
            for a in range(m.nu)
            if int(m.actuator_trntype[a]) == int(mujoco.mjtTrn.mjTRN_JOINT)
        }
        missing = [j for j in arm if j not in act_of_joint]
        if missing:
            raise ValueError(f"{env.task_name}: arm joint {missing[0]} has no actuator")
        self.actuators = np.array([act_of_joint[j] for j in arm])  # model actuator ids
        low, high = env.backend.action_low, env.backend.action_high
        self.qd_max = np.minimum(-low[self.actuators], high[self.actuators])
        self.rot_goal = d.site_xmat[self.tcp].reshape(3, 3).copy()
        self._jac = np.zeros((6, m.nv))
        self._weights = np.array([1.0, 1.0, 1.0, _ROT_WEIGHT, _ROT_WEIGHT, _ROT_WEIGHT])
        self._reg = _DAMPING**2 * np.eye(6)

    @property
    def tcp_position(self) -> np.ndarray:
        """World position of the TCP now."""
        return self.data.site_xpos[self.tcp]

    def joint_velocities(self, v: np.ndarray) -> np.ndarray:
        """Arm joint velocities (rad/s, within the actuators' limits) that move the TCP at
        ``v`` (m/s) and turn the hand back toward the held orientation."""
        m, d = self.model, self.data
        # orientation error: 0.5 * sum_i rot[:, i] x goal[:, i] = 0.5 * vee(G R^T - R G^T)
        s = self.rot_goal @ d.site_xmat[self.tcp].reshape(3, 3).T
        w = (0.5 * _KR) * np.array([s[2, 1] - s[1, 2], s[0, 2] - s[2, 0], s[1, 0] - s[0, 1]])
        spin = float(np.linalg.norm(w))
        if spin > _WMAX:
            w *= _WMAX / spin
        mujoco.mj_jacSite(m, d, self._jac[:3], self._jac[3:], self.tcp)
        jac = self._weights[:, None] * self._jac[:, self.dofs]
        twist = self._weights * np.concatenate([np.asarray(v, dtype=np.float64), w])
        qd = jac.T @ np.linalg.solve(jac @ jac.T + self._reg, twist)
        peak = float(np.max(np.abs(qd) / self.qd_max))
        return qd / peak if peak > 1.0 else qd
