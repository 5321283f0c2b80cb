"""MPPI with decoded rewards: value formula by hand, the optimum of an analytic model."""

import pytest
import torch

from wmil_core.planning import (
    PlannerConfig,
    plan,
    sample_noise,
    shared_trajectory_value,
    trajectory_value,
)


class Analytic:
    """z' = z + a; every Q head is -scale ||z + a - goal||^2; pi always proposes 0, log pi = c."""

    def __init__(self, goal, scale=10.0, log_pi=0.0):
        self.goal = torch.tensor(goal)
        self.scale = scale
        self.log_pi = log_pi

    def next(self, z, a):
        return z + a

    def pi_sample(self, z, eps):
        return torch.zeros_like(z), torch.full((z.shape[0], 1), self.log_pi)

    def Q_heads(self, z, a, heads):
        q = -self.scale * (z + a - self.goal).pow(2).sum(-1, keepdim=True)
        return q.unsqueeze(0).expand(len(heads), -1, -1)


def test_trajectory_value_by_hand():
    m = Analytic([0.0], scale=1.0, log_pi=2.0)
    z0 = torch.tensor([[1.0]])
    acts = torch.tensor([[[1.0]], [[-1.0]]])  # H=2: z1 = 2, z2 = 1
    g, b = 0.5, 0.1
    heads = torch.zeros(3, 2, dtype=torch.long)
    eps = torch.zeros(3, 1, 1)
    v = trajectory_value(m, z0, acts, g, b, eps, heads)
    q = lambda z, a: -((z + a) ** 2)  # noqa: E731
    vz = lambda z: q(z, 0.0) - b * 2.0  # noqa: E731
    r0 = q(1.0, 1.0) - g * vz(2.0)
    r1 = q(2.0, -1.0) - g * vz(1.0)
    expected = (r0 - b * 2.0) + g * (r1 - b * 2.0) + g**2 * vz(1.0)
    assert v.item() == pytest.approx(expected)


@pytest.mark.parametrize("goal", [[0.5, -0.3], [-0.8, 0.2]])
def test_mppi_finds_the_analytic_optimum(goal):
    cfg = PlannerConfig(horizon=3, num_samples=512, num_pi_trajs=8, num_elites=16,
                        iterations=12, min_std=0.02)
    gen = torch.Generator().manual_seed(0)
    m = Analytic(goal, scale=50.0)
    res = plan(m, torch.zeros(2), cfg, gamma=0.5, beta=0.0,
               noise=sample_noise(cfg, 2, 5, gen))
    # every step pays (1 - gamma) * scale * ||z_{t+1} - goal||^2: the best first action
    # jumps straight to the goal, a_0 = goal - z_0, and the later ones stay (a = 0)
    assert torch.allclose(res.mean[0], torch.tensor(goal), atol=0.05), res.mean
    assert torch.allclose(res.action, torch.tensor(goal), atol=0.1), res.action
    assert torch.allclose(res.mean[1:], torch.zeros(2, 2), atol=0.1), res.mean
    assert res.std.min() >= cfg.min_std and res.std.max() <= cfg.max_std


def test_same_noise_same_action_and_warm_start():
    cfg = PlannerConfig(horizon=3, num_samples=64, num_pi_trajs=4, num_elites=8, iterations=3)
    m = Analytic([0.3, 0.3])
    n1 = sample_noise(cfg, 2, 5, torch.Generator().manual_seed(1))
    n2 = sample_noise(cfg, 2, 5, torch.Generator().manual_seed(1))
    a = plan(m, torch.zeros(2), cfg, 0.9, 0.0, n1)
    b = plan(m, torch.zeros(2), cfg, 0.9, 0.0, n2)
    assert torch.equal(a.action, b.action) and torch.equal(a.mean, b.mean)
    # the warm start is the previous mean shifted by one step: changing the
    # previous mean's first step alone changes nothing
    prev = torch.randn(3, 2)
    prev2 = prev.clone()
    prev2[0] += 5.0
    c = plan(m, torch.zeros(2), cfg, 0.9, 0.0, n1, prev_mean=prev)
    d = plan(m, torch.zeros(2), cfg, 0.9, 0.0, n1, prev_mean=prev2)
    assert torch.equal(c.action, d.action)
    e = plan(m, torch.zeros(2), cfg, 0.9, 0.0, n1, prev_mean=prev * 0 + 0.9)
    assert not torch.equal(c.mean, e.mean)


def test_explore_adds_std_scaled_noise():
    cfg = PlannerConfig(horizon=2, num_samples=32, num_pi_trajs=0, num_elites=4, iterations=2)
    m = Analytic([0.0, 0.0])
    n = sample_noise(cfg, 2, 5, torch.Generator().manual_seed(3))
    a = plan(m, torch.zeros(2), cfg, 0.9, 0.0, n)
    b = plan(m, torch.zeros(2), cfg, 0.9, 0.0, n, explore=True)
    assert torch.allclose(b.action, (a.action + a.std[0] * n.explore).clamp(-1, 1))


def test_config_validation_and_iterations_heuristic():
    with pytest.raises(ValueError, match="num_elites"):
        PlannerConfig(num_samples=16, num_pi_trajs=2, num_elites=32)
    with pytest.raises(ValueError, match="num_pi_trajs"):
        PlannerConfig(num_samples=16, num_pi_trajs=16, num_elites=4)
    assert PlannerConfig().iterations_for(6) == 6
    assert PlannerConfig().iterations_for(39) == 8


def test_return_telescopes_to_q_advantages_and_a_head_disagreement_bonus():
    """The decoded-reward return, expanded, cancels V(z_1..z_H) term by term:

    G = Q(z0,a0) - beta log pi_0 + sum_{t=1}^{H-1} gamma^t [Q(z_t,a_t) - Q(z_t,pi_t)]
        + gamma^H [Q_avg - Q_min](z_H, pi_H)

    (Q: min of step t's two heads; pi_t: the sample V uses at z_t). Checked on a random
    world model, so every term is non-zero.
    """
    from wmil_core.agents.iqmpc import ModelConfig
    from wmil_core.world_model import WorldModel

    torch.manual_seed(0)
    m = WorldModel({"joints": (6,)}, 2, ModelConfig(latent_dim=16, mlp_dim=32, enc_dim=32,
                                                   num_q=5))
    with torch.no_grad():
        for p in m.parameters():  # Q's last layers start at zero: make every head differ
            p.add_(0.3 * torch.randn_like(p))
    m.eval()
    h, n, gamma, beta = 3, 64, 0.9, 0.05
    z0 = m.encode({"joints": torch.randn(1, 6)}).expand(n, -1)
    acts = torch.rand(h, n, 2) * 2 - 1
    eps = torch.randn(h + 1, n, 2)
    heads = torch.stack([torch.randperm(5)[:2] for _ in range(h + 1)])
    with torch.no_grad():
        g = trajectory_value(m, z0, acts, gamma, beta, eps, heads)
        zs = [z0]
        for t in range(h):
            zs.append(m.next(zs[-1], acts[t]))
        pis = [m.pi_sample(zs[t], eps[t]) for t in range(h + 1)]
        q_a = [m.Q_heads(zs[t], acts[t], heads[t]).amin(0) for t in range(h)]
        q_pi = [m.Q_heads(zs[t], pis[t][0], heads[t]) for t in range(h + 1)]
        closed = q_a[0] - beta * pis[0][1]
        for t in range(1, h):
            closed = closed + gamma**t * (q_a[t] - q_pi[t].amin(0))
        closed = closed + gamma**h * (q_pi[h].mean(0) - q_pi[h].amin(0))
    assert g.std() > 0.1  # a non-trivial return
    assert torch.allclose(g, closed, atol=1e-5), (g - closed).abs().max()
    # the terminal part is an optimism bonus, half the two heads' disagreement at z_H: it is
    # not negligible here, and it vanishes when both "heads" of the last step are one head
    bonus = gamma**h * (q_pi[h].mean(0) - q_pi[h].amin(0))
    assert (bonus > 1e-3).any()
    same = heads.clone()
    same[h] = heads[h, 0]
    with torch.no_grad():
        g_same = trajectory_value(m, z0, acts, gamma, beta, eps, same)
    assert torch.allclose(g_same, closed - bonus, atol=1e-5), (g_same - closed + bonus).abs().max()


@pytest.mark.parametrize("num_q", [2, 5])
def test_shared_start_value_equals_the_per_sample_one(num_q):
    """The training planner's value function (one start latent, its work done once; two heads
    unrolled) returns what trajectory_value does on the start repeated N times, and MPPI with
    it picks the same action."""
    from wmil_core.world_model import ModelConfig, WorldModel

    torch.manual_seed(0)
    cfg = ModelConfig(latent_dim=16, enc_dim=32, mlp_dim=32, num_q=num_q, dropout=0.0)
    m = WorldModel({"joints": (4,)}, 2, cfg).eval()
    with torch.no_grad():  # Q's output layer starts at zero: give the heads values
        m._Qs.out.weight.normal_(0, 0.5)
    h, n = 3, 24
    z = m.encode({"joints": torch.randn(1, 4)}).detach()
    acts, eps = torch.rand(h, n, 2) * 2 - 1, torch.randn(h + 1, n, 2)
    heads = torch.stack([torch.randperm(num_q)[:2] for _ in range(h + 1)])
    with torch.no_grad():
        ref = trajectory_value(m, z.expand(n, -1), acts, 0.99, 1e-4, eps, heads)
        assert ref.std() > 0
        for z0 in (z, z.expand(n, -1)):  # one row, or N equal rows (what plan passes)
            got = shared_trajectory_value(m, z0, acts, 0.99, 1e-4, eps, heads)
            torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    pcfg = PlannerConfig(horizon=h, num_samples=n, num_pi_trajs=4, num_elites=4, iterations=2)
    noise = sample_noise(pcfg, 2, num_q, torch.Generator().manual_seed(3))
    a_ref = plan(m, z, pcfg, 0.99, 1e-4, noise).action
    a_got = plan(m, z, pcfg, 0.99, 1e-4, noise, value_fn=shared_trajectory_value).action
    torch.testing.assert_close(a_got, a_ref, atol=1e-5, rtol=1e-5)
