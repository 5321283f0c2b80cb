"""Expert rollouts: ``wmil expert eval`` (evaluation) and ``wmil demos collect`` (datasets)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from wmil_core.demos import DemoWriter, Episode
from wmil_core.experts import Expert, make_expert
from wmil_core.tasks import WmilEnv, make_env


@dataclasses.dataclass
class RolloutStats:
    """Scores of a set of episodes (simulator reward: evaluation only)."""

    task: str
    expert: str
    episodes: int
    returns: list[float]
    successes: list[bool]
    steps: int
    seconds: float

    @property
    def return_mean(self) -> float:  # noqa: D102
        return float(np.mean(self.returns))

    @property
    def return_std(self) -> float:  # noqa: D102
        return float(np.std(self.returns))

    @property
    def success_rate(self) -> float | None:  # noqa: D102
        return float(np.mean(self.successes)) if self.successes else None

    @property
    def steps_per_second(self) -> float:  # noqa: D102
        return self.steps / max(self.seconds, 1e-9)

    def as_dict(self) -> dict[str, Any]:
        """Plain-data summary for JSON."""
        return {
            "task": self.task,
            "expert": self.expert,
            "episodes": self.episodes,
            "return_mean": self.return_mean,
            "return_std": self.return_std,
            "success_rate": self.success_rate,
            "steps": self.steps,
            "steps_per_second": self.steps_per_second,
            "returns": self.returns,
        }


def play_episode(env: WmilEnv, act: Callable[[dict[str, np.ndarray], int], np.ndarray],
                 seed: int | None, on_reset: Callable[[WmilEnv], None] | None = None,
                 record: bool = True,
                 ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, dict[str, Any]]:
    """One seeded episode of ``act(obs, t)``: observations stacked per key (T+1 rows; empty
    unless ``record``), actions (T, A), the simulator's rewards (T) and the last step's info.

    The one episode loop of the project (expert demos, evaluation, the reward probe).
    ``on_reset(env)`` runs after the reset (an expert binds to the episode there).
    """
    obs, _ = env.reset(seed=seed)
    if on_reset is not None:
        on_reset(env)
    frames: dict[str, list[np.ndarray]] = {k: [v] for k, v in obs.items()} if record else {}
    actions, rewards, t, info = [], [], 0, {}
    while True:
        a = np.asarray(act(obs, t), dtype=np.float32)
        obs, _, term, trunc, info = env.step(a)
        actions.append(a)
        rewards.append(info["reward"])
        for k, v in frames.items():
            v.append(obs[k])
        t += 1
        if term or trunc:
            break
    return ({k: np.stack(v) for k, v in frames.items()}, np.stack(actions),
            np.asarray(rewards, dtype=np.float32), info)


def rollout(env: WmilEnv, expert: Expert, seed: int | None, record: bool) -> Episode:
    """Run one episode of ``expert`` in ``env``; observations are kept only when ``record``.

    The expert sees the state observation whatever the env's mode (the env's own dict when it
    already is the state, without a copy).
    """
    own_state = env.obs_mode == "state" and len(env.obs_keys) == 2

    def act(obs: dict[str, np.ndarray], t: int) -> np.ndarray:
        return expert.act(obs if own_state else env.state_obs())

    obs, actions, rewards, info = play_episode(env, act, seed, expert.reset, record)
    return Episode(obs=obs, actions=actions, rewards=rewards, success=info.get("success"))


def evaluate_expert(
    task: str, episodes: int = 10, seed: int = 0, expert: str | None = None, progress: bool = True
) -> RolloutStats:
    """Mean and std return and success rate of the task's expert over seeded episodes."""
    env = make_env(task, "state", seed=seed)
    ex = make_expert(task, expert)
    return _run(env, ex, episodes, seed, progress, writer=None)


def collect_demos(
    task: str,
    episodes: int,
    obs_mode: str,
    out: str | Path,
    seed: int = 0,
    expert: str | None = None,
    progress: bool = True,
    image_size: int | None = None,
    frames: int | None = None,
) -> RolloutStats:
    """Roll out the expert and write a demo file atomically (episode i uses seed ``seed + i``)."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    env = make_env(task, obs_mode, seed=seed, image_size=image_size,  # type: ignore[arg-type]
                   frames=frames)
    ex = make_expert(task, expert)
    desc = {"name": ex.name, "kind": getattr(ex, "kind", "scripted"), "seed": seed}
    with DemoWriter(out, task, obs_mode, env.obs_spec(), env.action_space.shape[0],
                    env.joint_names, desc) as writer:
        stats = _run(env, ex, episodes, seed, progress, writer)
    env.close()
    return stats


def _run(env: WmilEnv, ex: Expert, episodes: int, seed: int, progress: bool,
         writer: DemoWriter | None) -> RolloutStats:
    returns: list[float] = []
    successes: list[bool] = []
    steps = 0
    t0 = time.perf_counter()
    bar = tqdm(range(episodes), desc=f"{env.task_name} {ex.name}", unit="ep", disable=not progress)
    for i in bar:
        ep = rollout(env, ex, seed + i, record=writer is not None)
        if writer is not None:
            writer.add_episode(ep)
        returns.append(ep.ret)
        if ep.success is not None:
            successes.append(ep.success)
        steps += len(ep)
        bar.set_postfix(ret=f"{np.mean(returns):.1f}",
                        sps=f"{steps / (time.perf_counter() - t0):.0f}")
    return RolloutStats(env.task_name, ex.name, episodes, returns, successes, steps,
                        time.perf_counter() - t0)
