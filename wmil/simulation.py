"""The simulator behind ``sim_node``, without rclpy: episodes, sim time, commands -> steps.

:class:`SimCore` wraps a registry task. It takes commands in actuator units (the
forward_command_controller format), keeps sim time (agent steps x step duration, continuing
across episodes), resets episode ``i`` with seed ``seed + i`` and reports each observation as
one :class:`SimFrame`: what the node publishes on the camera, joint and feature topics. The
final observation of an episode is not reported: an agent never acts on it.

MuJoCo's EGL renderer is bound to the thread that created it, so one thread must make and
use a SimCore (the node runs it on a dedicated worker thread).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from wmil_core.messages import command_to_action
from wmil_core.tasks import get_task, make_env


@dataclasses.dataclass(frozen=True)
class SimFrame:
    """One observation as published: all parts share ``stamp`` (sim time, s)."""

    stamp: float
    joints: np.ndarray  # float32 (2J,): positions then velocities
    features: np.ndarray | None  # float32 (F,), None when the task has no features
    image: np.ndarray | None  # uint8 (H, W, 3): one frame, None when not rendering
    episode: int
    step: int  # agent steps taken in this episode before this observation


@dataclasses.dataclass(frozen=True)
class EpisodeResult:
    """The statistics published on /wmil/episode when an episode ends (evaluation only)."""

    episode: int
    seed: int
    steps: int
    episode_return: float
    success: bool | None
    terminated: bool
    next_stamp: float | None  # stamp of the next episode's first observation (None: done)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of the /wmil/episode message."""
        return {"episode": self.episode, "seed": self.seed, "steps": self.steps,
                "return": self.episode_return, "success": self.success,
                "terminated": self.terminated, "next_stamp": self.next_stamp}


def default_obs_mode(task: str, preferred: str | None = None) -> str:
    """``preferred`` when the task offers it, else ``state`` when offered, else its first mode."""
    modes = get_task(task).modes
    if preferred and preferred in modes:
        return preferred
    return "state" if "state" in modes else modes[0]


class SimCore:
    """A registry task driven by actuator commands, one agent step per command.

    Args:
        task: registry task name.
        obs_mode: the env's observation mode ("": see :func:`default_obs_mode`); what is
            published does not depend on it, only whether the env renders anyway.
        seed: episode ``i`` is reset with seed ``seed + i``.
        episode_length: agent steps per episode (None or 0: the task's).
        episodes: stop after this many episodes (0: never).
        render: publish a camera frame with every observation.
    """

    def __init__(self, task: str, obs_mode: str = "", seed: int = 0,
                 episode_length: int | None = None, episodes: int = 0,
                 render: bool = True) -> None:
        if episodes < 0:
            raise ValueError(f"episodes: must be >= 0, got {episodes}")
        mode = default_obs_mode(task, obs_mode or None)
        if obs_mode and obs_mode != mode:
            raise ValueError(f"obs_mode: {task} has no mode {obs_mode!r}")
        self.env = make_env(task, mode, seed=seed, episode_length=episode_length or None)
        self.seed = int(seed)
        self.episodes = int(episodes)
        self.render = bool(render)
        self.joint_names: list[str] = list(self.env.joint_names)
        self.action_low = np.asarray(self.env.action_low, dtype=np.float64)
        self.action_high = np.asarray(self.env.action_high, dtype=np.float64)
        self.features_dim = int(self.env.state_obs()["features"].shape[0])
        self.step_dt = float(self.env.backend.control_dt) * int(self.env.spec_.action_repeat)
        self.episode = 0  # index of the running episode
        self.total_steps = 0  # agent steps over all episodes: sim time = total_steps * step_dt
        self.done = False
        self._t = 0
        self._frame: SimFrame | None = None

    @property
    def action_dim(self) -> int:
        """A, the command length."""
        return int(self.action_low.shape[0])

    @property
    def time(self) -> float:
        """Sim time (s)."""
        return self.total_steps * self.step_dt

    @property
    def default_rate(self) -> float:
        """Agent steps per second of sim time: 1 / (control_dt * action_repeat)."""
        return 1.0 / self.step_dt

    @property
    def frame(self) -> SimFrame | None:
        """The last observation reported (None before :meth:`reset` and when done)."""
        return self._frame

    def check_command(self, command: Any) -> str | None:
        """Why ``command`` cannot be applied (wrong length, non-finite), or None."""
        u = np.asarray(command, dtype=np.float64).reshape(-1)
        if u.shape != (self.action_dim,):
            return f"command has {u.size} values, the task has {self.action_dim} actuators"
        if not np.all(np.isfinite(u)):
            return "command has a non-finite value"
        return None

    def reset(self) -> SimFrame:
        """Start episode ``self.episode`` (seed ``seed + episode``); returns its first frame."""
        obs, _ = self.env.reset(seed=self.seed + self.episode)
        self._t = 0
        self._frame = self._observe(obs)
        return self._frame

    def step(self, command: Any) -> tuple[SimFrame | None, EpisodeResult | None]:
        """Apply one command (actuator units) for one agent step.

        Returns the next observation (the next episode's first one after an episode end;
        None once all episodes are done) and the finished episode's result, if any.
        """
        if self.done:
            raise RuntimeError("all episodes are done")
        if self._frame is None:
            raise RuntimeError("reset() first")
        why = self.check_command(command)
        if why is not None:
            raise ValueError(why)
        action = command_to_action(np.asarray(command, dtype=np.float64).reshape(-1),
                                   self.action_low, self.action_high)
        obs, _, terminated, truncated, info = self.env.step(action)
        self._t += 1
        self.total_steps += 1
        if not (terminated or truncated):
            self._frame = self._observe(obs)
            return self._frame, None
        finished = self.episode
        self.episode += 1
        self.done = self.episodes > 0 and self.episode >= self.episodes
        result = EpisodeResult(
            episode=finished, seed=self.seed + finished, steps=self._t,
            episode_return=float(info["episode_return"]),
            success=None if "success" not in info else bool(info["success"]),
            terminated=bool(terminated), next_stamp=None if self.done else self.time)
        if self.done:
            self._frame = None
            return None, result
        return self.reset(), result

    def _observe(self, obs: dict[str, np.ndarray]) -> SimFrame:
        state = self.env.state_obs()
        image = None
        if self.render:
            # the env renders pixel observations already: publish its newest frame
            image = obs["image"][..., -3:].copy() if "image" in obs else self.env.render()
        return SimFrame(
            stamp=self.time, joints=state["joints"].astype(np.float32),
            features=state["features"].astype(np.float32) if self.features_dim else None,
            image=image, episode=self.episode, step=self._t)

    def close(self) -> None:
        """Free the renderer (from the thread that used it)."""
        self.env.close()
