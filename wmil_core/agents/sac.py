"""Model-free imitation baselines on a soft actor-critic learner.

- ``iql-sac``: IQ-Learn online (Garg et al., 2021) with a SAC actor, IQ-MPC's main baseline.
  Its critic minimises the same inverse soft-Q loss as IQ-MPC (:func:`wmil_core.losses.iq_loss`)
  on real transitions instead of latent rollouts.
- ``gail-sac``: a discriminator D(o, a) separates expert from behaviour transitions and SAC
  maximises the reward -log(1 - D) (Ho and Ermon, 2016, with an off-policy learner).

Both reuse IQ-MPC's networks (:class:`~wmil_core.world_model.WorldModel`: the encoder for each
observation mode, the Q ensemble with Polyak-averaged targets and the tanh-Gaussian policy)
and leave its latent dynamics unused. The entropy temperature is learned towards an entropy
of -A, as in SAC. Neither sees the simulator's reward.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from wmil_core.agents.iqmpc import discount_for
from wmil_core.buffer import Batch
from wmil_core.losses import (
    check_value_term,
    gradient_penalty,
    iq_loss,
    offline_value_term,
)
from wmil_core.nn.layers import mlp
from wmil_core.world_model import Encoder, ModelConfig, WorldModel


@dataclasses.dataclass
class SACConfig:
    """Hyperparameters of the SAC-based baselines."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)  # encoder, Q, pi sizes
    batch_size: int = 256  # transitions from EACH buffer
    lr: float = 3e-4
    grad_clip_norm: float = 20.0
    tau: float = 0.005  # Polyak rate of the target Q heads
    gamma: float | None = None  # None: from the episode length (TD-MPC2 heuristic)
    init_temperature: float = 0.1  # initial entropy coefficient
    learn_temperature: bool = True  # tune it towards an entropy of -A
    # iql-sac: the inverse soft-Q loss, as IQ-MPC's
    alpha: float = 0.5  # chi-squared regulariser
    value_term: Literal["v0", "td", "mix", "expert"] = "v0"
    # gail-sac: the discriminator
    disc_lr: float = 3e-4
    disc_grad_pen: float = 0.01  # lambda of the zero-centred gradient penalty on D (1.0
    # held D at 0.51 vs 0.49 on expert vs random actions after 300 updates; 0.01: 0.79 vs 0.23)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {self.batch_size}")
        for name in ("lr", "grad_clip_norm", "alpha", "init_temperature", "disc_lr"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be > 0")
        if not 0 < self.tau <= 1:
            raise ValueError(f"tau: must be in (0, 1], got {self.tau}")
        if self.gamma is not None and not 0 < self.gamma < 1:
            raise ValueError(f"gamma: must be in (0, 1), got {self.gamma}")
        check_value_term(self.value_term)
        if self.disc_grad_pen < 0:
            raise ValueError("disc_grad_pen: must be >= 0")


def _step(obs: Mapping[str, Tensor], t: int) -> dict[str, Tensor]:
    return {k: v[t] for k, v in obs.items()}


class SACBase:
    """Encoder + Q ensemble + tanh-Gaussian actor with a learned temperature."""

    def __init__(self, obs_shapes: Mapping[str, tuple[int, ...]], action_dim: int,
                 episode_length: int, cfg: SACConfig, device: str | torch.device = "cpu",
                 seed: int = 0) -> None:
        del seed  # acting noise comes from torch's global generator, seeded by the trainer
        self.cfg = cfg
        self.device = torch.device(device)
        self.action_dim = action_dim
        self.obs_shapes = {k: tuple(v) for k, v in obs_shapes.items()}
        self.gamma = cfg.gamma if cfg.gamma is not None else discount_for(episode_length)
        self.model = WorldModel(self.obs_shapes, action_dim, cfg.model).to(self.device)
        m = self.model
        self.critic_optim = torch.optim.Adam(
            [*m._encoder.parameters(), *m._Qs.parameters()], lr=cfg.lr)
        self.actor_optim = torch.optim.Adam(m._pi.parameters(), lr=cfg.lr)
        self.log_temp = torch.tensor(math.log(cfg.init_temperature), device=self.device,
                                     requires_grad=True)
        self.temp_optim = torch.optim.Adam([self.log_temp], lr=cfg.lr)
        self.target_entropy = -float(action_dim)
        self.model.eval()
        self.updates = 0

    @property
    def temperature(self) -> Tensor:
        """The entropy coefficient (detached)."""
        return self.log_temp.detach().exp()

    def V(self, z: Tensor, target: bool = False) -> Tensor:  # noqa: N802
        """Soft value min_2 Q(z, a') - temperature log pi(a'|z), a' ~ pi(z)."""
        _, a, log_pi, _ = self.model.pi(z)
        return self.model.Q(z, a, "min", target=target) - self.temperature * log_pi

    # -- acting --------------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: Mapping[str, np.ndarray], t0: bool, eval_mode: bool = False) -> np.ndarray:
        """The policy's mean action (evaluation) or a sample from it (training)."""
        del t0
        o = {k: torch.as_tensor(np.asarray(obs[k])).unsqueeze(0).to(self.device)
             for k in self.obs_shapes}
        mu, a, _, _ = self.model.pi(self.model.encode(o))
        return (mu if eval_mode else a)[0].cpu().numpy()

    # -- learning -------------------------------------------------------------------------------
    def _actor_and_temperature(self, z: Tensor) -> dict[str, float]:
        m = self.model
        m.track_q_grad(False)
        _, a, log_pi, _ = m.pi(z)
        q = m.Q(z, a, "min")
        actor_loss = (self.temperature * log_pi - q).mean()
        self.actor_optim.zero_grad(set_to_none=True)
        actor_loss.backward()
        torch.nn.utils.clip_grad_norm_(m._pi.parameters(), self.cfg.grad_clip_norm)
        self.actor_optim.step()
        m.track_q_grad(True)
        stats = {"actor_loss": float(actor_loss.detach()),
                 "entropy": float(-log_pi.detach().mean())}
        if self.cfg.learn_temperature:
            temp_loss = -(self.log_temp.exp() * (log_pi.detach() + self.target_entropy)).mean()
            self.temp_optim.zero_grad(set_to_none=True)
            temp_loss.backward()
            self.temp_optim.step()
        stats["temperature"] = float(self.temperature)
        return stats

    def _learn(self, critic_loss: Tensor, z: Tensor) -> dict[str, float]:
        """The common end of an update: a critic step on ``critic_loss``, an actor and
        temperature step on the latents ``z`` (detached), the target update."""
        if not torch.isfinite(critic_loss):
            raise FloatingPointError(f"non-finite loss at update {self.updates}: "
                                     f"{critic_loss.item()}")
        self.critic_optim.zero_grad(set_to_none=True)
        critic_loss.backward()
        params = [*self.model._encoder.parameters(), *self.model._Qs.parameters()]
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip_norm))
        self.critic_optim.step()
        stats = self._actor_and_temperature(z.detach())
        self.model.soft_update_target_Q(self.cfg.tau)
        self.model.eval()
        self.updates += 1
        stats["grad_norm"] = grad_norm
        return stats

    @torch.no_grad()
    def decode_rewards(self, obs: Mapping[str, np.ndarray], actions: np.ndarray) -> np.ndarray:
        """The reward the critic implies for each real transition: Q(o, a) - gamma V(o')."""
        o = {k: torch.as_tensor(np.asarray(obs[k])).to(self.device) for k in self.obs_shapes}
        z = self.model.encode(o)
        a = torch.as_tensor(actions, dtype=torch.float32, device=self.device)
        q = self.model.Q(z[:-1], a, "all").mean(0)
        _, a_next, log_pi, _ = self.model.pi(z[1:], deterministic=True)
        v_next = self.model.Q(z[1:], a_next, "all").mean(0) - self.temperature * log_pi
        return (q - self.gamma * v_next).squeeze(-1).cpu().numpy()

    # -- persistence -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume."""
        return {"model": self.model.state_dict(), "critic_optim": self.critic_optim.state_dict(),
                "actor_optim": self.actor_optim.state_dict(), "log_temp": self.log_temp.detach(),
                "temp_optim": self.temp_optim.state_dict(), "updates": self.updates,
                "gamma": self.gamma}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        self.model.load_state_dict(state["model"])
        self.critic_optim.load_state_dict(state["critic_optim"])
        self.actor_optim.load_state_dict(state["actor_optim"])
        with torch.no_grad():
            self.log_temp.copy_(state["log_temp"])
        self.temp_optim.load_state_dict(state["temp_optim"])
        self.updates = int(state["updates"])
        self.gamma = float(state["gamma"])


class RewardSAC(SACBase):
    """Plain SAC on the simulator's reward: it trains the experts of tasks with no scripted
    demonstrator (``wmil expert train``), never an imitation learner."""

    def update(self, batch: Batch) -> dict[str, float]:
        """One critic (soft TD on the stored reward), actor and temperature step."""
        if batch.reward is None:
            raise ValueError("RewardSAC needs a batch with rewards (EpisodeBuffer(rewards=True))")
        m = self.model
        with torch.no_grad():
            v_next = self.V(m.encode(_step(batch.obs, 1)), target=True)
            y = batch.reward[0] + self.gamma * (1.0 - batch.done[0]) * v_next
        m.train()
        z = m.encode(_step(batch.obs, 0))
        q = m.Q(z, batch.action[0], "all")  # (num_q, B, 1)
        critic_loss = (q - y).pow(2).mean()
        stats = self._learn(critic_loss, z)
        stats.update(critic_loss=float(critic_loss.detach()), q=float(q.detach().mean()))
        return stats


class IQLSAC(SACBase):
    """IQ-Learn with a SAC actor: the critic minimises :func:`~wmil_core.losses.iq_loss`."""

    def update(self, expert: Batch, behaviour: Batch | None) -> dict[str, float]:
        """One critic (inverse soft-Q), actor and temperature step on single transitions.

        ``behaviour`` None: expert data alone (offline pre-training), the value term's expert
        rows or v0 (``losses.offline_value_term``).
        """
        cfg, m = self.cfg, self.model
        if behaviour is None:
            obs, action, done = expert.obs, expert.action, expert.done
            value_term = offline_value_term(cfg.value_term)
        else:
            obs = {k: torch.cat([expert.obs[k], behaviour.obs[k]], 1) for k in expert.obs}
            action = torch.cat([expert.action, behaviour.action], 1)
            done = torch.cat([expert.done, behaviour.done], 1)
            value_term = cfg.value_term
        n_exp = expert.action.shape[1]
        b = action.shape[1]
        is_expert = torch.arange(b, device=self.device) < n_exp
        m.train()
        z = m.encode(_step(obs, 0))  # (B, L)
        with torch.no_grad():
            v_next = self.V(m.encode(_step(obs, 1)), target=True)  # (B, 1)
        q = m.Q(z, action[0], "all")  # (num_q, B, 1)
        m._pi.requires_grad_(False)
        v = self.V(z)  # gradients reach Q and the encoder, not pi
        m._pi.requires_grad_(True)
        v0 = v[:n_exp] if value_term == "v0" else None
        loss, parts = iq_loss(q, v, v_next, is_expert, self.gamma, cfg.alpha, value_term, v0,
                              done[0])
        stats = self._learn(loss.mean(), z)
        with torch.no_grad():
            r = q.mean(0) - self.gamma * v_next
            stats.update(iq_loss=float(loss.mean()), reward_expert=float(r[:n_exp].mean()),
                         **{k: float(v) for k, v in parts.items()})
            if n_exp < b:
                stats["reward_behaviour"] = float(r[n_exp:].mean())
        return stats


class GAILSAC(SACBase):
    """GAIL with a SAC learner: reward -log(1 - D(o, a)) from a discriminator on its own
    encoder (same architecture as the critic's)."""

    def __init__(self, obs_shapes: Mapping[str, tuple[int, ...]], action_dim: int,
                 episode_length: int, cfg: SACConfig, device: str | torch.device = "cpu",
                 seed: int = 0) -> None:
        super().__init__(obs_shapes, action_dim, episode_length, cfg, device, seed)
        mc = cfg.model
        self.disc = torch.nn.ModuleDict({
            "encoder": Encoder(self.obs_shapes, mc),
            "head": mlp(mc.latent_dim + action_dim, 2 * [mc.mlp_dim], 1),
        }).to(self.device)
        self.disc_optim = torch.optim.Adam(self.disc.parameters(), lr=cfg.disc_lr)

    def logits(self, obs: Mapping[str, Tensor], action: Tensor) -> Tensor:
        """Discriminator logits (B, 1): high for expert-like (o, a)."""
        return self._head(torch.cat([self.disc["encoder"](obs), action], -1))

    def _head(self, x: Tensor) -> Tensor:
        return self.disc["head"](x)

    def reward(self, obs: Mapping[str, Tensor], action: Tensor) -> Tensor:
        """-log(1 - D(o, a)) = softplus(logit)."""
        return F.softplus(self.logits(obs, action))

    def update(self, expert: Batch, behaviour: Batch | None) -> dict[str, float]:
        """One discriminator, critic (soft TD on the learned reward), actor, temperature step.

        Without behaviour data there is nothing to discriminate: offline steps are skipped.
        """
        if behaviour is None:
            return {}
        cfg, m = self.cfg, self.model
        o_e, a_e = _step(expert.obs, 0), expert.action[0]
        o_b, a_b = _step(behaviour.obs, 0), behaviour.action[0]
        # discriminator: expert 1, behaviour 0; zero-centred gradient penalty at mixed
        # (embedding, action) points keeps it smooth
        self.disc.train()
        x_e = torch.cat([self.disc["encoder"](o_e), a_e], -1)
        x_b = torch.cat([self.disc["encoder"](o_b), a_b], -1)
        le, lb = self._head(x_e), self._head(x_b)
        d_loss = (F.binary_cross_entropy_with_logits(le, torch.ones_like(le))
                  + F.binary_cross_entropy_with_logits(lb, torch.zeros_like(lb)))
        if cfg.disc_grad_pen > 0:
            n = min(x_e.shape[0], x_b.shape[0])
            d_loss = d_loss + gradient_penalty(self._head, x_e[:n].detach(), x_b[:n].detach(),
                                               cfg.disc_grad_pen, center=0.0)
        self.disc_optim.zero_grad(set_to_none=True)
        d_loss.backward()
        torch.nn.utils.clip_grad_norm_(self.disc.parameters(), cfg.grad_clip_norm)
        self.disc_optim.step()
        self.disc.eval()
        # critic: soft TD on behaviour transitions with the discriminator's reward
        with torch.no_grad():
            r = self.reward(o_b, a_b)
            v_next = self.V(m.encode(_step(behaviour.obs, 1)), target=True)
            y = r + self.gamma * (1.0 - behaviour.done[0]) * v_next
        m.train()
        z = m.encode(o_b)
        q = m.Q(z, a_b, "all")
        critic_loss = (q - y).pow(2).mean()
        stats = self._learn(critic_loss, z)
        with torch.no_grad():
            stats.update(disc_loss=float(d_loss), critic_loss=float(critic_loss),
                         d_expert=float(torch.sigmoid(le).mean()),
                         d_behaviour=float(torch.sigmoid(lb).mean()), reward=float(r.mean()))
        return stats

    def state_dict(self) -> dict[str, Any]:
        """SAC state plus the discriminator."""
        return {**super().state_dict(), "disc": self.disc.state_dict(),
                "disc_optim": self.disc_optim.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        super().load_state_dict(state)
        self.disc.load_state_dict(state["disc"])
        self.disc_optim.load_state_dict(state["disc_optim"])
