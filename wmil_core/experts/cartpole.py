"""Cart-pole expert: energy-pumping swing-up with an LQR catch near upright.

The pole's energy (relative to resting upright) is pumped toward zero by accelerating the cart
against the pole's swing (Astrom-Furuta energy control) while a spring-damper term keeps the
cart near the centre. Once the pole is within ~37 degrees of upright a discrete LQR, derived
from a finite-difference linearisation of the MuJoCo model over one agent step (``action_repeat``
control steps with the control held), balances it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import mujoco
import numpy as np
from scipy.linalg import solve_discrete_are

from wmil_core.experts.base import register_expert

if TYPE_CHECKING:
    from wmil_core.tasks.env import WmilEnv

CARTPOLE_TASKS = ("dmc/cartpole-swingup", "dmc/cartpole-balance")

# Gains tuned on the dm_control swing-up reward (upright * centred * small control * small
# angular velocity); they also recover from random states (any pole angle, cart in [-1, 1]).
_LQR_Q = (1.35, 8.5, 0.011, 0.88)  # cart position, pole angle, cart velocity, pole velocity
_LQR_R = 1.0  # per unit of actuator control
_CATCH_COS = 0.794  # switch to LQR when cos(pole angle) exceeds this
_PUMP_GAIN = 11.5  # m/s^2 of cart acceleration per unit of normalised energy error
_CENTRE_KP = 3.35  # 1/s^2, cart position -> acceleration during swing-up
_CENTRE_KD = 2.33  # 1/s, cart velocity -> acceleration during swing-up


def linearise(model: mujoco.MjModel, repeat: int, eps: float = 1e-6) -> tuple[np.ndarray, ...]:
    """Discrete (A, B) of the cart-pole about upright rest over ``repeat`` control steps.

    State order is MuJoCo's ``(qpos, qvel)``; the control is held for the ``repeat`` steps.
    Central finite differences of ``mj_step`` (the model's RK4 integrator is not supported by
    ``mjd_transitionFD``).
    """
    data = mujoco.MjData(model)
    nq, nv, nu = model.nq, model.nv, model.nu
    n = nq + nv

    def f(x: np.ndarray, u: np.ndarray) -> np.ndarray:
        mujoco.mj_resetData(model, data)
        data.qpos[:] = x[:nq]
        data.qvel[:] = x[nq:]
        data.ctrl[:] = u
        for _ in range(repeat):
            mujoco.mj_step(model, data)
        return np.concatenate([data.qpos, data.qvel])

    x0, u0 = np.zeros(n), np.zeros(nu)
    a = np.empty((n, n))
    b = np.empty((n, nu))
    for i in range(n):
        dx = np.zeros(n)
        dx[i] = eps
        a[:, i] = (f(x0 + dx, u0) - f(x0 - dx, u0)) / (2 * eps)
    for i in range(nu):
        du = np.zeros(nu)
        du[i] = eps
        b[:, i] = (f(x0, u0 + du) - f(x0, u0 - du)) / (2 * eps)
    return a, b


def lqr_gain(a: np.ndarray, b: np.ndarray, q: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Discrete infinite-horizon LQR gain K (u = -K x) from the Riccati equation."""
    p = solve_discrete_are(a, b, q, r)
    return np.linalg.solve(r + b.T @ p @ b, b.T @ p @ a)


class CartpoleEnergy:
    """Energy-based swing-up plus LQR balance for the single-pole dm_control cart-pole."""

    name = "cartpole-energy"

    def __init__(self) -> None:
        self._model: mujoco.MjModel | None = None
        self._repeat = 0

    def _fit(self, model: mujoco.MjModel, repeat: int) -> None:
        if model.nq != 2 or model.nv != 2 or model.nu != 1:
            raise ValueError("cartpole-energy needs the single-pole cart-pole (2 joints, 1 motor)")
        slider, hinge = model.joint("slider"), model.joint("hinge_1")
        if int(slider.dofadr[0]) != 0 or int(hinge.dofadr[0]) != 1:
            raise ValueError("cartpole-energy expects the slider then the hinge in the model")
        a, b = linearise(model, repeat)
        k = lqr_gain(a, b, np.diag(_LQR_Q), np.array([[_LQR_R]]))[0]
        self._k = tuple(float(v) for v in k)
        pole = model.body(int(hinge.bodyid[0]))
        mass = float(pole.mass[0])
        lc = float(np.linalg.norm(pole.ipos))  # pivot to centre of mass
        inertia = float(pole.inertia[1]) + mass * lc * lc  # about the hinge (y) axis
        g = float(-model.opt.gravity[2])
        self._half_i_over_mgl = 0.5 * inertia / (mass * g * lc)
        cart_mass = float(model.body_subtreemass[int(slider.bodyid[0])])
        self._force_per_acc = cart_mass / float(model.actuator_gear[0, 0])
        self._model, self._repeat = model, repeat

    def reset(self, env: WmilEnv) -> None:
        """Fit the controller to ``env``'s model (once) and locate the joints in observations."""
        model = env.backend.model
        if model is not self._model or env.spec_.action_repeat != self._repeat:
            self._fit(model, env.spec_.action_repeat)
        names = env.joint_names
        if "slider" not in names or "hinge_1" not in names:
            raise ValueError(f"{env.task_name}: observations lack the slider or hinge_1 joint")
        n = len(names)
        self._ix, self._ith = names.index("slider"), names.index("hinge_1")
        self._ixd, self._ithd = n + self._ix, n + self._ith
        self._low = float(env.action_low[0])
        self._high = float(env.action_high[0])

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Action in [-1, 1] for the state observation ``obs``."""
        j = obs["joints"].tolist()
        x, xd, th, thd = j[self._ix], j[self._ixd], j[self._ith], j[self._ithd]
        c, s = math.cos(th), math.sin(th)
        if c > _CATCH_COS:
            k0, k1, k2, k3 = self._k
            u = -(k0 * x + k1 * math.atan2(s, c) + k2 * xd + k3 * thd)
        else:
            energy = self._half_i_over_mgl * thd * thd + c - 1.0  # 0 when resting upright
            pump = _PUMP_GAIN * energy * (1.0 if thd * c > 0 else -1.0)
            u = (pump - _CENTRE_KP * x - _CENTRE_KD * xd) * self._force_per_acc
        a = 2.0 * (u - self._low) / (self._high - self._low) - 1.0
        return np.array([min(1.0, max(-1.0, a))])


@register_expert("cartpole-energy")
def make_cartpole_expert(task: str) -> CartpoleEnergy:
    """The cart-pole expert for ``task`` (swing-up or balance)."""
    if task not in CARTPOLE_TASKS:
        raise ValueError(f"cartpole-energy supports {', '.join(CARTPOLE_TASKS)}, not {task!r}")
    return CartpoleEnergy()
