"""The averaged copy of the networks (IQMPCConfig.ema): its update, who plans with it, its
persistence, export, and the trainer's paired evaluation."""

import json

import numpy as np
import pytest
import torch
from agent_harness import MODES, TINY

from wmil_core.agents.iqmpc import IQMPC, IQMPCConfig
from wmil_core.buffer import Batch
from wmil_core.config import from_dict
from wmil_core.export import export_agent
from wmil_core.runtime import Planner, load_bundle

torch.set_num_threads(1)
SHAPES = MODES["state"]


def _agent(ema: float, mpc: bool = True, seed: int = 0) -> IQMPC:
    torch.manual_seed(seed)
    return IQMPC(SHAPES, 2, 50, from_dict(IQMPCConfig, {**TINY, "ema": ema, "mpc": mpc}))


def _batch(n: int = 8, horizon: int = 3, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    obs = {k: torch.randn(horizon + 1, n, *s, generator=g) for k, s in SHAPES.items()}
    act = torch.rand(horizon, n, 2, generator=g) * 2 - 1
    return Batch(obs, act, torch.zeros(horizon, n, 1))


def _obs(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()}


def _perturb(model: torch.nn.Module, seed: int = 5) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.3)


def test_off_by_default_and_checked():
    agent = _agent(0.0)
    assert agent.ema_model is None and agent.deploy_model is agent.model
    assert "ema_model" not in agent.state_dict()
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="ema: must be in"):
            from_dict(IQMPCConfig, {"ema": bad})


def test_each_update_moves_the_copy_by_the_rate_towards_the_online_networks():
    rate = 0.25
    agent = _agent(rate)
    _perturb(agent.ema_model)  # so that the copy and the networks differ before the update
    before = [p.detach().clone() for p in agent.ema_model.parameters()]
    agent.update(_batch(seed=1), _batch(seed=2))
    after_online = list(agent.model.parameters())
    moved = 0
    for old, new, online in zip(before, agent.ema_model.parameters(), after_online, strict=True):
        torch.testing.assert_close(new, old + rate * (online.detach() - old), rtol=0, atol=1e-6)
        moved += int(not torch.equal(new, old))
        assert not new.requires_grad
    assert moved > 0


def test_evaluation_plans_with_the_copy_and_training_with_the_online_networks():
    agent = _agent(0.01, mpc=False)  # the prior's mean: a deterministic readout of the networks
    _perturb(agent.ema_model)
    obs = _obs()
    with torch.no_grad():
        o = agent.obs_to_tensors(obs)
        ema_mu = agent.ema_model.pi(agent.ema_model.encode(o))[0][0].numpy()
        online_mu = agent.model.pi(agent.model.encode(o))[0][0].numpy()
    assert np.abs(ema_mu - online_mu).max() > 1e-3
    np.testing.assert_allclose(agent.act(obs, t0=True, eval_mode=True), ema_mu, atol=1e-6)
    with agent.online_evaluation():
        np.testing.assert_allclose(agent.act(obs, t0=True, eval_mode=True), online_mu, atol=1e-6)
    np.testing.assert_allclose(agent.act(obs, t0=True, eval_mode=True), ema_mu, atol=1e-6)
    # training's rollouts sample around the online prior: same noise, online networks
    torch.manual_seed(3)
    explore = agent.act(obs, t0=True)
    torch.manual_seed(3)
    with torch.no_grad():
        _, a, _, _ = agent.model.pi(agent.model.encode(o))
    np.testing.assert_allclose(explore, a[0].numpy(), atol=1e-6)
    # and the decoded reward is the copy's
    rng = np.random.default_rng(1)
    ep = {k: rng.standard_normal((4, *s)).astype(np.float32) for k, s in SHAPES.items()}
    acts = rng.uniform(-1, 1, (3, 2)).astype(np.float32)
    with_copy = agent.decode_rewards(ep, acts)
    with agent.online_evaluation():  # evaluating the online networks decodes with them too
        with_online = agent.decode_rewards(ep, acts)
    assert np.abs(with_online - with_copy).max() > 1e-4
    agent.ema_model.load_state_dict(agent.model.state_dict())
    np.testing.assert_allclose(agent.decode_rewards(ep, acts), with_online, atol=1e-6)
    assert np.abs(agent.decode_rewards(ep, acts) - with_copy).max() > 1e-4


def test_the_copy_is_saved_restored_and_started_from_a_checkpoint_without_one():
    agent = _agent(0.1)
    _perturb(agent.ema_model)
    state = agent.state_dict()
    restored = _agent(0.1, seed=7)
    restored.load_state_dict(state)
    for a, b in zip(agent.ema_model.parameters(), restored.ema_model.parameters(), strict=True):
        assert torch.equal(a, b)
    # a run without the copy, branched with ema on: the copy starts at its online networks
    plain = _agent(0.0, seed=9)
    branch = _agent(0.1)
    branch.load_state_dict(plain.state_dict())
    for a, b in zip(plain.model.parameters(), branch.ema_model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_export_writes_the_copy(tmp_path):
    agent = _agent(0.1, mpc=False)
    with torch.no_grad():
        for p in agent.model._Qs.out.parameters():
            p.normal_(0.0, 0.5)
    agent.ema_model.load_state_dict(agent.model.state_dict())
    _perturb(agent.ema_model)
    meta = {"task": "dmc/reacher-easy", "joint_names": ["shoulder", "wrist"],
            "action_low": [-1.0, -1.0], "action_high": [1.0, 1.0]}
    export_agent(agent, tmp_path / "b", meta)
    planner = Planner(load_bundle(tmp_path / "b"))
    obs = _obs(2)
    with torch.no_grad():
        o = agent.obs_to_tensors(obs)
        ema_z = agent.ema_model.encode(o)[0].numpy()
        online_z = agent.model.encode(o)[0].numpy()
    z = planner.encode(obs).reshape(-1)
    np.testing.assert_allclose(z, ema_z, atol=1e-4)
    assert np.abs(z - online_z).max() > 1e-2


def test_training_scores_the_copy_and_the_online_networks_on_the_same_seeds(tmp_path):
    import csv

    from wmil_core.collect import collect_demos
    from wmil_core.train import TrainConfig, Trainer

    demos = tmp_path / "d.h5"
    collect_demos("dmc/cartpole-swingup", 1, "state", demos, seed=0, progress=False)
    agent = {"model": {"latent_dim": 16, "mlp_dim": 32, "enc_dim": 32}, "batch_size": 8,
             "planner": {"num_samples": 16, "num_pi_trajs": 2, "num_elites": 4,
                         "iterations": 1}, "ema": 0.5}
    cfg = TrainConfig(task="dmc/cartpole-swingup", demos=str(demos), offline_steps=2, steps=30,
                      seed_steps=10, eval_every=30, eval_episodes=1, checkpoint_every=30,
                      episode_length=15, buffer_size=100, threads=1, agent=agent)
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    result = trainer.train()
    assert {"online_normalized_score", "online_return_mean"} <= set(result)
    rows = [r for r in csv.DictReader((tmp_path / "run" / "metrics.csv").open())
            if r["phase"] == "eval"]
    assert rows and all(r["online_normalized_score"] != "" for r in rows)
    # the two scores come from different networks on the same episode seed
    torch.manual_seed(0)
    ema_score = trainer.evaluate(1)["return_mean"]
    with trainer.agent.online_evaluation():
        online_score = trainer.evaluate(1)["return_mean"]
    assert ema_score != online_score
    state = torch.load(tmp_path / "run" / "checkpoints" / "latest.pt", weights_only=False)
    assert "ema_model" in state["agent"]
    # `wmil eval --online` scores the online networks, by default the averaged copy; the
    # policy prior's mean acts deterministically, so each must repeat its in-process score
    from wmil_core.cli import main

    trainer.agent.cfg.mpc = False
    averaged = trainer.evaluate(1)["returns"]
    with trainer.agent.online_evaluation():
        online = trainer.evaluate(1)["returns"]
    assert averaged != online
    run = tmp_path / "run"
    for flags, networks, returns in (([], "averaged", averaged), (["--online"], "online", online)):
        assert main(["eval", str(run), "--episodes", "1", "--prior", *flags]) == 0
        tag = "-prior" + ("-online" if flags else "")
        saved = json.loads((run / f"eval-{trainer.step}{tag}.json").read_text())
        assert saved["networks"] == networks
        np.testing.assert_allclose(saved["returns"], returns, rtol=1e-5)
