"""Scripted and shipped trained experts beat their targets on a few seeded episodes; random
actions do not."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import pytest

from wmil_core.experts import make_expert
from wmil_core.tasks.env import WmilEnv, make_env

# task -> (episodes, metric, target); the metric is the mean return or the success rate
CASES: dict[str, tuple[int, str, float]] = {
    "dmc/cartpole-swingup": (3, "return", 800.0),
    "dmc/reacher-easy": (3, "return", 900.0),
    "jaco/reach-site": (5, "success", 0.95),
    "jaco/reach-duplo": (3, "success", 0.95),
    # SAC experts shipped in models/experts/ (wmil expert train)
    "dmc/walker-walk": (2, "return", 850.0),
    "dmc/cheetah-run": (2, "return", 450.0),
}

Policy = Callable[[dict[str, np.ndarray]], np.ndarray]


@functools.cache
def _env(task: str) -> WmilEnv:
    return make_env(task, obs_mode="state", seed=0)


def _episode(env: WmilEnv, seed: int, policy: Policy, on_reset: Callable[[], None]) -> dict:
    obs, _ = env.reset(seed=seed)
    on_reset()
    info: dict = {}
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(policy(obs))
        done = terminated or truncated
    return info


def _random_policy(seed: int, dim: int) -> Policy:
    rng = np.random.default_rng(seed)
    return lambda _obs: rng.uniform(-1.0, 1.0, dim)


@functools.cache
def _scores(task: str, who: str) -> tuple[float, float]:
    """(mean return, success rate) of the expert or of uniform random actions on seeds 0..n-1."""
    env = _env(task)
    episodes = CASES[task][0]
    returns, successes = [], []
    for seed in range(episodes):
        if who == "expert":
            expert = make_expert(task)
            info = _episode(env, seed, expert.act, lambda e=expert: e.reset(env))
        else:
            policy = _random_policy(seed, env.action_space.shape[0])
            info = _episode(env, seed, policy, lambda: None)
        returns.append(info["episode_return"])
        successes.append(float(info.get("success", False)))
    return float(np.mean(returns)), float(np.mean(successes))


def _metric(task: str, who: str) -> float:
    mean_return, success_rate = _scores(task, who)
    return mean_return if CASES[task][1] == "return" else success_rate


@pytest.mark.parametrize("task", list(CASES))
def test_expert_beats_target(task: str) -> None:
    _, metric, target = CASES[task]
    value = _metric(task, "expert")
    assert value >= target, f"{task}: expert {metric} {value:.3f} < {target}"


@pytest.mark.parametrize("task", list(CASES))
def test_random_actions_score_far_lower(task: str) -> None:
    _, metric, target = CASES[task]
    random_return, random_success = _scores(task, "random")
    expert_return, _ = _scores(task, "expert")
    assert random_return < 0.5 * expert_return, f"{task}: random return {random_return:.1f}"
    if metric == "return":
        assert random_return < 0.5 * target
    else:
        assert random_success <= 0.5 * target, f"{task}: random success {random_success:.2f}"


def test_expert_is_deterministic() -> None:
    task = "dmc/cartpole-swingup"
    env = _env(task)
    expert = make_expert(task)
    obs, _ = env.reset(seed=0)
    expert.reset(env)
    a = expert.act(obs)
    assert a.shape == env.action_space.shape and np.all(np.abs(a) <= 1.0)
    np.testing.assert_array_equal(a, expert.act(obs))


def test_no_expert_for_hopper() -> None:
    with pytest.raises(ValueError, match="no expert"):
        make_expert("dmc/hopper-hop")


def test_expert_rejects_foreign_task() -> None:
    with pytest.raises(ValueError, match="supports"):
        make_expert("dmc/walker-walk", name="cartpole-energy")


def test_jaco_expert_acts_on_the_free_actuators_and_refuses_a_held_arm_joint() -> None:
    """jaco-reach returns one action per actuator the task leaves free (the six arm joints of
    jaco/reach-site) and refuses a task that holds an arm joint it must drive."""
    import dataclasses

    from wmil_core.tasks import get_task

    env = make_env("jaco/reach-site", "state", seed=0)
    try:
        obs, _ = env.reset()
        expert = make_expert("jaco/reach-site")
        expert.reset(env)
        assert expert.act(obs).shape == (6,)
    finally:
        env.close()
    spec = dataclasses.replace(get_task("jaco/reach-site"),
                               hold_actions={"jaco_arm/joint_2": 0.0})
    env = make_env(spec, "state", seed=0)
    try:
        env.reset()
        with pytest.raises(ValueError, match="holds one of their actuators"):
            make_expert("jaco/reach-site").reset(env)
    finally:
        env.close()
