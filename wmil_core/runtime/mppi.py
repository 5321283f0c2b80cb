"""MPPI in latent space with rewards decoded from Q, in numpy (no torch).

The same algorithm, noise layout and return formula as :mod:`wmil_core.planning` (read its
module docstring); given the same :class:`PlanNoise` both return the same action to within
float32 rounding. The model is anything with ``next``, ``pi_sample`` and ``q_heads`` on numpy
arrays (the onnxruntime sessions of a bundle, or a test double).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np

from wmil_core.planner_config import PlannerConfig

F32 = np.float32


class PlanningModel(Protocol):
    """What MPPI needs of a world model (numpy float32 arrays in and out)."""

    def next(self, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        """d(z, a) -> z'."""

    def pi_sample(self, z: np.ndarray, eps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(action, log pi) of the policy prior with Gaussian noise ``eps``."""

    def q_heads(self, z: np.ndarray, a: np.ndarray, heads: np.ndarray) -> np.ndarray:
        """Q of the given heads: (len(heads), B, 1)."""


@dataclasses.dataclass
class PlanNoise:
    """All random draws of one planning step (numpy twin of ``wmil_core.planning.PlanNoise``)."""

    pi_traj: np.ndarray  # (H, N_pi, A) noise of the policy-prior proposals
    actions: np.ndarray  # (I, H, N - N_pi, A) standard-normal action noise
    value: np.ndarray  # (I, H + 1, N, A) noise of the policy samples inside V
    heads: np.ndarray  # (I, H + 1, 2) int64: the two Q heads used at each rollout step
    select: np.ndarray  # () uniform in [0, 1): which elite to execute (by score)
    explore: np.ndarray  # (A,) standard-normal exploration noise (training only)


NOISE_FIELDS = tuple(f.name for f in dataclasses.fields(PlanNoise))


def as_noise(noise: Any) -> PlanNoise:
    """A :class:`PlanNoise` of numpy arrays from any object (or mapping) with its fields.

    Accepts a torch ``PlanNoise`` too (its tensors convert through ``__array__``).
    """
    get = noise.__getitem__ if isinstance(noise, Mapping) else noise.__getattribute__
    arrays = {}
    for name in NOISE_FIELDS:
        dtype = np.int64 if name == "heads" else F32
        arrays[name] = np.asarray(get(name), dtype=dtype)
    return PlanNoise(**arrays)


def check_noise(noise: PlanNoise, cfg: PlannerConfig, action_dim: int, num_q: int) -> None:
    """Raise ValueError naming the first field of ``noise`` whose shape or values are wrong."""
    it = cfg.iterations_for(action_dim)
    h, n, npi, a = cfg.horizon, cfg.num_samples, cfg.num_pi_trajs, action_dim
    want = {"pi_traj": (h, npi, a), "actions": (it, h, n - npi, a), "value": (it, h + 1, n, a),
            "heads": (it, h + 1, 2), "select": (), "explore": (a,)}
    for name, shape in want.items():
        got = getattr(noise, name).shape
        if got != shape:
            raise ValueError(f"noise.{name}: shape {got}, expected {shape}")
    if noise.heads.size and (noise.heads.min() < 0 or noise.heads.max() >= num_q):
        raise ValueError(f"noise.heads: head indices must be in [0, {num_q})")


def sample_noise(cfg: PlannerConfig, action_dim: int, num_q: int,
                 rng: np.random.Generator) -> PlanNoise:
    """Draw the noise of one planning step (the shapes of ``wmil_core.planning.sample_noise``)."""
    it = cfg.iterations_for(action_dim)
    h, n, npi, a = cfg.horizon, cfg.num_samples, cfg.num_pi_trajs, action_dim
    # two distinct heads per rollout step: the first two of a random permutation
    heads = np.argsort(rng.random((it, h + 1, num_q)), axis=-1)[..., :2].astype(np.int64)
    return PlanNoise(
        pi_traj=rng.standard_normal((h, npi, a), dtype=F32),
        actions=rng.standard_normal((it, h, n - npi, a), dtype=F32),
        value=rng.standard_normal((it, h + 1, n, a), dtype=F32),
        heads=heads,
        select=np.asarray(rng.random(dtype=F32), dtype=F32),
        explore=rng.standard_normal(a, dtype=F32),
    )


def trajectory_value(model: PlanningModel, z0: np.ndarray, actions: np.ndarray, gamma: float,
                     beta: float, value_eps: np.ndarray, heads: np.ndarray) -> np.ndarray:
    """Return G of each action sequence (``wmil_core.planning.trajectory_value`` in numpy).

    z0: (N, L); actions: (H, N, A); value_eps: (H + 1, N, A); heads: (H + 1, 2) -> (N, 1).
    """
    horizon, n = actions.shape[0], actions.shape[1]
    z = z0
    _, log_pi = model.pi_sample(z, value_eps[0])  # entropy term at z_0
    q_za = model.q_heads(z, actions[0], heads[0]).min(0)  # Q(z_0, a_0): (N, 1)
    g = np.zeros((n, 1), dtype=z0.dtype)
    discount = 1.0
    qs = q_za[None]
    for t in range(horizon):
        z = model.next(z, actions[t])  # z_{t+1}
        a_pi, log_pi_next = model.pi_sample(z, value_eps[t + 1])
        q_next_a = None
        if t + 1 < horizon:  # Q(z_{t+1}, a_{t+1}) and Q(z_{t+1}, pi) in one call
            qs = model.q_heads(np.concatenate([z, z]), np.concatenate([actions[t + 1], a_pi]),
                               heads[t + 1])  # (2, 2N, 1)
            q_min = qs.min(0)
            q_next_a, q_next_pi = q_min[:n], q_min[n:]
        else:
            qs = model.q_heads(z, a_pi, heads[t + 1])  # (2, N, 1)
            q_next_pi = qs.min(0)
        v_next = q_next_pi - F32(beta) * log_pi_next
        r = q_za - F32(gamma) * v_next
        g = g + F32(discount) * (r - F32(beta) * log_pi)
        discount *= gamma
        log_pi = log_pi_next
        if q_next_a is not None:
            q_za = q_next_a
    v_terminal = qs.mean(0) - F32(beta) * log_pi  # average of the two heads at z_H
    return g + F32(discount) * v_terminal


ValueFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclasses.dataclass
class PlanResult:
    """The action to execute and the refitted sampling distribution (for warm starts)."""

    action: np.ndarray  # (A,)
    mean: np.ndarray  # (H, A)
    std: np.ndarray  # (H, A)
    value: float  # return of the executed elite


def plan(model: PlanningModel, z: np.ndarray, cfg: PlannerConfig, gamma: float, beta: float,
         noise: PlanNoise, prev_mean: np.ndarray | None = None, explore: bool = False,
         value_fn: ValueFn | None = None) -> PlanResult:
    """One MPPI planning step from latent ``z`` (shape (L,) or (1, L)); see ``planning.plan``.

    ``value_fn(z0, actions, value_eps, heads) -> (N, 1)`` replaces :func:`trajectory_value`
    (a fused graph computing the same returns; ``z0`` holds N copies of the start, so a
    function may use its first row for all); ``prev_mean`` (H, A) is shifted by one step as
    the warm start; ``explore`` adds std-scaled noise to the executed action.
    """
    z = np.asarray(z, dtype=F32).reshape(1, -1)
    h, n, npi, k = cfg.horizon, cfg.num_samples, cfg.num_pi_trajs, cfg.num_elites
    a_dim = noise.explore.shape[-1]
    if value_fn is None:
        def value_fn(z0: np.ndarray, acts: np.ndarray, eps: np.ndarray,
                     heads: np.ndarray) -> np.ndarray:
            return trajectory_value(model, z0, acts, gamma, beta, eps, heads)

    actions = np.empty((h, n, a_dim), dtype=F32)
    if npi > 0:  # policy-prior proposals
        zp = np.repeat(z, npi, axis=0)
        for t in range(h):
            actions[t, :npi], _ = model.pi_sample(zp, noise.pi_traj[t])
            if t + 1 < h:
                zp = model.next(zp, actions[t, :npi])
    mean = np.zeros((h, a_dim), dtype=F32)
    std = np.full((h, a_dim), cfg.max_std, dtype=F32)
    if prev_mean is not None:
        mean[:-1] = np.asarray(prev_mean, dtype=F32)[1:]
    zs = np.repeat(z, n, axis=0)
    for i in range(noise.actions.shape[0]):
        actions[:, npi:] = np.clip(mean[:, None] + std[:, None] * noise.actions[i], -1, 1)
        value = value_fn(zs, actions, noise.value[i], noise.heads[i])
        value = np.nan_to_num(value.astype(F32), nan=0.0).reshape(n)  # (N,)
        elite_idx = np.argsort(-value, kind="stable")[:k]  # best first, as torch.topk
        elite_value = value[elite_idx]
        elite_actions = actions[:, elite_idx]  # (H, k, A)
        score = np.exp(F32(cfg.temperature) * (elite_value - elite_value.max()))
        score = score / score.sum()
        mean = (score[None, :, None] * elite_actions).sum(1)
        var = (score[None, :, None] * (elite_actions - mean[:, None]) ** 2).sum(1)
        std = np.clip(np.sqrt(var), cfg.min_std, cfg.max_std).astype(F32)
    # execute one elite sampled by score (cumulative sums in float64, as torch on the CPU)
    cdf = np.cumsum(score, dtype=np.float64).astype(F32)
    j = min(int(np.searchsorted(cdf, F32(noise.select) * cdf[-1], side="left")), k - 1)
    action = elite_actions[0, j]
    if explore:
        action = action + std[0] * noise.explore
    return PlanResult(np.clip(action, -1, 1).astype(F32), mean.astype(F32), std,
                      float(elite_value[j]))
