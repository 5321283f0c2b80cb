"""MPPI in latent space with rewards decoded from Q (no reward model).

Every random draw of a planning step lives in one :class:`PlanNoise`, so the same noise gives
the same action in the torch planner here and in the numpy/onnxruntime planner of
``wmil_core.runtime`` (tested to 1e-4).

Trajectory return, for actions a_0..a_{H-1} from latent z_0 (z_{t+1} = d(z_t, a_t)):
    r_t = Q(z_t, a_t) - gamma V(z_{t+1})                       (inverse Bellman operator)
    G   = sum_t gamma^t (r_t - beta log pi(.|z_t)) + gamma^H V_avg(z_H)
with V(z) = Q(z, a~pi(z)) - beta log pi(a|z), Q the min (V_avg: the mean) of two random heads.

Expanded, the V(z_1..z_H) terms cancel (each V(z_t) is one sample, read by r_{t-1} and by the
entropy term of step t; tested):
    G = Q(z_0, a_0) - beta log pi_0 + sum_{t=1}^{H-1} gamma^t [Q(z_t, a_t) - Q(z_t, pi_t)]
        + gamma^H [Q_avg - Q_min](z_H, pi_H)
so MPPI ranks a sequence by its first Q, the one-sample advantages of its later actions over
the policy prior, and an optimism bonus of half the two heads' disagreement at z_H; the
paper's terminal value contributes nothing else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor

from wmil_core.planner_config import PlannerConfig

__all__ = ["PlanNoise", "PlanResult", "PlannerConfig", "plan", "returns_from", "sample_noise",
           "shared_trajectory_value", "trajectory_value"]


class PlanningModel(Protocol):
    """What MPPI needs of a world model."""

    def next(self, z: Tensor, a: Tensor) -> Tensor:
        """d(z, a) -> z'."""

    def pi_sample(self, z: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
        """(action, log pi) of the policy prior with Gaussian noise ``eps``."""

    def Q_heads(self, z: Tensor, a: Tensor, heads: Tensor) -> Tensor:  # noqa: N802
        """Q of the given heads: (len(heads), B, 1)."""


@dataclasses.dataclass
class PlanNoise:
    """All random draws of one planning step."""

    pi_traj: Tensor  # (H, N_pi, A) noise of the policy-prior proposals
    actions: Tensor  # (I, H, N - N_pi, A) standard-normal action noise
    value: Tensor  # (I, H + 1, N, A) noise of the policy samples inside V
    heads: Tensor  # (I, H + 1, 2) int64: the two Q heads used at each rollout step
    select: Tensor  # () uniform in [0, 1): which elite to execute (by score)
    explore: Tensor  # (A,) standard-normal exploration noise (training only)


def sample_noise(cfg: PlannerConfig, action_dim: int, num_q: int,
                 generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> PlanNoise:
    """Draw the noise of one planning step."""
    it = cfg.iterations_for(action_dim)
    h, n, npi, a = cfg.horizon, cfg.num_samples, cfg.num_pi_trajs, action_dim

    def randn(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=generator).to(device)

    heads = torch.stack([
        torch.randperm(num_q, generator=generator)[:2] for _ in range(it * (h + 1))
    ]).reshape(it, h + 1, 2).to(device)
    return PlanNoise(
        pi_traj=randn(h, npi, a),
        actions=randn(it, h, n - npi, a),
        value=randn(it, h + 1, n, a),
        heads=heads,
        select=torch.rand((), generator=generator).to(device),
        explore=randn(a),
    )


QAt = Callable[[Tensor, list[Tensor], Tensor], Tensor]


def returns_from(model: PlanningModel, z1: Tensor, q_za: Tensor, log_pi: Tensor,
                 actions: Tensor, gamma: float, beta: float, value_eps: Tensor, heads: Tensor,
                 q_at: QAt) -> Tensor:
    """G of each sequence (module docstring) given its first step: ``z1`` = z_1, ``q_za`` =
    Q(z_0, a_0) (min of the two heads, (N, 1)), ``log_pi`` = log pi at z_0 (N, 1).

    ``q_at(z, batches, heads)``: Q of the two heads at latents z for each (N, A) action batch,
    the batches one after the other along the rows, (2, len(batches) N, 1). The stacked rows
    are sliced with N (which a tracer keeps dynamic, where ``split`` would bake it in).
    """
    horizon, n = actions.shape[0], actions.shape[1]
    z = z1
    g = torch.zeros_like(q_za)
    discount = 1.0
    for t in range(horizon):  # z is z_{t+1}
        if t > 0:
            z = model.next(z, actions[t])
        a_pi, log_pi_next = model.pi_sample(z, value_eps[t + 1])
        last = t + 1 == horizon  # else Q(z_{t+1}, a_{t+1}) and Q(z_{t+1}, pi) in one call
        qs = q_at(z, [a_pi] if last else [actions[t + 1], a_pi], heads[t + 1])
        q_min = qs.amin(0)
        v_next = (q_min if last else q_min[n:]) - beta * log_pi_next
        r = q_za - gamma * v_next
        g = g + discount * (r - beta * log_pi)
        discount *= gamma
        log_pi = log_pi_next
        if not last:
            q_za = q_min[:n]
    v_terminal = qs.mean(0) - beta * log_pi  # average of the two heads at z_H
    return g + discount * v_terminal


def trajectory_value(model: PlanningModel, z0: Tensor, actions: Tensor, gamma: float,
                     beta: float, value_eps: Tensor, heads: Tensor) -> Tensor:
    """Return G of each action sequence (see module docstring).

    z0: (N, L); actions: (H, N, A); value_eps: (H + 1, N, A); heads: (H + 1, 2) -> (N, 1).
    """
    def q_at(z: Tensor, batches: list[Tensor], hd: Tensor) -> Tensor:
        return model.Q_heads(torch.cat([z] * len(batches)), torch.cat(batches), hd)

    _, log_pi = model.pi_sample(z0, value_eps[0])  # entropy term at z_0
    q_za = model.Q_heads(z0, actions[0], heads[0]).amin(0)  # Q(z_0, a_0): (N, 1)
    return returns_from(model, model.next(z0, actions[0]), q_za, log_pi, actions, gamma, beta,
                        value_eps, heads, q_at)


class SharedStartModel(PlanningModel, Protocol):
    """What :func:`shared_trajectory_value` needs besides :class:`PlanningModel`."""

    def next_z_part(self, z: Tensor) -> Tensor:
        """The share of d's first layer that depends on z alone."""

    def next_from(self, zw: Tensor, a: Tensor) -> Tensor:
        """d(z, a) from :meth:`next_z_part` (z), whose rows broadcast over a's."""

    def Q_at(self, z: Tensor, actions: list[Tensor], heads: Tensor) -> Tensor:  # noqa: N802
        """Q of two heads at z for each action batch: (2, len(actions) N, 1)."""


def shared_trajectory_value(model: SharedStartModel, z0: Tensor, actions: Tensor,
                            gamma: float, beta: float, value_eps: Tensor,
                            heads: Tensor) -> Tensor:
    """:func:`trajectory_value` for samples that all start from one latent (MPPI's).

    ``z0``: (1, L), or (N, L) rows that are all that latent (only the first is read). The work
    that depends on z_0 alone is done once: the policy prior's network (the samples differ
    only in their noise) and z_0's share of the first layer of d and of the Q heads; from step
    1 on, Q(z_t, a_t) and Q(z_t, pi) share z_t's part of the Q heads' first layer. Same
    returns as :func:`trajectory_value` up to float rounding (tested); the exported
    ``value.onnx`` of a shared-start bundle traces this function.
    """
    z0 = z0[:1]
    _, log_pi = model.pi_sample(z0, value_eps[0])  # entropy term at z_0: (N, 1)
    q_za = model.Q_at(z0, [actions[0]], heads[0]).amin(0)  # Q(z_0, a_0): (N, 1)
    z1 = model.next_from(model.next_z_part(z0), actions[0])
    return returns_from(model, z1, q_za, log_pi, actions, gamma, beta, value_eps, heads,
                        model.Q_at)


@dataclasses.dataclass
class PlanResult:
    """The action to execute and the refitted sampling distribution (for warm starts)."""

    action: Tensor  # (A,)
    mean: Tensor  # (H, A)
    std: Tensor  # (H, A)
    value: Tensor  # () return of the executed elite


@torch.no_grad()
def plan(model: PlanningModel, z: Tensor, cfg: PlannerConfig, gamma: float, beta: float,
         noise: PlanNoise, prev_mean: Tensor | None = None, explore: bool = False,
         value_fn: Callable[..., Tensor] = trajectory_value) -> PlanResult:
    """One MPPI planning step from latent ``z`` (shape (L,) or (1, L)).

    ``prev_mean``: the previous step's mean (H, A), shifted by one as the warm start.
    ``explore``: add std-scaled noise to the executed action (training), else not (evaluation).
    ``value_fn``: :func:`trajectory_value`, :func:`shared_trajectory_value` or a compiled
    version of either (same signature; z0 is the start repeated N times).
    """
    # actions, mean and std in at least float32, whatever autocast made the latent
    z = z.reshape(1, -1).to(torch.promote_types(z.dtype, torch.float32))
    h, n, npi = cfg.horizon, cfg.num_samples, cfg.num_pi_trajs
    a_dim = noise.explore.shape[-1]
    actions = torch.empty(h, n, a_dim, dtype=z.dtype, device=z.device)
    if npi > 0:  # policy-prior proposals
        zp = z.expand(npi, -1)
        for t in range(h):
            actions[t, :npi], _ = model.pi_sample(zp, noise.pi_traj[t])
            if t + 1 < h:
                zp = model.next(zp, actions[t, :npi])
    mean = torch.zeros(h, a_dim, dtype=z.dtype, device=z.device)
    std = torch.full((h, a_dim), cfg.max_std, dtype=z.dtype, device=z.device)
    if prev_mean is not None:
        mean[:-1] = prev_mean[1:]
    zs = z.expand(n, -1)
    for i in range(noise.actions.shape[0]):
        actions[:, npi:] = (mean.unsqueeze(1) + std.unsqueeze(1) * noise.actions[i]).clamp(-1, 1)
        value = value_fn(model, zs, actions, gamma, beta, noise.value[i], noise.heads[i])
        value = value.nan_to_num(0.0).squeeze(1)  # (N,)
        elite_value, elite_idx = torch.topk(value, cfg.num_elites)
        elite_actions = actions[:, elite_idx]  # (H, k, A)
        score = torch.exp(cfg.temperature * (elite_value - elite_value.max()))
        score = score / score.sum()
        mean = (score[None, :, None] * elite_actions).sum(1)
        var = (score[None, :, None] * (elite_actions - mean.unsqueeze(1)).pow(2)).sum(1)
        std = var.sqrt().clamp(cfg.min_std, cfg.max_std)
    # execute one elite sampled by score
    cdf = torch.cumsum(score, 0)
    k = int(torch.searchsorted(cdf, noise.select * cdf[-1]).clamp(max=cfg.num_elites - 1))
    action = elite_actions[0, k]
    if explore:
        action = action + std[0] * noise.explore
    return PlanResult(action.clamp(-1, 1), mean, std, elite_value[k])
