"""A tiny IQ-MPC run end to end: trains, checkpoints, resumes exactly, evaluates; bad input."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from wmil_core.cli import main
from wmil_core.collect import collect_demos
from wmil_core.train import TrainConfig, Trainer

TINY_AGENT = {
    "model": {"latent_dim": 16, "mlp_dim": 32, "enc_dim": 32, "num_q": 2},
    "batch_size": 8,
    "planner": {"num_samples": 32, "num_pi_trajs": 4, "num_elites": 4, "iterations": 2},
}


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demos") / "reacher.h5"
    collect_demos("dmc/reacher-easy", 2, "state", out, seed=0, progress=False)
    return out


def tiny(demo_file: Path, **kw) -> TrainConfig:
    base = dict(task="dmc/reacher-easy", demos=str(demo_file), agent=TINY_AGENT, offline_steps=10,
                steps=120, seed_steps=40, eval_every=60, eval_episodes=1, checkpoint_every=60,
                episode_length=30, buffer_size=500, threads=1)
    base.update(kw)
    return TrainConfig(**base)


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.agent.model.state_dict().items()}


def test_tiny_run_trains_checkpoints_and_evaluates(demos, tmp_path):
    run = tmp_path / "run"
    trainer = Trainer(tiny(demos), run, progress=False)
    before = weights(trainer)
    result = trainer.train()
    assert trainer.step == 120 and trainer.agent.updates > 50
    after = weights(trainer)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    for f in ["config.yaml", "agent.yaml", "metrics.csv", "eval.json",
              "checkpoints/latest.pt", "checkpoints/buffer.npz", "plots/learning_curve.png"]:
        assert (run / f).is_file(), f
    assert list((run / "tb").iterdir()), "no TensorBoard events"
    assert {"return_mean", "normalized_score", "reward_correlation"} <= set(result)
    evals = [r for r in trainer.history]
    assert [r["step"] for r in evals] == [0, 60, 120]  # after offline pre-training, then online
    # best.pt holds the agent of the best evaluation (the first of equal ones)
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=False)
    scores = [r["normalized_score"] for r in evals]
    assert best["history"][-1]["normalized_score"] == max(scores)
    assert best["step"] == evals[scores.index(max(scores))]["step"]
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert "consistency_loss" in header and "iq_loss" in header
    # evaluation episodes start at the seed asked for (the demos' seeds replay their targets)
    seen, reset = [], trainer.eval_env.reset
    trainer.eval_env.reset = lambda **kw: (seen.append(kw["seed"]), reset(**kw))[1]
    trainer.evaluate(2, seed=7)
    trainer.evaluate(1)
    assert seen == [7, 8, 10_000]
    # the run directory cannot be reused by accident
    with pytest.raises(ValueError, match="holds a run already"):
        Trainer(tiny(demos), run, progress=False).train()


def test_resume_gives_the_same_weights_as_not_stopping(demos, tmp_path):
    straight = Trainer(tiny(demos), tmp_path / "a", progress=False)
    straight.train()
    first = Trainer(tiny(demos, steps=60), tmp_path / "b", progress=False)
    first.train()  # "killed" after the checkpoint at step 60
    # ... and after logging a few more rows, which the resumed run logs again
    metrics = tmp_path / "b" / "metrics.csv"
    lines = metrics.read_text().splitlines()
    last = lines[-1].split(",")
    late = [",".join([str(int(last[0]) + 10 * i), "online", str(int(last[2]) + 10 * i),
                      *last[3:]]) for i in (1, 2)]
    metrics.write_text("\n".join(lines + late) + "\n")
    resumed = Trainer(tiny(demos), tmp_path / "b", progress=False)
    resumed.train(resume=True)
    assert resumed.step == 120
    a, b = weights(straight), weights(resumed)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert resumed.behaviour.num_steps == straight.behaviour.num_steps

    def logged(run: str) -> list[tuple[str, ...]]:
        with (tmp_path / run / "metrics.csv").open() as f:
            return [(r["step"], r["phase"], r["update"]) for r in csv.DictReader(f)]

    assert logged("b") == logged("a")  # no row twice, none lost
    # wall time adds up over the two segments: the resumed evaluations continue from the
    # first segment's time instead of restarting at zero
    walls = [h["wall_s"] for h in resumed.history]
    assert walls == sorted(walls) and walls[1] == first.history[-1]["wall_s"]
    assert resumed.clock.before >= first.history[-1]["wall_s"] > 0


def test_corrupt_checkpoint_is_refused_and_left_alone(demos, tmp_path):
    run = tmp_path / "run"
    Trainer(tiny(demos, steps=30, offline_steps=0), run, progress=False).train()
    ckpt = run / "checkpoints" / "latest.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    data = ckpt.read_bytes()
    with pytest.raises(ValueError, match="corrupt or incompatible checkpoint"):
        Trainer(tiny(demos), run, progress=False).train(resume=True)
    assert ckpt.read_bytes() == data


def test_demos_of_another_task_or_empty_are_refused(demos, tmp_path):
    with pytest.raises(ValueError, match="recorded for task 'dmc/reacher-easy'"):
        Trainer(tiny(demos, task="dmc/reacher-hard"), tmp_path / "r", progress=False)
    with pytest.raises(ValueError, match="demos: a demo file is required"):
        Trainer(tiny(demos, demos=""), tmp_path / "r", progress=False)
    pix = tmp_path / "pix.h5"
    collect_demos("dmc/reacher-easy", 1, "pixels", pix, expert="random", progress=False)
    # a pixel dataset trains a pixel agent: the spec comes from the file, and must match
    trainer = Trainer(tiny(pix, steps=0), tmp_path / "p", progress=False)
    assert trainer.obs_mode == "pixels"


def test_non_finite_loss_stops_with_the_last_checkpoint_kept(demos, tmp_path, monkeypatch):
    run = tmp_path / "run"
    trainer = Trainer(tiny(demos, steps=60), run, progress=False)
    trainer.train()
    ckpt = (run / "checkpoints" / "latest.pt").read_bytes()
    resumed = Trainer(tiny(demos), run, progress=False)
    with torch.no_grad():
        for p in resumed.agent.model._Qs.parameters():
            p.fill_(float("nan"))
    monkeypatch.setattr(resumed, "load_checkpoint", lambda: None)  # keep the NaN weights
    resumed.step, resumed.episode = 60, 2
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        resumed.train(resume=True)
    assert (run / "checkpoints" / "latest.pt").read_bytes() == ckpt


def test_cli_train_eval_and_errors(demos, tmp_path, capsys):
    run = tmp_path / "cli"
    cfg = tmp_path / "t.yaml"
    cfg.write_text(
        "agent:\n  model: {latent_dim: 16, mlp_dim: 32, enc_dim: 32, num_q: 2}\n"
        "  batch_size: 8\n"
        "  planner: {num_samples: 32, num_pi_trajs: 4, num_elites: 4, iterations: 2}\n"
        "episode_length: 30\nbuffer_size: 500\nthreads: 1\neval_episodes: 1\n"
    )
    rc = main(["train", "--config", str(cfg), "--task", "dmc/reacher-easy", "--demos",
               str(demos), "--steps", "60", "--seed-steps", "30", "--eval-every", "60",
               "--checkpoint-every", "60", "--out", str(run)])
    assert rc == 0
    assert "normalized score" in capsys.readouterr().out
    assert main(["eval", str(run), "--episodes", "1"]) == 0
    assert json.loads((run / "eval-60.json").read_text())["seed"] == 10_000  # as training does
    # --seed 0 replays the demos' episodes (collected from seed 0): their targets
    assert main(["eval", str(run), "--episodes", "1", "--seed", "0"]) == 0
    assert json.loads((run / "eval-60-seed0.json").read_text())["seed"] == 0
    _check_eval_acting_overrides(run, capsys)
    assert main(["train", "--task", "dmc/reacher-easy", "--demos", str(tmp_path / "no.h5"),
                 "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("wmil: error:") and "no such file" in err and "\n" not in err


def _check_eval_acting_overrides(run, capsys):
    """``wmil eval --prior`` never plans; ``--samples/--iterations`` reach the planner."""
    import wmil_core.agents.iqmpc as iqmpc

    seen = []
    real_plan = iqmpc.plan

    def spy(model, z, cfg, *a, **kw):
        seen.append((cfg.num_samples, cfg.iterations, cfg.num_pi_trajs, cfg.max_std))
        return real_plan(model, z, cfg, *a, **kw)

    iqmpc.plan = spy
    try:
        assert main(["eval", str(run), "--episodes", "1", "--prior"]) == 0
        assert seen == []
        prior = json.loads((run / "eval-60-prior.json").read_text())
        assert prior["acting"].startswith("policy prior")
        # the prior's mean action is deterministic: a second evaluation repeats it exactly
        assert main(["eval", str(run), "--episodes", "1", "--prior", "--out",
                     str(run / "again.json")]) == 0
        assert json.loads((run / "again.json").read_text())["returns"] == prior["returns"]
        assert main(["eval", str(run), "--episodes", "1", "--samples", "16",
                     "--iterations", "1"]) == 0
        assert seen and set(seen) == {(16, 1, 4, 2.0)}  # pi samples stay as trained
        planned = json.loads((run / "eval-60-s16-i1.json").read_text())
        assert planned["planner"]["num_samples"] == 16 and planned["acting"] == "mpc"
        seen.clear()
        assert main(["eval", str(run), "--episodes", "1", "--max-std", "0.5"]) == 0
        assert seen and {s[3] for s in seen} == {0.5}
        narrow = json.loads((run / "eval-60-std0.5.json").read_text())
        assert narrow["planner"]["max_std"] == 0.5
    finally:
        iqmpc.plan = real_plan
    capsys.readouterr()
    for bad, msg in ((["--prior", "--samples", "16"], "--prior: acts without planning"),
                     (["--prior", "--max-std", "1"], "--prior: acts without planning"),
                     (["--max-std", "0"], "--max-std: must be > 0, got 0.0"),
                     (["--shards", "2"], "--shards: applies to bundles only"),
                     (["--online"], "--online: " + str(run) + " keeps no averaged copy"),
                     (["--samples", "4"], "num_pi_trajs")):
        assert main(["eval", str(run), "--episodes", "1", *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert msg in err and "\n" not in err, err


def test_acting_overrides_refuse_agents_that_do_not_plan():
    from wmil_core.agents.bc import BC, BCConfig
    from wmil_core.cli import set_acting

    bc = BC({"joints": (4,), "features": (2,)}, 2, 100, BCConfig())
    for settings, prior in (({"samples": 64}, False), ({}, True)):
        with pytest.raises(ValueError, match="apply to IQ-MPC checkpoints, not BC"):
            set_acting(bc, settings, prior=prior)
    assert set_acting(bc, {}, prior=False) == {}  # nothing asked: nothing changes


def test_bc_fits_held_out_expert_actions(tmp_path):
    from wmil_core.demos import load_demos

    demo_file = tmp_path / "d.h5"
    collect_demos("dmc/reacher-easy", 6, "state", demo_file, seed=0, progress=False)
    held_out = load_demos(demo_file).episodes[5]
    cfg = tiny(demo_file, method="bc", offline_steps=800, steps=0, eval_episodes=1,
               demo_episodes=5,
               agent={"model": {"latent_dim": 32, "mlp_dim": 64, "enc_dim": 64},
                      "batch_size": 64, "lr": 1e-3})
    trainer = Trainer(cfg, tmp_path / "bc", progress=False)
    result = trainer.train()
    assert result["reward_correlation"] is None  # BC decodes no reward
    pred = torch.stack([torch.as_tensor(trainer.agent.act(
        {k: v[t] for k, v in held_out.obs.items()}, t0=False)) for t in range(len(held_out))])
    # the reach itself (the expert acts hard in its first steps, then holds still)
    expert = torch.as_tensor(held_out.actions[:40])
    err = (pred[:40] - expert).pow(2).mean()
    err_zero = expert.pow(2).mean()  # doing nothing
    assert err < 0.5 * err_zero, (err, err_zero)


@pytest.mark.slow
def test_bc_scores_above_random_on_reacher(tmp_path):
    demo_file = tmp_path / "d.h5"
    collect_demos("dmc/reacher-easy", 10, "state", demo_file, seed=0, progress=False)
    cfg = tiny(demo_file, method="bc", offline_steps=3000, steps=0, eval_episodes=5,
               episode_length=100,
               agent={"model": {"latent_dim": 64, "mlp_dim": 128, "enc_dim": 128},
                      "batch_size": 128, "lr": 1e-3})
    result = Trainer(cfg, tmp_path / "bc", progress=False).train()
    from wmil_core.collect import rollout
    from wmil_core.experts import make_expert
    from wmil_core.tasks import make_env

    env = make_env("dmc/reacher-easy", "state", episode_length=100)
    rand = [rollout(env, make_expert("dmc/reacher-easy", "random"), 10_000 + i, False).ret
            for i in range(5)]
    assert result["return_mean"] > sum(rand) / 5 + 10, (result["return_mean"], rand)


def test_metrics_csv_columns_stay_aligned(demos, tmp_path):
    trainer = Trainer(tiny(demos), tmp_path / "m", progress=False)
    trainer.run.mkdir(parents=True)
    trainer._log({"step": 0, "phase": "offline", "a": 1.0})
    trainer._log({"step": 1, "phase": "online", "a": 2.0, "b": 3.0})
    trainer._log({"step": 2, "phase": "eval", "c": 4.0})
    with (tmp_path / "m" / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["phase"] for r in rows] == ["offline", "online", "eval"]
    assert rows[0]["a"] == "1.0" and rows[0]["b"] == ""
    assert rows[1]["b"] == "3.0" and rows[2]["c"] == "4.0" and rows[2]["a"] == ""


@pytest.mark.parametrize("value_term", ["v0", "td", "mix", "expert"])
def test_iq_update_separates_expert_from_behaviour_actions(demos, value_term):
    """The inverse soft-Q objective learns a reward that prefers the expert's actions."""
    from wmil_core.agents.iqmpc import IQMPC, IQMPCConfig
    from wmil_core.buffer import Batch, EpisodeBuffer
    from wmil_core.config import from_dict
    from wmil_core.demos import load_demos

    torch.manual_seed(0)
    ds = load_demos(demos)
    buf = EpisodeBuffer(ds.obs_spec, ds.action_dim, 2000, 3)
    buf.add_dataset(ds)
    agent = IQMPC({k: tuple(v["shape"]) for k, v in ds.obs_spec.items()}, ds.action_dim, 500,
                  from_dict(IQMPCConfig, {**TINY_AGENT, "value_term": value_term}))
    rng = np.random.default_rng(0)

    def random_actions(b: Batch) -> Batch:  # the same states, uniformly random actions
        a = torch.from_numpy(rng.uniform(-1, 1, b.action.shape).astype(np.float32))
        return b._replace(action=a)

    def rewards(b: Batch) -> float:
        with torch.no_grad():
            z = agent.model.encode({k: v[0] for k, v in b.obs.items()})
            zn = agent.model.encode({k: v[1] for k, v in b.obs.items()})
            q = agent.model.Q(z, b.action[0], "avg")
            return float((q - agent.gamma * agent.model.V(zn, beta=agent.cfg.beta)).mean())

    offline = agent.update(buf.sample(16, rng, "cpu"), None)  # expert batches alone
    assert all(np.isfinite(v) for v in offline.values())
    for _ in range(150):
        stats = agent.update(buf.sample(16, rng, "cpu"), random_actions(buf.sample(16, rng, "cpu")))
    assert all(np.isfinite(v) for v in stats.values())
    held = buf.sample(256, rng, "cpu")
    assert rewards(held) > rewards(random_actions(held)) + 0.1


def test_bench_speed_times_a_preset_and_writes_json(tmp_path, capsys):
    out = tmp_path / "speed.json"
    assert main(["bench", "speed", "--preset", "cpu", "--updates", "2", "--plans", "2",
                 "--threads", "1", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["preset"] == "cpu" and r["batch_per_buffer"] == 64 and not r["compiled"]
    assert r["update"]["n"] == 2 and r["plan"]["n"] == 2 and r["update"]["p50_ms"] > 0
    assert r["updates_per_s"] == pytest.approx(1000 / r["update"]["p50_ms"])
    assert "eager" not in r and "updates/s" in capsys.readouterr().out
    # overrides of the preset reach the timed agent
    assert main(["bench", "speed", "--preset", "cpu", "--updates", "2", "--plans", "1",
                 "--threads", "1", "--agent", '{"batch_size": 16, "grad_pen": 1.0}',
                 "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["batch_per_buffer"] == 16 and r["agent_overrides"]["grad_pen"] == 1.0
    assert '"grad_pen": 1.0' in capsys.readouterr().out


def test_bench_speed_autograd_mish_baseline_times_a_twin_without_the_hand_backward(
        tmp_path, monkeypatch):
    from wmil_core.bench import speed
    from wmil_core.nn import layers

    calls = []
    # hand-written, eager or fused, alone or fused with the LayerNorm before it
    for fn in (layers._MishFn, layers._FusedMishFn, layers._FusedLayerNormMishFn):
        monkeypatch.setattr(fn, "apply", lambda *a, real=fn.apply: calls.append(1) or real(*a))
    speed("cpu", updates=2, plans=1, threads=1, out=tmp_path / "a.json")
    alone = len(calls)
    calls.clear()
    r = speed("cpu", updates=2, plans=1, threads=1, out=tmp_path / "b.json",
              autograd_mish=True)
    assert alone > 0 and len(calls) == alone  # the twin never took the hand-written path
    assert layers.HAND_MISH_BACKWARD  # restored
    assert r["autograd_mish"]["update"]["n"] == 2
    assert r["speedup_vs_autograd_mish"]["update"]["median_paired"] > 0
    with pytest.raises(ValueError, match="one baseline at a time"):
        speed("cpu", updates=1, plans=1, compile=True, autograd_mish=True)


def test_bench_speed_eager_mish_baseline_times_a_twin_without_the_fused_kernels(
        tmp_path, monkeypatch):
    from wmil_core.bench import speed
    from wmil_core.nn import layers

    calls = []
    for fn in (layers._FusedMishFn, layers._FusedLayerNormMishFn):
        monkeypatch.setattr(fn, "apply", lambda *a, real=fn.apply: calls.append(1) or real(*a))
    speed("cpu", updates=2, plans=1, threads=1, out=tmp_path / "a.json")
    alone = len(calls)
    calls.clear()
    r = speed("cpu", updates=2, plans=1, threads=1, out=tmp_path / "b.json", eager_mish=True)
    assert alone > 0 and len(calls) == alone  # the twin never took the fused kernels
    assert layers.FUSED_MISH  # restored
    assert r["fused_mish"] and r["eager_mish_baseline"]
    assert r["eager_mish"]["update"]["n"] == 2
    assert r["speedup_vs_eager_mish"]["plan"]["median_paired"] > 0
    with pytest.raises(ValueError, match="one baseline at a time"):
        speed("cpu", updates=1, plans=1, eager_mish=True, autograd_mish=True)


def test_bench_speed_float32_baseline_times_a_float32_twin_of_a_bfloat16_agent(
        tmp_path, monkeypatch):
    from wmil_core.agents import iqmpc
    from wmil_core.bench import speed

    made = []
    real = iqmpc.IQMPC.__init__

    def spy(self, *a, **kw):
        real(self, *a, **kw)
        made.append(self.cfg.precision)

    monkeypatch.setattr(iqmpc.IQMPC, "__init__", spy)
    r = speed("cpu", updates=2, plans=1, threads=1, out=tmp_path / "b.json", float32=True,
              overrides={"precision": "bfloat16"})
    assert made == ["bfloat16", "float32"]  # the agent, then its twin
    assert r["float32_baseline"] and r["baseline"] == "float32"
    assert r["float32"]["update"]["n"] == 2 and r["float32"]["plan"]["n"] == 1
    assert r["speedup_vs_float32"]["update"]["median_paired"] > 0
    with pytest.raises(ValueError, match="float32 twin"):
        speed("cpu", updates=1, plans=1, float32=True)  # the agent is float32 already


def test_steps_axis_labels_thousands_readably():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from wmil_core.plots import steps_axis

    fig, ax = plt.subplots()
    ax.plot([10000, 50000], [0, 1])
    steps_axis(ax)
    fmt = ax.xaxis.get_major_formatter()
    assert [fmt(v, 0) for v in (0, 500, 20000, 12500)] == ["0", "500", "20k", "12.5k"]
    assert len(ax.xaxis.get_major_locator().tick_values(0, 150000)) <= 7
    assert ax.get_xlabel() == "environment steps"
    plt.close(fig)


def test_bench_speed_per_sample_value_baseline_plans_the_old_way(tmp_path, monkeypatch):
    from wmil_core import planning
    from wmil_core.agents import iqmpc
    from wmil_core.bench import speed

    calls = {"shared": 0, "per_sample": 0}
    shared, per_sample = planning.shared_trajectory_value, planning.trajectory_value

    def count(name, fn):
        def wrapped(*a, **k):
            calls[name] += 1
            return fn(*a, **k)
        return wrapped

    monkeypatch.setattr(iqmpc, "shared_trajectory_value", count("shared", shared))
    monkeypatch.setattr(planning, "trajectory_value", count("per_sample", per_sample))
    r = speed("cpu", updates=1, plans=2, threads=1, out=tmp_path / "a.json",
              per_sample_value=True, overrides={"planner": {"num_samples": 16, "num_pi_trajs": 2,
                                                             "num_elites": 4, "iterations": 2}})
    # warm-up plan + 2 timed plans, 2 iterations each, for each agent
    assert calls == {"shared": 6, "per_sample": 6}
    assert r["per_sample_value_baseline"] and r["per_sample_value"]["plan"]["n"] == 2
    assert r["speedup_vs_per_sample_value"]["plan"]["median_paired"] > 0
    with pytest.raises(ValueError, match="one baseline at a time"):
        speed("cpu", updates=1, plans=1, autograd_mish=True, per_sample_value=True)


def test_pi_log_prob_matches_the_sampled_log_prob():
    """log pi of the prior's own samples equals the log pi it reported when sampling."""
    from wmil_core.world_model import ModelConfig, WorldModel

    torch.manual_seed(0)
    m = WorldModel({"state": (5,)}, 3, ModelConfig(latent_dim=16, mlp_dim=32, enc_dim=32,
                                                   num_q=2))
    z = torch.randn(64, 16)
    _, a, log_pi, _ = m.pi(z)
    inside = a.abs().amax(-1) < 0.99  # the log-prob clips actions at +-0.999
    assert inside.sum() > 30
    assert torch.allclose(m.pi_log_prob(z, a)[inside], log_pi[inside], atol=1e-3)
    saturated = torch.ones(4, 3)
    assert torch.isfinite(m.pi_log_prob(z[:4], saturated)).all()


def _demo_buffer(demos):
    """The demo file's dataset, a buffer holding it (horizon 3) and its observation shapes."""
    from wmil_core.buffer import EpisodeBuffer
    from wmil_core.demos import load_demos

    ds = load_demos(demos)
    buf = EpisodeBuffer(ds.obs_spec, ds.action_dim, 2000, 3)
    buf.add_dataset(ds)
    return ds, buf, {k: tuple(v["shape"]) for k, v in ds.obs_spec.items()}


def _train_tiny(ds, shapes, overrides, batches, updates=150):
    """A TINY_AGENT IQ-MPC with ``overrides``, trained from torch seed 0 for ``updates``
    updates on ``batches(rng)`` -> (expert, behaviour); returns the agent and the last stats."""
    from wmil_core.agents.iqmpc import IQMPC, IQMPCConfig
    from wmil_core.config import from_dict

    torch.manual_seed(0)
    agent = IQMPC(shapes, ds.action_dim, 500, from_dict(IQMPCConfig, {**TINY_AGENT, **overrides}))
    rng = np.random.default_rng(0)
    for _ in range(updates):
        stats = agent.update(*batches(rng))
    return agent, stats


def test_pi_bc_coef_pulls_the_prior_towards_expert_actions(demos):
    """With the behaviour-cloning term the prior gives held-out expert actions a higher
    likelihood than with the maximum-entropy objective alone, from the same start."""
    ds, buf, shapes = _demo_buffer(demos)
    held = buf.sample(256, np.random.default_rng(1), "cpu")
    nll, bc_losses = {}, {}
    for coef in (0.0, 1.0):
        agent, stats = _train_tiny(ds, shapes, {"pi_bc_coef": coef},
                                   lambda rng: (buf.sample(16, rng, "cpu"),
                                                buf.sample(16, rng, "cpu")))
        with torch.no_grad():
            z = agent.model.encode({k: v[0] for k, v in held.obs.items()})
            nll[coef] = -float(agent.model.pi_log_prob(z, held.action[0]).mean())
        bc_losses[coef] = stats.get("pi_bc_loss")
    assert bc_losses[0.0] is None and np.isfinite(bc_losses[1.0])
    assert nll[1.0] < nll[0.0] - 1.0, nll


def test_pi_bc_form_mse_pulls_the_prior_mean_to_expert_actions(demos):
    """``pi_bc_form: mse`` clones the prior's mean action: its squared error to held-out
    expert actions falls well below the maximum-entropy prior's and the likelihood-cloned
    one's at the same weight; an unknown form is refused by name."""
    ds, buf, shapes = _demo_buffer(demos)
    held = buf.sample(256, np.random.default_rng(1), "cpu")
    err, bc_losses = {}, {}
    for coef, form in ((0.0, "mse"), (100.0, "mse"), (100.0, "nll")):
        agent, stats = _train_tiny(ds, shapes, {"pi_bc_coef": coef, "pi_bc_form": form},
                                   lambda rng: (buf.sample(16, rng, "cpu"),
                                                buf.sample(16, rng, "cpu")))
        with torch.no_grad():
            z = agent.model.encode({k: v[0] for k, v in held.obs.items()})
            mean = agent.model.pi(z, deterministic=True)[0]
            err[coef, form] = float((mean - held.action[0]).pow(2).mean())
        bc_losses[coef, form] = stats.get("pi_bc_loss")
    assert bc_losses[0.0, "mse"] is None and 0 <= bc_losses[100.0, "mse"] < err[0.0, "mse"]
    # the likelihood at the same weight does not (here it misses by more than no cloning)
    assert err[100.0, "mse"] < 0.5 * min(err[0.0, "mse"], err[100.0, "nll"]), err
    from wmil_core.agents.iqmpc import IQMPCConfig
    from wmil_core.config import from_dict

    with pytest.raises(ValueError, match="pi_bc_form"):
        from_dict(IQMPCConfig, {"pi_bc_form": "l1"})


def test_recent_fraction_reaches_the_behaviour_sampler(demos, tmp_path, monkeypatch):
    """``recent_fraction``/``recent_episodes`` are how the run draws its behaviour batches;
    out-of-range values are refused by name."""
    from wmil_core.buffer import EpisodeBuffer

    with pytest.raises(ValueError, match="recent_fraction"):
        tiny(demos, recent_fraction=1.5)
    with pytest.raises(ValueError, match="recent_episodes"):
        tiny(demos, recent_episodes=0)
    calls, sample = [], EpisodeBuffer.sample

    def spy(self, *args, **kw):
        calls.append(args[3:5])
        return sample(self, *args, **kw)

    monkeypatch.setattr(EpisodeBuffer, "sample", spy)
    cfg = tiny(demos, steps=50, eval_every=50, checkpoint_every=50, recent_fraction=0.5,
               recent_episodes=3)
    Trainer(cfg, tmp_path / "run", progress=False).train()
    assert (0.5, 3) in calls  # the behaviour batches (expert batches draw uniformly: ())


def test_q_weight_decay_shrinks_only_the_q_heads_and_survives_a_resume(demos):
    """One update with ``q_weight_decay`` moves the Q heads by exactly lr * wd * w (decoupled
    from Adam's step) beside the undecayed run, and leaves the encoder and dynamics as they were
    (the prior's step follows, against the decayed heads); a checkpoint written without decay,
    loaded with it, decays."""
    from wmil_core.agents.iqmpc import IQMPC, IQMPCConfig
    from wmil_core.buffer import EpisodeBuffer
    from wmil_core.config import from_dict
    from wmil_core.demos import load_demos

    ds = load_demos(demos)
    buf = EpisodeBuffer(ds.obs_spec, ds.action_dim, 2000, 3)
    buf.add_dataset(ds)
    shapes = {k: tuple(v["shape"]) for k, v in ds.obs_spec.items()}
    wd = 50.0

    def agent(decay: float) -> IQMPC:
        torch.manual_seed(0)
        return IQMPC(shapes, ds.action_dim, 500,
                     from_dict(IQMPCConfig, {**TINY_AGENT, "q_weight_decay": decay}))

    with pytest.raises(ValueError, match="q_weight_decay"):
        agent(-1.0)
    plain, decayed = agent(0.0), agent(wd)
    before = {k: v.clone() for k, v in plain.model.state_dict().items()}
    for a in (plain, decayed):
        rng = np.random.default_rng(0)
        torch.manual_seed(1)  # the same dropout masks
        a.update(buf.sample(16, rng, "cpu"), buf.sample(16, rng, "cpu"))
    lr = plain.cfg.lr
    p, d = plain.model.state_dict(), decayed.model.state_dict()
    q_keys = [k for k in p if k.startswith("_Qs.") and "target" not in k]
    assert q_keys
    for k in p:
        if k in q_keys:
            assert torch.allclose(d[k], p[k] - lr * wd * before[k], atol=1e-6), k
        elif k.startswith(("_encoder", "_dynamics")):
            assert torch.equal(d[k], p[k]), k
    moved = max(float((d[k] - p[k]).abs().max()) for k in q_keys)
    assert moved > 1e-4  # the decay is visible, not lost in the tolerance
    resumed = agent(wd)
    resumed.load_state_dict(plain.state_dict())  # saved without decay
    assert resumed.optim.param_groups[2]["weight_decay"] == wd
    assert all(g["decoupled_weight_decay"] for g in resumed.optim.param_groups)


def test_rank_coef_makes_q_rank_the_expert_action_first(demos):
    """rank_coef: on held-out demonstrated states the median margin of Q at the expert's
    action over the best of eight perturbed copies of it grows well beyond the margin the
    same training reaches without the ranking term; bad settings are refused by name."""
    from wmil_core.agents.iqmpc import IQMPCConfig

    for bad in ({"rank_coef": -1.0}, {"rank_negatives": 1}, {"rank_temperature": 0.0},
                {"rank_noise_std": -0.1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            IQMPCConfig(**bad)
    ds, buf, shapes = _demo_buffer(demos)
    held = buf.sample(256, np.random.default_rng(1), "cpu")

    def margin(coef: float) -> float:
        agent, stats = _train_tiny(ds, shapes, {"rank_coef": coef},
                                   lambda rng: (buf.sample(16, rng, "cpu"),
                                                buf.sample(16, rng, "cpu")))
        assert ("rank_loss" in stats) == (coef > 0)
        with torch.no_grad():
            z = agent.model.encode({k: v[0] for k, v in held.obs.items()})
            a = held.action[0]
            gen = torch.Generator().manual_seed(2)
            other = (a + 0.3 * torch.randn((8, *a.shape), generator=gen)).clamp(-1, 1)
            q_exp = agent.model.Q(z, a, "avg")
            q_other = agent.model.Q(z.expand(8, *z.shape), other, "avg")
            return float((q_exp - q_other.amax(0)).median())

    ranked, plain = margin(1.0), margin(0.0)  # measured: 1.33 against 0.001
    assert ranked > 0.6 and ranked > plain + 0.3, (ranked, plain)


def test_rank_prior_negatives_push_q_above_the_priors_proposals(demos):
    """rank_prior_negatives: with the prior's own samples among the ranking term's negatives,
    Q at held-out demonstrated states rates the expert's action above the prior's proposals
    (what the planner starts from) by a wider median margin than the random negatives alone
    teach; a negative count is refused by name."""
    from wmil_core.agents.iqmpc import IQMPCConfig

    with pytest.raises(ValueError, match="rank_prior_negatives"):
        IQMPCConfig(rank_prior_negatives=-1)
    ds, buf, shapes = _demo_buffer(demos)
    held = buf.sample(256, np.random.default_rng(1), "cpu")

    def margin(k_pi: int) -> float:
        agent, stats = _train_tiny(ds, shapes, {"rank_coef": 1.0, "rank_prior_negatives": k_pi},
                                   lambda rng: (buf.sample(16, rng, "cpu"),
                                                buf.sample(16, rng, "cpu")))
        assert np.isfinite(stats["rank_loss"])
        with torch.no_grad():
            torch.manual_seed(2)
            z = agent.model.encode({k: v[0] for k, v in held.obs.items()})
            _, proposals, _, _ = agent.model.pi(z.expand(8, *z.shape))
            q_exp = agent.model.Q(z, held.action[0], "avg")
            q_pi = agent.model.Q(z.expand(8, *z.shape), proposals, "avg")
            return float((q_exp - q_pi.amax(0)).median())

    hard, random_only = margin(8), margin(0)  # measured: 0.33 against 0.001
    assert hard > 0.15 and hard > random_only + 0.15, (hard, random_only)


def test_negative_actions_make_q_peak_at_the_expert_action(demos):
    """negative_action_std: Q at demonstrated states ranks the expert's action above
    perturbed ones, more than the same training without the negatives."""
    from wmil_core.agents.iqmpc import IQMPCConfig

    with pytest.raises(ValueError, match="negative_action_std"):
        IQMPCConfig(negative_action_std=-0.1)
    ds, buf, shapes = _demo_buffer(demos)

    def noisy_behaviour(rng):
        b = buf.sample(16, rng, "cpu")
        noisy = b._replace(action=(b.action + 0.5 * torch.randn_like(b.action)).clamp(-1, 1))
        return buf.sample(16, rng, "cpu"), noisy

    def contrast(std: float) -> float:
        agent, stats = _train_tiny(ds, shapes, {"negative_action_std": std}, noisy_behaviour)
        assert all(np.isfinite(v) for v in stats.values())
        assert ("negative_loss" in stats) == (std > 0)
        held = buf.sample(256, np.random.default_rng(1), "cpu")
        with torch.no_grad():
            z = agent.model.encode({k: v[0] for k, v in held.obs.items()})
            a = held.action[0]
            gen = torch.Generator().manual_seed(2)
            other = (a + 0.3 * torch.randn(a.shape, generator=gen)).clamp(-1, 1)
            return float((agent.model.Q(z, a, "avg") - agent.model.Q(z, other, "avg")).mean())

    with_negatives, without = contrast(0.3), contrast(0.0)
    assert with_negatives > 0.1 and with_negatives > without + 0.05
