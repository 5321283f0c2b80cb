"""One gymnasium interface for every task: observation dicts, actions in [-1, 1], no reward.

The learner-facing reward returned by :meth:`WmilEnv.step` is always 0.0: wmil learns from
demonstrations, never from the simulator's reward. That reward is in ``info["reward"]`` for
evaluation only, with ``info["success"]`` where the task defines success.
"""

from __future__ import annotations

import atexit
import collections
import weakref
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from wmil_core.tasks.backends import BACKENDS, Backend
from wmil_core.tasks.cartesian import VMAX, CartesianVelocity
from wmil_core.tasks.spec import ObsMode, TaskSpec, get_task

# Renderers still open at exit are closed while EGL is alive (their __del__ would run too late).
_LIVE_ENVS: weakref.WeakSet[WmilEnv] = weakref.WeakSet()
atexit.register(lambda: [env.close() for env in list(_LIVE_ENVS)])

_HINGE_SLIDE = (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))


def _joint_name(model: mujoco.MjModel, j: int) -> str:
    return mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j) or f"joint_{j}"


def select_joints(spec: TaskSpec, model: mujoco.MjModel) -> list[int]:
    """Ids of the robot joints of ``spec`` in ``model`` (hinge and slide joints only)."""
    movable = [j for j in range(model.njnt) if int(model.jnt_type[j]) in _HINGE_SLIDE]
    names = {_joint_name(model, j): j for j in movable}
    sel = spec.joints
    if sel == "all":
        return movable
    if sel == "actuated":
        driven = []
        for a in range(model.nu):
            if int(model.actuator_trntype[a]) == int(mujoco.mjtTrn.mjTRN_JOINT):
                j = int(model.actuator_trnid[a, 0])
                if j in movable and j not in driven:
                    driven.append(j)
        return driven
    if isinstance(sel, dict):
        exclude = set(sel["exclude"])
        unknown = exclude - set(names) - {
            _joint_name(model, j) for j in range(model.njnt)
        }
        if unknown:
            raise ValueError(f"{spec.name}: no joint named {sorted(unknown)[0]!r} to exclude")
        return [j for j in movable if _joint_name(model, j) not in exclude]
    missing = [n for n in sel if n not in names]
    if missing:
        raise ValueError(f"{spec.name}: no hinge or slide joint named {missing[0]!r}")
    return [names[n] for n in sel]


def held_actions(spec: TaskSpec, model: mujoco.MjModel) -> dict[int, float]:
    """Actuator id -> the action in [-1, 1] the task holds it at (``spec.hold_actions``)."""
    held = {}
    for name, value in (spec.hold_actions or {}).items():
        a = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, name)
        if a < 0:
            raise ValueError(f"{spec.name}: hold_actions: no actuator named {name!r}")
        held[a] = float(value)
    if len(held) >= model.nu:
        raise ValueError(f"{spec.name}: hold_actions holds every actuator; none left to act")
    return held


class WmilEnv(gym.Env):
    """A registry task as a gymnasium environment returning wmil observation dicts.

    Args:
        task: a registry name (``dmc/cartpole-swingup``) or a :class:`TaskSpec`.
        obs_mode: ``state`` (joints + features), ``pixels`` (image) or ``pixels+joints``.
        seed: seed of the first episode (later resets continue the stream unless reseeded).
        image_size, frames, camera: override the task's rendering settings.
        episode_length: end episodes after this many agent steps (at most the task's own).
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        task: str | TaskSpec,
        obs_mode: ObsMode = "state",
        seed: int | None = None,
        image_size: int | None = None,
        frames: int | None = None,
        camera: int | str | None = None,
        episode_length: int | None = None,
    ) -> None:
        spec = get_task(task) if isinstance(task, str) else task
        if obs_mode not in spec.modes:
            raise ValueError(
                f"{spec.name}: observation mode {obs_mode!r} not in {list(spec.modes)}"
            )
        self.spec_ = spec
        self.obs_mode = obs_mode
        self.image_size = int(image_size or spec.image_size)
        self.frames = int(frames or spec.frames)
        self.camera = spec.camera if camera is None else camera
        self.backend: Backend = BACKENDS[spec.family](spec, seed)
        self._seed = seed
        self._seeded = False
        m = self.backend.model
        self.joint_ids = select_joints(spec, m)
        self.joint_names = [_joint_name(m, j) for j in self.joint_ids]
        self._qpos_idx = np.array([m.jnt_qposadr[j] for j in self.joint_ids], dtype=np.int64)
        self._qvel_idx = np.array([m.jnt_dofadr[j] for j in self.joint_ids], dtype=np.int64)
        self.episode_length = self.backend.time_limit_steps // spec.action_repeat
        if episode_length is not None:
            if episode_length < 1:
                raise ValueError(f"episode_length: must be >= 1, got {episode_length}")
            self.episode_length = min(self.episode_length, int(episode_length))
        # the agent's actions drive the actuators the task does not hold (model order)
        held = held_actions(spec, m)
        self.actuators = np.array([a for a in range(m.nu) if a not in held], dtype=np.int64)
        self._full_action = np.zeros(m.nu)
        for a, value in held.items():
            self._full_action[a] = value
        self.action_low = self.backend.action_low[self.actuators]
        self.action_high = self.backend.action_high[self.actuators]
        # a Cartesian task's actions are the TCP's velocity (m/s), which a controller turns
        # into the arm actuators' commands each step (the rest stay held)
        self.controller: CartesianVelocity | None = None
        if spec.controller == "cartesian":
            self.controller = CartesianVelocity()
            self.controller.bind(self)
            self.action_low, self.action_high = np.full(3, -VMAX), np.full(3, VMAX)
        act_dim = self.action_low.shape[0]
        self.action_space = gym.spaces.Box(-1.0, 1.0, (act_dim,), dtype=np.float32)
        self._renderer: mujoco.Renderer | None = None
        self._frames: collections.deque[np.ndarray] = collections.deque(maxlen=self.frames)
        n_feat = self.backend.features().shape[0]
        self.obs_keys = self._keys(n_feat)
        shapes = {
            "joints": (2 * len(self.joint_ids),),
            "features": (n_feat,),
            "image": (self.image_size, self.image_size, 3 * self.frames),
        }
        spaces = {}
        for k in self.obs_keys:
            if k == "image":
                spaces[k] = gym.spaces.Box(0, 255, shapes[k], dtype=np.uint8)
            else:
                spaces[k] = gym.spaces.Box(-np.inf, np.inf, shapes[k], dtype=np.float32)
        self.observation_space = gym.spaces.Dict(spaces)
        self._t = 0
        self._return = 0.0

    def _keys(self, n_feat: int) -> list[str]:
        keys = []
        if self.obs_mode == "state":
            if self.joint_ids:
                keys.append("joints")
            if n_feat:
                keys.append("features")
        else:
            keys.append("image")
            if self.obs_mode == "pixels+joints":
                if not self.joint_ids:
                    raise ValueError(f"{self.spec_.name}: pixels+joints needs robot joints")
                keys.append("joints")
        return keys

    # -- observation -------------------------------------------------------------------------
    @property
    def task_name(self) -> str:
        """Registry name of the task."""
        return self.spec_.name

    def obs_spec(self) -> dict[str, dict[str, Any]]:
        """Observation spec: key -> {shape, dtype} (joint names are ``joint_names``)."""
        return {
            k: {"shape": list(s.shape), "dtype": str(np.dtype(s.dtype))}
            for k, s in self.observation_space.spaces.items()
        }

    def angle_joints(self) -> list[int]:
        """Indices in ``joints`` of the positions that live on a circle: unlimited hinges
        (an angle and the same angle plus 2 pi are one pose; ``ModelConfig.angle_joints``)."""
        m = self.backend.model
        return [i for i, j in enumerate(self.joint_ids)
                if int(m.jnt_type[j]) == int(mujoco.mjtJoint.mjJNT_HINGE)
                and not bool(m.jnt_limited[j])]

    def joints(self) -> np.ndarray:
        """Robot joint positions then velocities (float32), ordered as ``joint_names``."""
        d = self.backend.data
        return np.concatenate([d.qpos[self._qpos_idx], d.qvel[self._qvel_idx]]).astype(np.float32)

    def state_obs(self) -> dict[str, np.ndarray]:
        """Joints and features of the current state, whatever the observation mode."""
        return {"joints": self.joints(), "features": self.backend.features()}

    def render(self) -> np.ndarray:
        """One RGB frame (uint8, HxWx3) from the task camera, shadows and reflections off."""
        if self._renderer is None:
            s = self.image_size
            self._renderer = mujoco.Renderer(self.backend.model, s, s)
            _LIVE_ENVS.add(self)
            self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
            self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        self._renderer.update_scene(self.backend.data, camera=self.camera)
        return self._renderer.render().copy()

    def _observe(self, fresh: bool) -> dict[str, np.ndarray]:
        obs: dict[str, np.ndarray] = {}
        for k in self.obs_keys:
            if k == "joints":
                obs[k] = self.joints()
            elif k == "features":
                obs[k] = self.backend.features()
            else:
                frame = self.render()
                if fresh:
                    self._frames.clear()
                    for _ in range(self.frames):
                        self._frames.append(frame)
                else:
                    self._frames.append(frame)
                obs[k] = np.concatenate(list(self._frames), axis=-1)
        return obs

    # -- gymnasium API -------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start an episode. ``seed`` (or the constructor's, on the first reset) reseeds it."""
        super().reset(seed=seed)
        if seed is None and not self._seeded:
            seed = self._seed
        self._seeded = True
        self.backend.reset(seed)
        if self.controller is not None:
            self.controller.bind(self)  # the hand's new start orientation (and simulator)
        self._t = 0
        self._return = 0.0
        return self._observe(fresh=True), {}

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Apply ``action`` in [-1, 1]^A for ``action_repeat`` control steps.

        Returns ``(obs, 0.0, terminated, truncated, info)``; ``info`` holds the simulator's
        ``reward`` (evaluation only), ``success`` where defined, and ``episode_return``.
        """
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != self.action_space.shape:
            raise ValueError(f"action has shape {a.shape}, expected {self.action_space.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError("action has a non-finite value")
        low, high = self.backend.action_low, self.backend.action_high
        full = self._full_action.copy()
        a = np.clip(a, -1.0, 1.0)
        if self.controller is None:
            full[self.actuators] = a
        else:  # the TCP velocity asked (m/s); joint velocities follow the pose each step
            v = self.action_low + (a + 1.0) * 0.5 * (self.action_high - self.action_low)
        ctrl = low + (full + 1.0) * 0.5 * (high - low)
        reward = 0.0
        ended = False
        last_reward = 0.0
        repeat = self.spec_.action_repeat
        for i in range(repeat):
            if self.controller is not None:
                ctrl[self.controller.actuators] = self.controller.joint_velocities(v)
            last_reward, ended = self.backend.step(ctrl, observe=i == repeat - 1)
            reward += last_reward
            if ended:
                break
        self._t += 1
        self._return += reward
        truncated = self._t >= self.episode_length or ended
        info: dict[str, Any] = {"reward": reward, "episode_return": self._return}
        rule = self.spec_.success
        if rule == "final_reward":
            info["success"] = bool(last_reward >= 1.0 - 1e-6)
        elif rule == "solved":
            info["success"] = self.backend.solved()
        # dm_control and MyoSuite episodes end on time; an early physics end is a termination
        terminated = bool(ended and self._t < self.episode_length)
        return self._observe(fresh=False), 0.0, terminated, truncated and not terminated, info

    def close(self) -> None:
        """Free the renderer."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


def make_env(task: str, obs_mode: ObsMode = "state", seed: int | None = None, **kw: Any) -> WmilEnv:
    """Build the environment of registry task ``task``."""
    return WmilEnv(task, obs_mode=obs_mode, seed=seed, **kw)
