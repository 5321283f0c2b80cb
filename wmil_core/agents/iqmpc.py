"""IQ-MPC (Li, Huang, Su, ICML 2025): a reward-free latent world model trained with the
inverse soft-Q objective, acting by MPPI on rewards decoded from Q.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import warnings
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from wmil_core import machine
from wmil_core.buffer import Batch
from wmil_core.losses import (
    action_rank_loss,
    bc_loss,
    bc_mse_loss,
    check_value_term,
    chi2_term,
    consistency_loss,
    decoded_reward,
    gradient_penalty,
    iq_loss,
    offline_value_term,
    policy_loss,
    rho_weights,
    value_rows,
)
from wmil_core.planning import PlannerConfig, plan, sample_noise, shared_trajectory_value
from wmil_core.world_model import ModelConfig, WorldModel

# matrix-product precisions of the update and planner (IQMPCConfig.precision)
Precision = Literal["float32", "bfloat16"]


def discount_for(episode_length: int, denom: float = 5.0, lo: float = 0.95,
                 hi: float = 0.995) -> float:
    """TD-MPC2's discount heuristic: gamma = clip((L/5 - 1) / (L/5), 0.95, 0.995)."""
    frac = episode_length / denom
    return float(min(max((frac - 1) / frac, lo), hi))


@dataclasses.dataclass
class IQMPCConfig:
    """Hyperparameters of IQ-MPC (defaults: the paper's code)."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    planner: PlannerConfig = dataclasses.field(default_factory=PlannerConfig)
    batch_size: int = 256  # sub-trajectories from EACH buffer (expert and behaviour)
    lr: float = 3e-4  # Adam learning rate
    enc_lr_scale: float = 0.3  # encoder learning rate = lr * enc_lr_scale
    grad_clip_norm: float = 20.0
    tau: float = 0.01  # Polyak rate of the target Q heads
    rho: float = 0.5  # temporal weight of multi-step losses
    consistency_coef: float = 20.0
    value_coef: float = 0.1  # weight of the inverse soft-Q loss
    alpha: float = 0.5  # chi-squared regulariser: 1/(4 alpha) (Q - gamma V')^2
    beta: float = 1e-4  # entropy coefficient of the soft value and the policy prior
    gamma: float | None = None  # discount; None: from the episode length (TD-MPC2 heuristic)
    # value term of the inverse soft-Q loss (losses.iq_loss): v0 | td | mix | expert
    value_term: Literal["v0", "td", "mix", "expert"] = "v0"
    # weight of mean V(z0) in the v0 value term (None: 1 - gamma, as IQ-Learn; other value
    # terms ignore it); larger values lower Q at the prior's actions in expert states harder;
    # beyond the paper
    v0_coef: float | None = None
    # std (action units) of perturbed copies of the expert's actions at the expert rows'
    # latents, rolled one step through d and held to a decoded reward of 0 by a second
    # chi-squared term on the Q heads alone: negatives that make Q peak at the expert's action
    # where the expert was (0: off); beyond the paper
    negative_action_std: float = 0.0
    # weight of a ranking term on the Q heads at the expert rows' latents: softmax
    # cross-entropy putting Q(z_E, a_E) first among ``rank_negatives`` other actions, half
    # uniform in [-1, 1]^A and half a_E + ``rank_noise_std`` N(0, 1) (clipped), at temperature
    # ``rank_temperature`` (Q units); an implicit behaviour-cloning (energy) objective on Q
    # itself, which the planner maximises (0: off, as the paper; beyond the paper)
    rank_coef: float = 0.0
    rank_negatives: int = 8
    rank_noise_std: float = 0.3
    rank_temperature: float = 1.0
    # extra negatives for the ranking term drawn from the policy prior at the expert rows'
    # latents (detached): the prior chases Q's maximum, so its samples are the actions the
    # planner would propose, the hard counter-examples of implicit behaviour cloning (0: off)
    rank_prior_negatives: int = 0
    grad_pen: float = 0.0  # lambda of the W1 gradient penalty (0: off, as the paper's code)
    # weight of a behaviour-cloning term -log pi(a_E|z_E) on the expert rows in the policy
    # prior's loss (the paper's code has it as reg_coef, default 0: off)
    pi_bc_coef: float = 0.0
    # the form of that term: "nll", -log pi (the paper code's); "mse", the squared error of
    # the prior's mean action, which weighs every expert row alike (beyond the paper)
    pi_bc_form: Literal["nll", "mse"] = "nll"
    # decoupled (AdamW-style) weight decay on the Q heads alone: each update shrinks their
    # weights by lr * q_weight_decay (0: off, as the paper's code); beyond the paper
    q_weight_decay: float = 0.0
    mpc: bool = True  # plan with MPPI (False: act with the policy prior)
    # torch.compile the planner's value rollout and the update's losses (the gradient penalty
    # stays eager): about a minute of compilation per graph, then fused kernels (see
    # docs/iqmpc-speed.md for the measured speed-up); pays off in long runs, so off by default
    # (and in tests).
    # "planner": the value rollout alone (the update stays eager, which its fused kernels
    # made as fast or faster at batch 128 + 128: docs/iqmpc-speed.md)
    compile: bool | Literal["planner"] = False
    # bfloat16: matrix products of the update and the planner in bfloat16 (torch.autocast;
    # weights, optimiser, losses and the Q heads' scalar output stay float32). On CPUs with
    # AMX (or GPUs with tensor cores) that multiplies matmul throughput (docs/iqmpc-speed.md);
    # exported bundles are float32 either way. float32: everything in float32 (the default)
    precision: Precision = "float32"
    # Polyak rate of an averaged copy of every network (encoder, dynamics, Q heads, prior),
    # updated after each update; evaluation, ``wmil eval`` and export plan with the copy, while
    # training's own rollouts stay with the online networks (0: off, no copy; beyond the paper)
    ema: float = 0.0
    # linear learning-rate decay of every optimiser (the encoder keeps its scale): lr until
    # update ``lr_decay_start`` (offline updates count), then down to lr * ``lr_final_scale``
    # over ``lr_decay_updates`` updates, constant after; 0 updates: constant lr, as the paper's
    # code (beyond the paper)
    lr_decay_start: int = 0
    lr_decay_updates: int = 0
    lr_final_scale: float = 0.1

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {self.batch_size}")
        for name in ("lr", "grad_clip_norm", "alpha"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be > 0")
        if not 0 < self.tau <= 1:
            raise ValueError(f"tau: must be in (0, 1], got {self.tau}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema: must be in [0, 1), got {self.ema}")
        if min(self.lr_decay_start, self.lr_decay_updates) < 0:
            raise ValueError("lr_decay_start and lr_decay_updates: must be >= 0")
        if not 0 < self.lr_final_scale <= 1:
            raise ValueError(f"lr_final_scale: must be in (0, 1], got {self.lr_final_scale}")
        if not 0 < self.rho <= 1:
            raise ValueError(f"rho: must be in (0, 1], got {self.rho}")
        for name in ("beta", "grad_pen", "pi_bc_coef", "q_weight_decay", "negative_action_std",
                     "rank_coef", "rank_noise_std", "rank_prior_negatives"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if self.rank_negatives < 2:
            raise ValueError(f"rank_negatives: must be >= 2, got {self.rank_negatives}")
        if self.rank_temperature <= 0:
            raise ValueError(f"rank_temperature: must be > 0, got {self.rank_temperature}")
        if self.gamma is not None and not 0 < self.gamma < 1:
            raise ValueError(f"gamma: must be in (0, 1), got {self.gamma}")
        if self.v0_coef is not None and not 0 <= self.v0_coef < 1:
            raise ValueError(f"v0_coef: must be in [0, 1) or null, got {self.v0_coef}")
        if self.pi_bc_form not in ("nll", "mse"):
            raise ValueError(f"pi_bc_form: must be nll or mse, got {self.pi_bc_form!r}")
        check_value_term(self.value_term)


def lr_scale(updates: int, start: int, length: int, final: float) -> float:
    """Learning-rate multiplier after ``updates`` updates: 1 until ``start``, then linear to
    ``final`` over ``length`` updates, ``final`` after (1 throughout when ``length`` is 0)."""
    if length <= 0 or updates <= start:
        return 1.0
    return 1.0 + (final - 1.0) * min((updates - start) / length, 1.0)


class IQMPC:
    """The agent: world model, optimisers, update and planning.

    Args:
        obs_shapes: observation key -> shape (as in the task's observation spec).
        action_dim: A.
        episode_length: agent steps per episode (sets gamma when ``cfg.gamma`` is None).
        cfg: hyperparameters.
        device: torch device (CUDA when present is the caller's choice).
        seed: seeds the planner's noise generator.
    """

    def __init__(self, obs_shapes: Mapping[str, tuple[int, ...]], action_dim: int,
                 episode_length: int, cfg: IQMPCConfig, device: str | torch.device = "cpu",
                 seed: int = 0) -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        if (cfg.precision == "bfloat16" and self.device.type == "cpu"
                and not machine.native_bfloat16_matmul()):
            warnings.warn(f"precision bfloat16: this CPU ({machine.cpu_model()}) has neither AMX "
                          "nor AVX512-BF16, so bfloat16 matrix products are emulated and far "
                          "slower than float32 (docs/runtime-speed.md); use precision float32 "
                          "here",
                          RuntimeWarning, stacklevel=2)
        self.action_dim = action_dim
        self.obs_shapes = {k: tuple(v) for k, v in obs_shapes.items()}
        self.gamma = cfg.gamma if cfg.gamma is not None else discount_for(episode_length)
        self.model = WorldModel(self.obs_shapes, action_dim, cfg.model).to(self.device)
        self.optim = torch.optim.Adam([
            {"params": self.model._encoder.parameters(), "lr": cfg.lr * cfg.enc_lr_scale},
            {"params": self.model._dynamics.parameters()},
            {"params": self.model._Qs.parameters(), "weight_decay": cfg.q_weight_decay},
        ], lr=cfg.lr, fused=True, decoupled_weight_decay=True)
        self.pi_optim = torch.optim.Adam(self.model._pi.parameters(), lr=cfg.lr, eps=1e-5,
                                         fused=True)
        # each group's undecayed learning rate (lr_scale multiplies it before every update)
        self._base_lrs = [g["lr"] for g in (*self.optim.param_groups,
                                             *self.pi_optim.param_groups)]
        self.model.eval()
        # the averaged networks evaluation plans with (cfg.ema > 0), never trained directly
        self.ema_model: WorldModel | None = None
        if cfg.ema > 0:
            self.ema_model = copy.deepcopy(self.model).requires_grad_(False)
        self._eval_online = False  # online_evaluation(): evaluate the online networks
        self.generator = torch.Generator().manual_seed(seed)
        self._prev_mean: Tensor | None = None
        self.updates = 0
        # every MPPI sample starts from the agent's latent: its work is done once
        self._value_fn = shared_trajectory_value
        self._model_loss_fn = self._model_losses
        self._pi_loss_fn = self._pi_loss
        if cfg.compile:  # True or "planner"
            self._value_fn = torch.compile(shared_trajectory_value, dynamic=False)
        if cfg.compile is True:
            self._model_loss_fn = torch.compile(self._model_losses, dynamic=False)
            self._pi_loss_fn = torch.compile(self._pi_loss, dynamic=False)

    def autocast(self) -> torch.autocast:
        """The update's and planner's autocast context (a no-op at ``precision`` float32)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16,
                              enabled=self.cfg.precision == "bfloat16")

    @property
    def deploy_model(self) -> WorldModel:
        """The networks evaluation and export use: the averaged copy when ``cfg.ema`` > 0."""
        return self.ema_model if self.ema_model is not None else self.model

    @property
    def eval_model(self) -> WorldModel:
        """The networks evaluation plans with: ``deploy_model``, or the online networks inside
        ``online_evaluation()``."""
        return self.model if self._eval_online else self.deploy_model

    @contextlib.contextmanager
    def online_evaluation(self) -> Iterator[None]:
        """Within the block, evaluation (``eval_mode``) plans with the online networks."""
        self._eval_online = True
        try:
            yield
        finally:
            self._eval_online = False

    # -- acting --------------------------------------------------------------------------------
    def obs_to_tensors(self, obs: Mapping[str, np.ndarray]) -> dict[str, Tensor]:
        """One observation dict (numpy) -> batched tensors on the device."""
        return {k: torch.as_tensor(np.asarray(obs[k])).unsqueeze(0).to(self.device)
                for k in self.obs_shapes}

    @torch.no_grad()
    def act(self, obs: Mapping[str, np.ndarray], t0: bool, eval_mode: bool = False) -> np.ndarray:
        """Action in [-1, 1]^A for one observation; ``t0`` marks an episode's first step."""
        model = self.eval_model if eval_mode else self.model
        with self.autocast():
            z = model.encode(self.obs_to_tensors(obs))
            if not self.cfg.mpc:
                mu, a, _, _ = model.pi(z)
                return (mu if eval_mode else a)[0].float().cpu().numpy()
            noise = sample_noise(self.cfg.planner, self.action_dim, self.cfg.model.num_q,
                                 self.generator, self.device)
            res = plan(model, z[0], self.cfg.planner, self.gamma, self.cfg.beta, noise,
                       prev_mean=None if t0 else self._prev_mean, explore=not eval_mode,
                       value_fn=self._value_fn)
        self._prev_mean = res.mean.float()
        return res.action.float().cpu().numpy()

    # -- learning -------------------------------------------------------------------------------
    def update(self, expert: Batch, behaviour: Batch | None) -> dict[str, float]:
        """One gradient step of world model + Q (inverse soft-Q) and of the policy prior.

        ``behaviour`` None trains on expert data alone (offline pre-training; the value
        term is then the form's expert rows, or v0 for td: ``losses.offline_value_term``).
        """
        cfg, m = self.cfg, self.model
        if behaviour is None:
            obs, action, done = expert.obs, expert.action, expert.done
            n_exp = action.shape[1]
            value_term = offline_value_term(cfg.value_term)
        else:  # expert first, then behaviour, along the batch axis
            obs = {k: torch.cat([expert.obs[k], behaviour.obs[k]], 1) for k in expert.obs}
            action = torch.cat([expert.action, behaviour.action], 1)
            done = torch.cat([expert.done, behaviour.done], 1)
            n_exp = expert.action.shape[1]
            value_term = cfg.value_term
        lr = self._set_lr()
        m.train()
        # pi's own parameters get no gradient from the model loss (the policy loss trains them)
        m._pi.requires_grad_(False)
        with self.autocast():
            total, zs_t, stats = self._model_loss_fn(obs, action, done, n_exp, value_term)
        m._pi.requires_grad_(True)
        if behaviour is not None and cfg.grad_pen > 0:
            # eager beside the (possibly compiled) losses: it differentiates dQ/dx again,
            # and compiled (aot_autograd) graphs have no double backward
            gp = self._gradient_penalty(zs_t, action, n_exp)
            total = total + cfg.value_coef * gp  # part of the value loss, as in the paper
            stats.update(grad_pen=gp.detach(), iq_loss=stats["iq_loss"] + gp.detach(),
                         total_loss=total.detach())
        self.optim.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(m.parameters(), cfg.grad_clip_norm)
        if not torch.isfinite(total):
            raise FloatingPointError(f"non-finite loss at update {self.updates}: {total.item()}")
        self.optim.step()

        # policy prior: max-entropy objective on latents of both buffers (Q frozen)
        m.track_q_grad(False)
        with self.autocast():
            pi_loss, pi_stats = self._pi_loss_fn(zs_t.detach(), action[:, :n_exp], n_exp)
        self.pi_optim.zero_grad(set_to_none=True)
        pi_loss.backward()
        torch.nn.utils.clip_grad_norm_(m._pi.parameters(), cfg.grad_clip_norm)
        self.pi_optim.step()
        m.track_q_grad(True)
        m.soft_update_target_Q(cfg.tau)
        m.eval()
        if self.ema_model is not None:
            self._update_ema()
        self.updates += 1
        stats.update(pi_loss=pi_loss, grad_norm=grad_norm, **pi_stats)
        return {**{k: float(v.detach()) for k, v in stats.items()}, "lr": lr}

    def _set_lr(self) -> float:
        """Set every optimiser group's learning rate for the coming update (the config's
        schedule wins over a checkpoint's groups); returns the world model's."""
        cfg = self.cfg
        scale = lr_scale(self.updates, cfg.lr_decay_start, cfg.lr_decay_updates,
                         cfg.lr_final_scale)
        groups = (*self.optim.param_groups, *self.pi_optim.param_groups)
        for group, base in zip(groups, self._base_lrs, strict=True):
            group["lr"] = base * scale
        return cfg.lr * scale

    @torch.no_grad()
    def _update_ema(self) -> None:
        """Move the averaged copy a step ``cfg.ema`` towards the online networks (buffers,
        such as the target Q heads' copies, follow the same way when floating point)."""
        ema, online = self.ema_model, self.model
        dst = [p for p in ema.parameters()] + [b for b in ema.buffers() if b.is_floating_point()]
        src = [p for p in online.parameters()] + [b for b in online.buffers()
                                                   if b.is_floating_point()]
        torch._foreach_lerp_(dst, src, self.cfg.ema)

    def _model_losses(self, obs: dict[str, Tensor], action: Tensor, done: Tensor, n_exp: int,
                      value_term: str) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Forward pass of the world-model update: (total loss, latent rollout, statistics).

        Rows ``:n_exp`` of the batch are expert sub-trajectories, the rest behaviour.
        """
        cfg, m = self.cfg, self.model
        h, b = action.shape[0], action.shape[1]
        is_expert = torch.arange(b, device=action.device) < n_exp
        with torch.no_grad():
            next_z = m.encode({k: v[1:] for k, v in obs.items()})  # (H, B, L) targets
            next_v = m.V(next_z, target=True, beta=cfg.beta)  # (H, B, 1)
        z = m.encode({k: v[0] for k, v in obs.items()})
        zs = [z]
        for t in range(h):
            z = m.next(z, action[t])
            zs.append(z)
        zs_t = torch.stack(zs)  # (H+1, B, L)
        cons = consistency_loss(zs_t[1:], next_z, cfg.rho)
        # Q(z, a) of every head at every step; V(z) = min of two random heads at a ~ pi(z)
        # only where the value term reads it: expert rows at t = 0 (v0), or the rows it
        # averages over at every step (td: behaviour, mix: all, expert: expert)
        qs = m.Q(zs_t[:-1], action, "all")  # (num_q, H, B, 1)
        rows = value_rows(value_term, n_exp, b)
        zv = zs_t[0, rows] if value_term == "v0" else zs_t[:-1, rows]
        _, a_pi, log_pi, _ = m.pi(zv)
        v_sel = m.Q(zv, a_pi, "min") - cfg.beta * log_pi
        if value_term == "v0":
            v, v0 = v_sel, v_sel  # v is not read by the v0 form
        else:  # zeros on the rows the value term does not read
            v = torch.cat([v_sel.new_zeros(h, rows.start, 1), v_sel,
                           v_sel.new_zeros(h, b - rows.stop, 1)], 1)
            v0 = None
        iq, parts = iq_loss(qs, v, next_v, is_expert, self.gamma, cfg.alpha, value_term, v0,
                            done, cfg.v0_coef)  # (num_q, H)
        if cfg.negative_action_std > 0:
            neg = self._negative_chi2(zs_t[:-1, :n_exp].detach(), action[:, :n_exp],
                                      done[:, :n_exp])
            iq = iq + neg
            parts["negative_loss"] = neg.detach().mean()
        w = rho_weights(h, cfg.rho, action.device)
        value_loss = (iq * w).sum() / (h * cfg.model.num_q)
        stats: dict[str, Tensor] = {}
        total = cfg.consistency_coef * cons + cfg.value_coef * value_loss
        if cfg.rank_coef > 0:
            rank, accuracy = self._rank_loss(zs_t[:-1, :n_exp], action[:, :n_exp],
                                             qs[:, :, :n_exp])
            rank = (rank * w).sum() / (h * cfg.model.num_q)
            total = total + cfg.rank_coef * rank
            stats.update(rank_loss=rank.detach(), rank_accuracy=accuracy)
        with torch.no_grad():
            r = qs.mean(0) - self.gamma * next_v  # decoded reward per sample, (H, B, 1)
            stats.update(
                consistency_loss=cons.detach(), iq_loss=value_loss.detach(),
                total_loss=total.detach(), q_expert=qs[:, :, :n_exp].mean(),
                reward_expert=r[:, :n_exp].mean(), **parts,
            )
            if n_exp < b:
                stats["q_behaviour"] = qs[:, :, n_exp:].mean()
                stats["reward_behaviour"] = r[:, n_exp:].mean()
        return total, zs_t, stats

    def _negative_chi2(self, z_exp: Tensor, a_exp: Tensor, done: Tensor) -> Tensor:
        """Chi-squared term 1/(4 alpha) mean (Q(z_E, a~) - gamma V'(d(z_E, a~)))^2 for
        perturbed expert actions a~ = clip(a_E + std * N(0, 1), -1, 1): decoded reward 0, as
        the objective gives non-expert behaviour, for actions the expert did not take where it
        was. z_exp: (H, n, L) expert latents (detached: only the Q heads learn from these);
        a_exp: (H, n, A); done: (H, n, 1), V' = 0 after termination. Returns (num_q, H)."""
        cfg, m = self.cfg, self.model
        a_neg = (a_exp + cfg.negative_action_std * torch.randn_like(a_exp)).clamp(-1.0, 1.0)
        with torch.no_grad():
            next_v = m.V(m.next(z_exp, a_neg), target=True, beta=cfg.beta)  # (H, n, 1)
        r = decoded_reward(m.Q(z_exp, a_neg, "all"), next_v, self.gamma, done)  # (num_q, H, n, 1)
        return chi2_term(r, cfg.alpha)

    def _rank_loss(self, z_exp: Tensor, a_exp: Tensor, q_pos: Tensor) -> tuple[Tensor, Tensor]:
        """The ranking term (``cfg.rank_coef``) per head and step, (num_q, H), and the share
        of (head, step, row) triples whose expert action beats every negative (the
        ``rank_negatives`` random ones and ``rank_prior_negatives`` samples of pi(z_E)).

        z_exp: (H, n, L) expert latents (not detached: the encoder and dynamics learn from
        the ranking as they do from the soft-Q term); a_exp: (H, n, A); q_pos: (num_q, H, n, 1)
        Q at the expert's actions, already computed by the update."""
        cfg, m = self.cfg, self.model
        k = cfg.rank_negatives
        shape = (*a_exp.shape[:-1], k, a_exp.shape[-1])  # (H, n, K, A)
        uniform = torch.rand(shape, device=a_exp.device, dtype=a_exp.dtype) * 2.0 - 1.0
        near = a_exp.unsqueeze(-2) + cfg.rank_noise_std * torch.randn(
            shape, device=a_exp.device, dtype=a_exp.dtype)
        half = torch.arange(k, device=a_exp.device).view(k, 1) < k // 2  # (K, 1)
        a_neg = torch.where(half, uniform, near).clamp(-1.0, 1.0)
        z_rep = z_exp.unsqueeze(-2).expand(*z_exp.shape[:-1], k + cfg.rank_prior_negatives,
                                           z_exp.shape[-1])
        if cfg.rank_prior_negatives > 0:
            with torch.no_grad():
                _, a_pi, _, _ = m.pi(z_rep[..., k:, :].detach())  # (H, n, K_pi, A)
            a_neg = torch.cat([a_neg, a_pi.to(a_neg.dtype)], -2)
        q_neg = m.Q(z_rep, a_neg, "all").squeeze(-1)  # (num_q, H, n, K)
        with torch.no_grad():
            accuracy = (q_pos.float() > q_neg.float().amax(-1, keepdim=True)).float().mean()
        return action_rank_loss(q_pos, q_neg, cfg.rank_temperature), accuracy

    def _gradient_penalty(self, zs_t: Tensor, action: Tensor, n_exp: int) -> Tensor:
        """W1 penalty on Q at points between expert and behaviour (z, a) of every step."""
        m = self.model
        za = torch.cat([zs_t[:-1].float(), action], -1)  # (H, B, L+A), float32 as the heads
        return gradient_penalty(
            lambda x: m.Q(x[..., :-self.action_dim], x[..., -self.action_dim:], "avg"),
            za[:, :n_exp].reshape(-1, za.shape[-1]),
            za[:, n_exp:].reshape(-1, za.shape[-1]), self.cfg.grad_pen)

    def _pi_loss(self, zs: Tensor, expert_action: Tensor,
                 n_exp: int) -> tuple[Tensor, dict[str, Tensor]]:
        """Policy-prior loss on latents ``zs`` (H+1, B, L), Q frozen: maximum entropy, plus
        ``pi_bc_coef`` times a rho-weighted behaviour-cloning term (``pi_bc_form``: -log pi,
        or the mean action's squared error) of the expert actions (H, n_exp, A) at the expert
        rows' latents."""
        cfg = self.cfg
        _, a_pi, log_pi, _ = self.model.pi(zs)
        loss = policy_loss(log_pi, self.model.Q(zs, a_pi, "min"), cfg.beta, cfg.rho)
        if cfg.pi_bc_coef <= 0:
            return loss, {}
        if cfg.pi_bc_form == "mse":
            mean_e = self.model.pi(zs[:-1, :n_exp], deterministic=True)[0]  # (H, n_exp, A)
            bc = bc_mse_loss(mean_e, expert_action, cfg.rho)
        else:
            log_pi_e = self.model.pi_log_prob(zs[:-1, :n_exp], expert_action)  # (H, n_exp, 1)
            bc = bc_loss(log_pi_e, cfg.rho)
        return loss + cfg.pi_bc_coef * bc, {"pi_bc_loss": bc.detach()}

    @torch.no_grad()
    def decode_rewards(self, obs: Mapping[str, np.ndarray], actions: np.ndarray) -> np.ndarray:
        """Decoded reward of each real transition of an episode (obs: T+1 rows, actions: T).

        r_t = mean_heads Q(h(o_t), a_t) - gamma V(h(o_{t+1})), V with the policy's mean action,
        from the networks evaluation plans with (``eval_model``), so that an evaluation's
        correlation reads the same critic its planner used.
        """
        o = {k: torch.as_tensor(np.asarray(obs[k])).to(self.device) for k in self.obs_shapes}
        m = self.eval_model
        z = m.encode(o)  # (T+1, L)
        a = torch.as_tensor(actions, dtype=torch.float32, device=self.device)
        q = m.Q(z[:-1], a, "all").mean(0)
        _, a_next, log_pi, _ = m.pi(z[1:], deterministic=True)
        v_next = m.Q(z[1:], a_next, "all").mean(0) - self.cfg.beta * log_pi
        return (q - self.gamma * v_next).squeeze(-1).cpu().numpy()

    # -- persistence -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume bit-exactly."""
        return {
            "model": self.model.state_dict(),
            "optim": self.optim.state_dict(),
            "pi_optim": self.pi_optim.state_dict(),
            "generator": self.generator.get_state(),
            "prev_mean": self._prev_mean,
            "updates": self.updates,
            "gamma": self.gamma,
            **({"ema_model": self.ema_model.state_dict()} if self.ema_model is not None else {}),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        self.model.load_state_dict(state["model"])
        self.optim.load_state_dict(state["optim"])
        # the optimiser's state carries its groups' settings: the config's weight decay wins,
        # so that a run resumed (or branched) with another q_weight_decay uses it
        # (checkpoints from before the field load as coupled decay: set both)
        for group in self.optim.param_groups:
            group["decoupled_weight_decay"] = True
        self.optim.param_groups[2]["weight_decay"] = self.cfg.q_weight_decay
        self.pi_optim.load_state_dict(state["pi_optim"])
        self.generator.set_state(state["generator"])
        self._prev_mean = state["prev_mean"]
        self.updates = int(state["updates"])
        self.gamma = float(state["gamma"])
        if self.ema_model is not None:  # a checkpoint without one (ema switched on in a
            # branch) starts the average at its online networks
            self.ema_model.load_state_dict(state.get("ema_model", state["model"]))
