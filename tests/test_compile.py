"""``compile: true``: the torch.compile'd planner value and update compute what eager does."""

from __future__ import annotations

import pytest
import torch

from wmil_core.agents.iqmpc import IQMPC, IQMPCConfig
from wmil_core.buffer import Batch
from wmil_core.config import from_dict
from wmil_core.planning import sample_noise, trajectory_value

SHAPES = {"joints": (4,), "features": (3,)}
TINY = {"model": {"latent_dim": 16, "mlp_dim": 32, "enc_dim": 32, "num_q": 2},
        "batch_size": 8, "planner": {"num_samples": 32, "num_pi_trajs": 4, "num_elites": 8,
                                     "iterations": 2}}


def make(compile_: bool, **kw) -> IQMPC:
    torch.manual_seed(0)
    return IQMPC(SHAPES, 2, 500, from_dict(IQMPCConfig, {**TINY, "compile": compile_, **kw}))


def batch(g: torch.Generator, n: int = 8, h: int = 3) -> Batch:
    return Batch({k: torch.randn(h + 1, n, s[0], generator=g) for k, s in SHAPES.items()},
                 torch.rand(h, n, 2, generator=g) * 2 - 1, torch.zeros(h, n, 1))


@pytest.mark.slow
def test_compiled_agent_matches_eager(monkeypatch):
    import torch._inductor.config as inductor_config

    from wmil_core.nn import layers

    # compiled graphs draw dropout masks per element; the eager agent must too to match
    monkeypatch.setattr(layers, "SPARSE_DROPOUT", False)

    # the compiled graphs draw their random numbers as eager torch does, so both agents see
    # the same policy samples, Q-head choices and dropout masks. The config's own patch()
    # restores the setting afterwards; monkeypatch would delete it, which hides the option
    # from every later compile in the process (torch's config module treats delattr as hide).
    torch._dynamo.reset()  # no graph compiled earlier in the process without it
    with inductor_config.patch(fallback_random=True):
        _check_compiled_matches_eager()


def _check_compiled_matches_eager() -> None:
    # with the policy prior's behaviour-cloning term (the penalty test below runs without it)
    eager, comp = make(False, pi_bc_coef=0.5), make(True, pi_bc_coef=0.5)
    assert comp._value_fn is not trajectory_value
    g = torch.Generator().manual_seed(1)
    batches = [(batch(g), batch(g)) for _ in range(3)]

    # planner value of the same candidates and noise
    noise = sample_noise(eager.cfg.planner, 2, 2, torch.Generator().manual_seed(2))
    z0 = eager.model.encode({k: v[0, :1] for k, v in batches[0][0].obs.items()})
    z0 = z0.expand(32, -1)
    acts = torch.rand(3, 32, 2, generator=g) * 2 - 1
    with torch.no_grad():
        ref = trajectory_value(eager.model, z0, acts, eager.gamma, 1e-4, noise.value[0],
                               noise.heads[0])
        got = comp._value_fn(comp.model, z0, acts, comp.gamma, 1e-4, noise.value[0],
                             noise.heads[0])
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)

    # offline and online updates: same losses, same weights afterwards
    for i, (e, b) in enumerate(batches):
        torch.manual_seed(10 + i)
        s_ref = eager.update(e, b if i else None)
        torch.manual_seed(10 + i)
        s_got = comp.update(e, b if i else None)
        assert s_got.keys() == s_ref.keys() and "pi_bc_loss" in s_ref
        for k in s_ref:
            assert s_got[k] == pytest.approx(s_ref[k], rel=1e-4, abs=1e-5), k
    for k, v in eager.model.state_dict().items():
        torch.testing.assert_close(comp.model.state_dict()[k], v, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_cli_train_compile_flag(tmp_path):
    import yaml

    from wmil_core.cli import main
    from wmil_core.collect import collect_demos

    demos = tmp_path / "d.h5"
    collect_demos("dmc/reacher-easy", 1, "state", demos, seed=0, progress=False)
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump({"agent": TINY, "episode_length": 30, "buffer_size": 500,
                                   "threads": 1, "eval_episodes": 1}))
    run = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--task", "dmc/reacher-easy", "--demos",
                 str(demos), "--steps", "60", "--seed-steps", "30", "--eval-every", "60",
                 "--checkpoint-every", "60", "--compile", "--out", str(run)]) == 0
    assert yaml.safe_load((run / "agent.yaml").read_text())["compile"] is True
    assert (run / "checkpoints" / "latest.pt").is_file()


@pytest.mark.slow
def test_bench_speed_compile_times_eager_alongside(tmp_path):
    import json

    from wmil_core.bench import speed

    r = speed("cpu", updates=2, plans=2, threads=1, out=tmp_path / "s.json", compile=True)
    assert json.loads((tmp_path / "s.json").read_text())["compiled"] is True
    assert r["update"]["n"] == r["eager"]["update"]["n"] == 2
    assert r["plan"]["n"] == r["eager"]["plan"]["n"] == 2
    ratio = r["eager"]["update"]["p50_ms"] / r["update"]["p50_ms"]
    assert r["speedup_vs_eager"]["update"]["of_medians"] == pytest.approx(ratio)
    assert r["warmup_s"] > 0


@pytest.mark.slow
def test_compiled_agent_with_gradient_penalty_matches_eager(monkeypatch):
    """Compiled graphs have no double backward: the penalty runs eagerly beside them."""
    import torch._inductor.config as inductor_config

    from wmil_core.nn import layers

    monkeypatch.setattr(layers, "SPARSE_DROPOUT", False)  # per-element masks on both sides

    def agent(compile_: bool) -> IQMPC:
        torch.manual_seed(0)
        return IQMPC(SHAPES, 2, 500, from_dict(IQMPCConfig, {**TINY, "compile": compile_,
                                                              "grad_pen": 1.0}))

    # graphs compiled earlier in the process (without fallback_random) would be reused
    torch._dynamo.reset()
    with inductor_config.patch(fallback_random=True):
        eager, comp = agent(False), agent(True)
        assert comp._model_loss_fn != comp._model_losses  # the losses are compiled
        g = torch.Generator().manual_seed(1)
        batches = [(batch(g), batch(g)) for _ in range(3)]
        for i, (e, b) in enumerate(batches):
            torch.manual_seed(10 + i)
            s_ref = eager.update(e, b)
            torch.manual_seed(10 + i)
            s_got = comp.update(e, b)
            assert s_ref["grad_pen"] > 0
            for k in s_ref:
                assert s_got[k] == pytest.approx(s_ref[k], rel=1e-4, abs=1e-5), k
    for k, v in eager.model.state_dict().items():
        torch.testing.assert_close(comp.model.state_dict()[k], v, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_compiled_bfloat16_agent_tracks_eager_bfloat16():
    """precision bfloat16 under torch.compile: the graphs trace the autocast (matmuls in
    bfloat16, the Q heads' output in float32) and compute what eager bfloat16 does, up to
    bfloat16 rounding; the planner returns float32 actions."""
    import numpy as np

    torch._dynamo.reset()
    eager, comp = make(False, precision="bfloat16"), make(True, precision="bfloat16")
    g = torch.Generator().manual_seed(1)
    for i, (e, b) in enumerate([(batch(g), batch(g)) for _ in range(3)]):
        s_ref, s_got = eager.update(e, b if i else None), comp.update(e, b if i else None)
        for k in ("total_loss", "iq_loss", "consistency_loss", "pi_loss", "q_expert"):
            assert s_got[k] == pytest.approx(s_ref[k], rel=3e-2, abs=1e-3), k
    obs = {k: np.zeros(s, np.float32) for k, s in SHAPES.items()}
    a = comp.act(obs, t0=True, eval_mode=True)
    assert a.dtype == np.float32 and np.all(np.abs(a) <= 1)
    noise = sample_noise(comp.cfg.planner, 2, 2, torch.Generator().manual_seed(2))
    with torch.no_grad(), comp.autocast():
        z0 = comp.model.encode({k: torch.from_numpy(v)[None] for k, v in obs.items()})
        z0 = z0.float().expand(32, -1)  # as plan() passes it
        acts = torch.rand(3, 32, 2, generator=g) * 2 - 1
        got = comp._value_fn(comp.model, z0, acts, comp.gamma, 1e-4, noise.value[0],
                             noise.heads[0])
        ref = eager._value_fn(comp.model, z0, acts, comp.gamma, 1e-4, noise.value[0],
                              noise.heads[0])
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, ref, rtol=2e-2, atol=2e-2)
