"""The SAC-based imitation baselines: they learn from demos and resume exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import wmil_core.agents.sac as sac
import wmil_core.losses as losses
from wmil_core.agents import METHODS, make_agent
from wmil_core.buffer import Batch, EpisodeBuffer
from wmil_core.collect import collect_demos
from wmil_core.demos import load_demos
from wmil_core.train import TrainConfig, Trainer

TINY = {"model": {"latent_dim": 16, "mlp_dim": 32, "enc_dim": 32, "num_q": 2}, "batch_size": 16}


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demos") / "reacher.h5"
    collect_demos("dmc/reacher-easy", 2, "state", out, seed=0, progress=False)
    return out


def setup(demos: Path, method: str, **over):
    torch.manual_seed(0)
    ds = load_demos(demos)
    buf = EpisodeBuffer(ds.obs_spec, ds.action_dim, 2000, 1)
    buf.add_dataset(ds)
    shapes = {k: tuple(v["shape"]) for k, v in ds.obs_spec.items()}
    agent, _, h = make_agent(method, "cpu", {**TINY, **over}, shapes, ds.action_dim, 500)
    assert h == 1
    return agent, buf


def random_actions(b: Batch, rng: np.random.Generator) -> Batch:
    """The same states with uniformly random actions (a stand-in for a poor behaviour policy)."""
    return b._replace(action=torch.from_numpy(
        rng.uniform(-1, 1, b.action.shape).astype(np.float32)))


def policy_error(agent, b: Batch) -> float:
    """Mean |pi's mean action - the expert's| on the batch's first states."""
    with torch.no_grad():
        z = agent.model.encode({k: v[0] for k, v in b.obs.items()})
        mu = agent.model.pi(z, deterministic=True)[0]
    return float((mu - b.action[0]).abs().mean())


def test_registry_and_the_shared_loss():
    assert set(METHODS) == {"iqmpc", "bc", "iql-sac", "gail-sac"}
    with pytest.raises(ValueError, match="iql-sac, gail-sac"):
        make_agent("sqil", "cpu", None, {"joints": (4,)}, 2, 500)
    assert sac.iq_loss is losses.iq_loss  # IQL+SAC uses IQ-MPC's inverse soft-Q loss itself
    with pytest.raises(ValueError, match="value_term"):
        make_agent("iql-sac", "cpu", {"value_term": "x"}, {"joints": (4,)}, 2, 500)


@pytest.mark.parametrize("value_term", ["v0", "td", "mix", "expert"])
def test_iql_sac_learns_the_expert_reward_and_moves_towards_its_actions(demos, value_term):
    agent, buf = setup(demos, "iql-sac", value_term=value_term)
    rng = np.random.default_rng(0)
    held = buf.sample(256, rng, "cpu")
    err0 = policy_error(agent, held)
    for _ in range(300):
        stats = agent.update(buf.sample(16, rng, "cpu"), random_actions(buf.sample(16, rng, "cpu"),
                                                                         rng))
    assert all(np.isfinite(v) for v in stats.values())
    assert stats["reward_expert"] > stats["reward_behaviour"] + 0.1

    def decoded(b: Batch) -> float:
        obs = {k: v[:, 0].numpy() for k, v in b.obs.items()}  # one transition of sample 0
        return float(agent.decode_rewards(obs, b.action[:, 0].numpy())[0])

    exp = np.mean([decoded(held._replace(obs={k: v[:, i:i + 1] for k, v in held.obs.items()},
                                         action=held.action[:, i:i + 1])) for i in range(64)])
    rnd = random_actions(held, rng)
    beh = np.mean([decoded(rnd._replace(obs={k: v[:, i:i + 1] for k, v in rnd.obs.items()},
                                        action=rnd.action[:, i:i + 1])) for i in range(64)])
    assert exp > beh + 0.1
    assert policy_error(agent, held) < 0.8 * err0


def test_gail_sac_discriminates_and_rewards_expert_actions(demos):
    agent, buf = setup(demos, "gail-sac")
    rng = np.random.default_rng(0)
    assert agent.update(buf.sample(16, rng, "cpu"), None) == {}  # nothing to learn offline
    for _ in range(300):
        stats = agent.update(buf.sample(16, rng, "cpu"), random_actions(buf.sample(16, rng, "cpu"),
                                                                         rng))
    assert all(np.isfinite(v) for v in stats.values())
    assert stats["d_expert"] > stats["d_behaviour"] + 0.3
    held = buf.sample(256, rng, "cpu")
    obs0 = {k: v[0] for k, v in held.obs.items()}
    with torch.no_grad():
        r_exp = agent.reward(obs0, held.action[0]).mean()
        r_rnd = agent.reward(obs0, random_actions(held, rng).action[0]).mean()
    assert r_exp > r_rnd + 0.5


@pytest.mark.parametrize("method", ["iql-sac", "gail-sac"])
def test_baseline_runs_resume_exactly(demos, tmp_path, method):
    def cfg(steps: int) -> TrainConfig:
        return TrainConfig(task="dmc/reacher-easy", demos=str(demos), method=method, agent=TINY,
                           offline_steps=5, steps=steps, seed_steps=20, eval_every=30,
                           eval_episodes=1, checkpoint_every=30, episode_length=30,
                           buffer_size=200, threads=1)

    straight = Trainer(cfg(60), tmp_path / "a", progress=False)
    straight.train()
    Trainer(cfg(30), tmp_path / "b", progress=False).train()
    resumed = Trainer(cfg(60), tmp_path / "b", progress=False)
    resumed.train(resume=True)
    a, b = straight.agent.state_dict()["model"], resumed.agent.state_dict()["model"]
    assert resumed.step == 60 and resumed.agent.updates == straight.agent.updates > 0
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [h["step"] for h in resumed.history] == [0, 30, 60]
