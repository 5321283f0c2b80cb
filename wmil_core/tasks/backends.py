"""Simulator back ends: one small class per family over dm_control suite, manipulation, MyoSuite.

A back end owns the simulator and exposes the raw MuJoCo ``model``/``data`` (for joint reads
and rendering), the actuator bounds, one control step, the task features and the reward.
"""

from __future__ import annotations

from typing import Any

import mujoco
import numpy as np

from wmil_core.tasks.spec import TaskSpec


def feature_parts(key: str) -> list[str]:
    """The simulator observations a feature key reads: ``"a - b"`` (a difference, such as a
    target's position relative to the hand) reads a and b, any other key itself."""
    return [p.strip() for p in key.split(" - ", 1)] if " - " in key else [key]


def _check_features(name: str, keys: list[str], obs: Any) -> None:
    """ValueError naming the first feature key whose observation ``obs`` lacks."""
    for key in keys:
        missing = [p for p in feature_parts(key) if p not in obs]
        if missing:
            raise ValueError(f"{name}: no observation {missing[0]!r} (has {list(obs)})")
        parts = [np.asarray(obs[p]) for p in feature_parts(key)]
        if len(parts) == 2 and parts[0].shape != parts[1].shape:
            raise ValueError(f"{name}: feature {key!r} subtracts shapes "
                             f"{parts[0].shape} and {parts[1].shape}")


def _feature(obs: Any, key: str) -> np.ndarray:
    parts = feature_parts(key)
    if len(parts) == 1:
        return np.asarray(obs[key])
    return np.asarray(obs[parts[0]], np.float64) - np.asarray(obs[parts[1]], np.float64)


def _flatten(values: list[np.ndarray]) -> np.ndarray:
    if not values:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate([np.asarray(v, dtype=np.float32).ravel() for v in values])


class Backend:
    """Interface of a simulator back end (see module docstring)."""

    model: mujoco.MjModel
    data: mujoco.MjData
    action_low: np.ndarray  # actuator units, shape (A,)
    action_high: np.ndarray
    control_dt: float  # seconds per control step
    time_limit_steps: int  # control steps in one episode
    feature_keys: list[str]
    _obs: Any  # the simulator's latest observation mapping (feature key -> array)

    def reset(self, seed: int | None) -> None:
        """Start a new episode; ``seed`` reseeds the task's random stream when given."""
        raise NotImplementedError

    def step(self, ctrl: np.ndarray, observe: bool = True) -> tuple[float, bool]:
        """One control step with ``ctrl`` in actuator units: (reward, simulator ended).

        ``observe=False`` may skip computing observations (inner steps of an action repeat).
        """
        raise NotImplementedError

    def features(self) -> np.ndarray:
        """Task features (float32, flat) of the current state."""
        raise NotImplementedError

    def solved(self) -> bool:
        """The simulator's own success flag, where it has one."""
        return False

    def feature_layout(self) -> dict[str, tuple[int, int]]:
        """Each feature key's (first index, size) in :meth:`features`."""
        layout, first = {}, 0
        for key in self.feature_keys:
            size = int(_feature(self._obs, key).size)
            layout[key] = (first, size)
            first += size
        return layout


class DmcBackend(Backend):
    """dm_control suite task ``domain:task``."""

    def __init__(self, spec: TaskSpec, seed: int | None = None) -> None:
        from dm_control import suite

        domain, task = spec.env_id.split(":")
        self._setup(spec, suite.load(domain, task, task_kwargs={"random": seed}))
        self._fast = True  # control.Environment: inner action-repeat steps skip observations

    def _setup(self, spec: TaskSpec, env: Any) -> None:
        self.env = env
        aspec = env.action_spec()
        low = np.broadcast_to(aspec.minimum, aspec.shape).astype(np.float64)
        high = np.broadcast_to(aspec.maximum, aspec.shape).astype(np.float64)
        # effectively unbounded actuators (the suite's LQR tasks: +-1e10) act in [-1, 1]
        unbounded = (np.abs(low) > 1e6) | (np.abs(high) > 1e6)
        self.action_low = np.where(unbounded, -1.0, low)
        self.action_high = np.where(unbounded, 1.0, high)
        self.control_dt = float(env.control_timestep())
        limit = getattr(env, "_step_limit", None)  # suite: control steps per episode
        if limit is None:  # composer: seconds per episode
            limit = env._time_limit / self.control_dt  # noqa: SLF001
        # tasks without a time limit (the suite's LQR tasks) get 1000 control steps
        self.time_limit_steps = int(round(limit)) if np.isfinite(limit) else 1000
        self._obs = env.reset().observation
        self._bind()
        keys = list(self._obs) if spec.features == "all" else list(spec.features)
        _check_features(spec.name, keys, self._obs)
        self.feature_keys = keys

    def _bind(self) -> None:
        self.physics = self.env.physics
        self.model = self.physics.model.ptr
        self.data = self.physics.data.ptr

    def _reseed(self, seed: int) -> None:
        self.env.task.random.seed(seed)

    def reset(self, seed: int | None) -> None:
        if seed is not None:
            self._reseed(seed)
        self._obs = self.env.reset().observation
        self._bind()

    def step(self, ctrl: np.ndarray, observe: bool = True) -> tuple[float, bool]:
        if observe or not self._fast:
            ts = self.env.step(ctrl)
            self._obs = ts.observation
            return float(ts.reward or 0.0), bool(ts.last())
        # the suite's control.Environment.step without computing observations
        env = self.env
        task, physics = env._task, env._physics  # noqa: SLF001
        task.before_step(ctrl, physics)
        physics.step(env._n_sub_steps)  # noqa: SLF001
        task.after_step(physics)
        reward = task.get_reward(physics)
        env._step_count += 1  # noqa: SLF001
        ended = (env._step_count >= env._step_limit  # noqa: SLF001
                 or task.get_termination(physics) is not None)
        env._reset_next_step = ended  # noqa: SLF001
        return float(reward or 0.0), ended

    def features(self) -> np.ndarray:
        return _flatten([_feature(self._obs, k) for k in self.feature_keys])


class JacoBackend(DmcBackend):
    """dm_control manipulation (composer) task with the Jaco arm."""

    def __init__(self, spec: TaskSpec, seed: int | None = None) -> None:  # noqa: D107
        from dm_control import manipulation

        self._setup(spec, manipulation.load(spec.env_id, seed=seed))
        self._fast = False  # composer environments keep their own step

    def _reseed(self, seed: int) -> None:
        self.env.random_state.seed(seed)


class MyoBackend(Backend):
    """MyoSuite environment (gymnasium) with normalised muscle activations."""

    def __init__(self, spec: TaskSpec, seed: int | None = None) -> None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from myosuite.utils import gym as myo_gym

            self.env = myo_gym.make(spec.env_id)
        self.u: Any = self.env.unwrapped
        self.model = self.u.model
        self.data = self.u.data
        self.action_low = np.asarray(self.env.action_space.low, dtype=np.float64)
        self.action_high = np.asarray(self.env.action_space.high, dtype=np.float64)
        self.control_dt = float(self.u.dt)
        self.time_limit_steps = int(self.env.spec.max_episode_steps)
        self.env.reset(seed=seed)
        obs = self.u.get_obs_dict(self.u._accessor)  # noqa: SLF001
        keys = list(obs) if spec.features == "all" else list(spec.features)
        _check_features(spec.name, keys, obs)
        self.feature_keys = keys
        self._obs = obs
        self._solved = False

    def reset(self, seed: int | None) -> None:
        self.env.reset(seed=seed)
        self._obs = self.u.get_obs_dict(self.u._accessor)  # noqa: SLF001
        self._solved = False

    def step(self, ctrl: np.ndarray, observe: bool = True) -> tuple[float, bool]:
        _, reward, terminated, _, info = self.env.step(ctrl.astype(np.float32))
        self._obs = info.get("obs_dict") or self.u.get_obs_dict(self.u._accessor)  # noqa: SLF001
        self._solved = bool(info.get("solved", False))
        return float(reward), bool(terminated)

    def features(self) -> np.ndarray:
        return _flatten([_feature(self._obs, k) for k in self.feature_keys])

    def solved(self) -> bool:
        return self._solved


BACKENDS: dict[str, type[Backend]] = {"dmc": DmcBackend, "jaco": JacoBackend, "myo": MyoBackend}
