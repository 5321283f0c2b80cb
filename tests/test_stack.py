"""Closed loop over real DDS: sim + planner (fake policy) in lockstep equal the in-process run."""

from __future__ import annotations

import argparse
import random

import numpy as np
import pytest
from ros_harness import CARTPOLE, FakePlanner, factory, state_manifest

from wmil.stack import add_command, file_parameters, run_stack
from wmil_core.tasks import make_env


def in_process_returns(seed: int, episodes: int, length: int) -> list[float]:
    """The fake policy run directly on the env: episode i with seed + i."""
    env = make_env(CARTPOLE, "state", seed=seed, episode_length=length)
    policy = FakePlanner()
    out = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        while True:
            obs, _, term, trunc, info = env.step(policy.act(obs))
            if term or trunc:
                break
        out.append(info["episode_return"])
    env.close()
    return out


def test_lockstep_closed_loop_matches_in_process_run():
    seed, length, episodes = 3, 20, 2
    planner = FakePlanner()
    result = run_stack(
        {"sim": {"episode_length": length, "seed": seed},
         "planner": {"model_dir": "fake"}},
        episodes=episodes, timeout=60.0, domain_id=random.randint(110, 190),
        planner_factory=factory({"fake": (lambda: planner, state_manifest())}))
    want = in_process_returns(seed, episodes, length)
    got = [e["return"] for e in result.episodes]
    assert got == want  # exactly: lockstep loses and reorders nothing
    assert [e["steps"] for e in result.episodes] == [length, length]
    assert [e["seed"] for e in result.episodes] == [seed, seed + 1]
    assert len(planner.calls) == episodes * length  # one plan per observation
    # the first plan of the run starts cold; later steps warm-start (at most one t0 per
    # episode: the second one depends on which topic arrives first, so it is not counted)
    t0s = [t0 for _, t0 in planner.calls]
    assert t0s[0] is True and 1 <= t0s.count(True) <= episodes
    assert result.latency["commands"] == episodes * length
    assert np.isfinite(result.latency["command_p50_ms"])


def test_params_file_and_cli_registration(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("/**:\n  ros__parameters:\n    a: 1\nwmil_sim:\n  ros__parameters:\n"
                 "    a: 2\n    mode: realtime\n")
    assert file_parameters(f, "wmil_sim") == {"a": 2, "mode": "realtime"}
    assert file_parameters(f, "wmil_planner") == {"a": 1}
    parser = argparse.ArgumentParser()
    add_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["stack", "--model", "m", "--episodes", "3", "--sim-mode",
                              "realtime"])
    assert (args.model, args.episodes, args.sim_mode) == ("m", 3, "realtime")
    assert callable(args.func)
    with pytest.raises(ValueError, match="episodes"):
        run_stack({"planner": {"model_dir": "m"}}, episodes=0)


def test_real_bundle_closed_loop_matches_in_process_planner(tmp_path):
    """The default factory (onnxruntime runtime) on a tiny exported agent, through ROS."""
    torch = pytest.importorskip("torch")
    from wmil_core.agents.iqmpc import IQMPC, IQMPCConfig
    from wmil_core.config import from_dict
    from wmil_core.export import export_agent
    from wmil_core.runtime import Planner, load_bundle

    torch.set_num_threads(1)
    torch.manual_seed(0)
    tiny = {"model": {"latent_dim": 16, "mlp_dim": 32, "enc_dim": 32, "num_q": 2},
            "batch_size": 8, "planner": {"num_samples": 32, "num_pi_trajs": 4,
                                         "num_elites": 4, "iterations": 2, "horizon": 3}}
    agent = IQMPC({"joints": (4,), "features": (3,)}, 1, 50, from_dict(IQMPCConfig, tiny))
    bundle = export_agent(agent, tmp_path / "cartpole", {
        "task": CARTPOLE, "joint_names": ["slider", "hinge_1"], "action_low": [-1.0],
        "action_high": [1.0], "training": {"step": 42}})
    seed, length = 7, 10
    result = run_stack({"sim": {"episode_length": length, "seed": seed},
                        "planner": {"model_dir": str(bundle), "threads": 1}},
                       episodes=1, timeout=60.0, domain_id=random.randint(110, 190))
    # the same planner (same noise seed) in-process, t0 on the first step
    planner = Planner(load_bundle(bundle), threads=1)
    env = make_env(CARTPOLE, "state", seed=seed, episode_length=length)
    obs, _ = env.reset(seed=seed)
    for t in range(length):
        obs, _, term, trunc, info = env.step(planner.act(obs, t0=t == 0))
        if term or trunc:
            break
    env.close()
    assert result.episodes[0]["return"] == info["episode_return"]
    assert result.episodes[0]["steps"] == length
    assert result.latency["plan_p50_ms"] > 0
