"""IQMPCConfig.precision: bfloat16 matrix products under autocast, float32 everything else."""

import copy

import numpy as np
import pytest
import torch
from agent_harness import MODES, TINY

from wmil_core.agents.iqmpc import IQMPC, IQMPCConfig
from wmil_core.buffer import Batch
from wmil_core.config import from_dict
from wmil_core.nn.layers import QEnsemble
from wmil_core.planning import shared_trajectory_value

torch.set_num_threads(1)


def _q_paths(q: QEnsemble, z: torch.Tensor, a: torch.Tensor) -> dict[str, torch.Tensor]:
    heads = torch.tensor([1, 0])
    x = torch.cat([z, a], -1)
    return {"forward": q(x), "heads": q(x, heads), "at": q.at(z, [a], heads),
            "unrolled": q.at(z, [a], heads, unrolled=True)}


def test_q_values_stay_float32_under_bfloat16_autocast():
    """Q near 200 (as trained critics reach): bfloat16 would round it to whole units."""
    torch.manual_seed(0)
    q = QEnsemble(2, 16 + 2, 32, dropout=0.0, latent_dim=16).eval()
    with torch.no_grad():
        q.out.weight.normal_(0.0, 0.3)
        q.out.bias.fill_(200.0)
    z, a = torch.randn(64, 16), torch.rand(64, 2) * 2 - 1
    with torch.no_grad():
        ref = _q_paths(q, z, a)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = _q_paths(q, z, a)
    for name, v in got.items():
        assert v.dtype == torch.float32, name
        err = (v - ref[name]).abs().max().item()
        # the hidden layers ran in bfloat16 (not bit-equal), the output layer did not (bfloat16
        # at 200 is 1.0 apart, so rounding the output alone could be off by up to 0.5)
        assert 0 < err < 0.1, (name, err)


def _agents(precision: str = "bfloat16") -> tuple[IQMPC, IQMPC]:
    torch.manual_seed(0)
    a32 = IQMPC(MODES["state"], 2, 50, from_dict(IQMPCConfig, TINY))
    a16 = IQMPC(MODES["state"], 2, 50, from_dict(IQMPCConfig, {**TINY, "precision": precision}))
    a16.model.load_state_dict(a32.model.state_dict())
    return a32, a16


def _batch(g: torch.Generator, n: int = 8, h: int = 3) -> Batch:
    obs = {k: torch.randn(h + 1, n, *s, generator=g) for k, s in MODES["state"].items()}
    return Batch(obs, torch.rand(h, n, 2, generator=g) * 2 - 1, torch.zeros(h, n, 1))


def test_bfloat16_updates_track_float32_updates():
    a32, a16 = _agents()
    g = torch.Generator().manual_seed(1)
    batches = [(_batch(g), _batch(g)) for _ in range(10)]
    for e, b in batches:
        s32, s16 = a32.update(e, b), a16.update(e, b)
    for k in ("total_loss", "iq_loss", "consistency_loss", "q_expert", "pi_loss"):
        assert s16[k] == pytest.approx(s32[k], rel=0.05, abs=1e-3), k
    assert s16["total_loss"] != s32["total_loss"]  # bfloat16 did run
    for name, p in a16.model.named_parameters():
        assert p.dtype == torch.float32, name  # master weights stay float32
    # the two critics agree on fresh inputs (evaluated alike, in float32), and both moved
    probe = _batch(g, n=64)
    start = _agents()[0]
    with torch.no_grad():
        q = [ag.model.Q(ag.model.encode({k: v[0] for k, v in probe.obs.items()}),
                        probe.action[0], "avg") for ag in (a32, a16, start)]
    moved = (q[0] - q[2]).abs().max()
    assert moved > 1e-2
    assert (q[1] - q[0]).abs().max() < 0.1 * moved


def test_bfloat16_agent_acts_in_float32_and_resumes_exactly():
    _, agent = _agents()
    obs = {k: np.zeros(s, np.float32) for k, s in MODES["state"].items()}
    a = agent.act(obs, t0=True)
    assert a.dtype == np.float32 and a.shape == (2,) and np.all(np.abs(a) <= 1)
    assert agent._prev_mean.dtype == torch.float32
    b = agent.act(obs, t0=False, eval_mode=True)
    assert b.dtype == np.float32 and np.all(np.abs(b) <= 1)
    state = copy.deepcopy(agent.state_dict())
    twin = _agents()[1]
    twin.load_state_dict(state)
    assert np.array_equal(agent.act(obs, t0=False), twin.act(obs, t0=False))
    prior = _agents()[1]
    prior.cfg.mpc = False
    assert prior.act(obs, t0=True).dtype == np.float32


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision"):
        from_dict(IQMPCConfig, {"precision": "float16"})


def test_compile_planner_compiles_the_planner_alone():
    cfg = from_dict(IQMPCConfig, {**TINY, "compile": "planner"})
    agent = IQMPC(MODES["state"], 2, 50, cfg)
    assert agent._value_fn is not shared_trajectory_value  # compiled (lazily, on first call)
    assert agent._model_loss_fn == agent._model_losses and agent._pi_loss_fn == agent._pi_loss
    full = IQMPC(MODES["state"], 2, 50, from_dict(IQMPCConfig, {**TINY, "compile": True}))
    assert full._model_loss_fn != full._model_losses
    with pytest.raises(ValueError, match="compile"):
        from_dict(IQMPCConfig, {"compile": "update"})
