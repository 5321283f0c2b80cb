"""Reward-trained SAC experts: the learner, the trainer (resume, atomic policy) and the loader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from wmil_core.agents.sac import RewardSAC, SACConfig
from wmil_core.buffer import Batch, EpisodeBuffer
from wmil_core.collect import collect_demos
from wmil_core.config import from_dict
from wmil_core.demos import load_demos
from wmil_core.expert_train import ExpertTrainConfig, ExpertTrainer, expert_dir, expert_slug
from wmil_core.experts import make_expert
from wmil_core.experts.trained import TrainedExpert

TINY = {"batch_size": 32, "model": {"latent_dim": 16, "enc_dim": 32, "mlp_dim": 32, "num_q": 2}}
SPEC = {"joints": {"shape": [3], "dtype": "float32"}}


def test_buffer_keeps_rewards_only_when_asked(tmp_path: Path):
    obs = {"joints": np.arange(12, dtype=np.float32).reshape(4, 3)}
    act = np.zeros((3, 2), np.float32)
    plain = EpisodeBuffer(SPEC, 2, 10, 1)
    with pytest.raises(ValueError, match="stores none"):
        plain.add_episode(obs, act, rewards=np.ones(3, np.float32))
    plain.add_episode(obs, act)
    assert plain.sample(4, np.random.default_rng(0)).reward is None  # imitation: no reward

    buf = EpisodeBuffer(SPEC, 2, 10, 1, rewards=True)
    with pytest.raises(ValueError, match="has none"):
        buf.add_episode(obs, act)
    with pytest.raises(ValueError, match="rewards have shape"):
        buf.add_episode(obs, act, rewards=np.ones(2, np.float32))
    buf.add_episode(obs, act, rewards=np.array([1.0, 2.0, 3.0], np.float32))
    b = buf.sample(64, np.random.default_rng(0))
    # the reward of a window is the one of the step from its first observation
    first = b.obs["joints"][0, :, 0].numpy() / 3  # row index 0, 1, 2
    np.testing.assert_array_equal(b.reward[0, :, 0].numpy(), first + 1)
    buf.save(tmp_path / "b.npz")
    again = EpisodeBuffer(SPEC, 2, 10, 1, rewards=True)
    again.load(tmp_path / "b.npz")
    np.testing.assert_array_equal(again.reward, buf.reward)


def test_reward_sac_maximises_the_reward():
    """One-step episodes with reward -|a - 0.5|^2: the actor's mean action goes to 0.5."""
    torch.manual_seed(0)
    agent = RewardSAC({"joints": (3,)}, 2, 500, from_dict(SACConfig, {**TINY, "batch_size": 128}))
    rng = np.random.default_rng(0)

    def batch() -> Batch:
        a = rng.uniform(-1, 1, (1, 128, 2)).astype(np.float32)
        r = -((a - 0.5) ** 2).sum(-1, keepdims=True)
        obs = rng.normal(size=(2, 128, 3)).astype(np.float32)
        return Batch({"joints": torch.from_numpy(obs)}, torch.from_numpy(a),
                     torch.ones(1, 128, 1), torch.from_numpy(r))

    probe = {"joints": np.zeros(3, np.float32)}
    before = np.abs(agent.act(probe, t0=True, eval_mode=True) - 0.5).mean()
    for _ in range(400):
        stats = agent.update(batch())
    after = np.abs(agent.act(probe, t0=True, eval_mode=True) - 0.5).mean()
    assert after < 0.15 < before, (before, after)
    assert stats["critic_loss"] < 0.1
    with pytest.raises(ValueError, match="rewards"):
        agent.update(batch()._replace(reward=None))


def _cfg(**over) -> ExpertTrainConfig:
    base = dict(task="dmc/cartpole-balance", steps=120, seed_steps=40, eval_every=60,
                eval_episodes=1, checkpoint_every=60, episode_length=30, sac=TINY)
    return ExpertTrainConfig(**{**base, **over})


def test_trainer_writes_a_loadable_expert_and_resumes(tmp_path: Path):
    out = tmp_path / "exp"
    full = ExpertTrainer(_cfg(), out, progress=False)
    best = full.train()
    assert full.step == 120 and [h["step"] for h in full.history] == [60, 120]
    assert best["return_mean"] == max(h["return_mean"] for h in full.history)
    meta = json.loads((out / "expert.json").read_text())
    assert meta["evaluation"]["return_mean"] == pytest.approx(best["return_mean"])
    assert (out / "learning_curve.png").stat().st_size > 0

    # the saved policy acts as the trained actor did (at the evaluation it won)
    ex = TrainedExpert("dmc/cartpole-balance", out)
    assert ex.kind == "trained"
    obs = {k: np.zeros(v["shape"], np.float32) for k, v in full.env.obs_spec().items()}
    a = ex.act(obs)
    assert a.shape == (1,) and np.all(np.abs(a) <= 1)
    # replaying the winning evaluation's first episode gives the return it recorded
    env = full.eval_env
    obs, _ = env.reset(seed=full.cfg.seed + 10_000)
    ret, done = 0.0, False
    while not done:
        obs, _, term, trunc, info = env.step(ex.act(obs).astype(np.float32))
        ret += float(info["reward"])
        done = term or trunc
    assert ret == pytest.approx(meta["evaluation"]["returns"][0], rel=1e-5)

    # a run killed after its first checkpoint resumes to the same end state
    part = ExpertTrainer(_cfg(steps=60), tmp_path / "part", progress=False)
    part.train()
    again = ExpertTrainer(_cfg(), tmp_path / "part", progress=False)
    again.train(resume=True)
    assert again.step == 120 and again.episode == full.episode
    assert [h["step"] for h in again.history] == [h["step"] for h in full.history]
    for k, v in full.agent.model.state_dict().items():
        torch.testing.assert_close(again.agent.model.state_dict()[k], v)
    with pytest.raises(ValueError, match="holds a training run"):
        ExpertTrainer(_cfg(), out, progress=False).train()


def test_loader_refuses_bad_files(tmp_path: Path, monkeypatch):
    assert expert_slug("dmc/walker-walk") == "dmc-walker-walk"
    assert expert_dir("dmc/walker-walk").parts[-2:] == ("experts", "dmc-walker-walk")
    with pytest.raises(ValueError, match="no trained expert for dmc/cartpole-balance"):
        TrainedExpert("dmc/cartpole-balance", tmp_path)
    (tmp_path / "expert.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="unreadable expert file"):
        TrainedExpert("dmc/cartpole-balance", tmp_path)
    ExpertTrainer(_cfg(steps=60, eval_every=60), tmp_path / "e", progress=False).train()
    with pytest.raises(ValueError, match="an expert for dmc/cartpole-balance, not dmc/walker"):
        TrainedExpert("dmc/walker-walk", tmp_path / "e")
    # the registry's `sac` expert reads the task's expert directory
    import wmil_core.expert_train as et

    monkeypatch.setattr(et, "expert_dir", lambda task: tmp_path / "e")
    assert isinstance(make_expert("dmc/cartpole-balance", "sac"), TrainedExpert)


def test_trained_expert_records_demos(tmp_path: Path):
    out = tmp_path / "e"
    ExpertTrainer(_cfg(steps=60), out, progress=False).train()
    ex = TrainedExpert("dmc/cartpole-balance", out)
    import wmil_core.experts.base as base

    base._EXPERTS["test-sac"] = lambda task: ex
    try:
        collect_demos("dmc/cartpole-balance", 1, "state", tmp_path / "d.h5", seed=3,
                      progress=False, expert="test-sac")
    finally:
        del base._EXPERTS["test-sac"]
    ds = load_demos(tmp_path / "d.h5")
    ep = ds.episodes[0]
    expected = np.stack([ex.act({k: v[t] for k, v in ep.obs.items()})
                         for t in range(len(ep))])
    np.testing.assert_allclose(ep.actions, expected, atol=1e-6)
