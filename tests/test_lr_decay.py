"""The learning-rate schedule (IQMPCConfig.lr_decay_*): its shape, its effect on an update, and
its persistence across a resume."""

import pytest
import torch
from agent_harness import MODES, TINY

from wmil_core.agents.iqmpc import IQMPC, IQMPCConfig, lr_scale
from wmil_core.buffer import Batch
from wmil_core.config import from_dict

torch.set_num_threads(1)
SHAPES = MODES["state"]


def _agent(**over: object) -> IQMPC:
    torch.manual_seed(0)
    return IQMPC(SHAPES, 2, 50, from_dict(IQMPCConfig, {**TINY, **over}))


def _batch(seed: int, n: int = 8, horizon: int = 3) -> Batch:
    g = torch.Generator().manual_seed(seed)
    obs = {k: torch.randn(horizon + 1, n, *s, generator=g) for k, s in SHAPES.items()}
    act = torch.rand(horizon, n, 2, generator=g) * 2 - 1
    return Batch(obs, act, torch.zeros(horizon, n, 1))


def test_schedule_shape():
    """Constant to the start, linear to the final scale, constant after; off when length 0."""
    assert lr_scale(0, 10, 20, 0.1) == 1.0
    assert lr_scale(10, 10, 20, 0.1) == 1.0
    assert lr_scale(20, 10, 20, 0.1) == pytest.approx(0.55)
    assert lr_scale(30, 10, 20, 0.1) == pytest.approx(0.1)
    assert lr_scale(10**6, 10, 20, 0.1) == pytest.approx(0.1)
    assert lr_scale(10**6, 0, 0, 0.1) == 1.0


@pytest.mark.parametrize("bad", [{"lr_decay_start": -1}, {"lr_decay_updates": -5},
                                 {"lr_final_scale": 0.0}, {"lr_final_scale": 1.5}])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        from_dict(IQMPCConfig, bad)


def test_a_decayed_update_equals_an_update_at_the_lower_rate():
    """Halfway through its decay, an update moves every network exactly as an undecayed agent
    whose lr is the scaled one (encoder scale kept), and differs from the undecayed update."""
    lr = 1e-2  # large enough that the difference between rates is far above rounding
    decayed = _agent(lr=lr, lr_decay_start=10, lr_decay_updates=20, lr_final_scale=0.1)
    lower = _agent(lr=lr * 0.55)
    full = _agent(lr=lr)
    decayed.updates = lower.updates = full.updates = 20
    stats = []
    for a in (decayed, lower, full):
        torch.manual_seed(1)  # the same dropout masks
        stats.append(a.update(_batch(0), _batch(1)))
    assert stats[0]["lr"] == pytest.approx(lr * 0.55) and stats[2]["lr"] == lr
    d, lo, f = (a.model.state_dict() for a in (decayed, lower, full))
    for k in d:
        torch.testing.assert_close(d[k], lo[k], rtol=0, atol=1e-6, msg=k)
    assert max(float((d[k] - f[k]).abs().max()) for k in d) > 1e-3
    assert decayed.optim.param_groups[0]["lr"] == pytest.approx(lr * 0.55 * TINY.get(
        "enc_lr_scale", 0.3))


def test_the_schedule_continues_after_a_resume_and_the_config_wins():
    """A checkpoint restores the update count, so the rate resumes where it was; a run branched
    without decay from a decayed checkpoint trains at the full rate again."""
    a = _agent(lr_decay_start=0, lr_decay_updates=4, lr_final_scale=0.5)
    for i in range(3):
        a.update(_batch(2 * i), _batch(2 * i + 1))
    resumed = _agent(lr_decay_start=0, lr_decay_updates=4, lr_final_scale=0.5)
    resumed.load_state_dict(a.state_dict())
    base = a.cfg.lr
    assert resumed.update(_batch(6), _batch(7))["lr"] == pytest.approx(base * (1 - 0.5 * 3 / 4))
    assert resumed.update(_batch(8), _batch(9))["lr"] == pytest.approx(base * 0.5)
    plain = _agent()
    plain.load_state_dict(resumed.state_dict())
    assert plain.optim.param_groups[1]["lr"] == pytest.approx(base * 0.5)  # from the checkpoint
    assert plain.update(_batch(10), _batch(11))["lr"] == base
    assert all(g["lr"] == pytest.approx(base) for g in (*plain.optim.param_groups[1:],
                                                        *plain.pi_optim.param_groups))
