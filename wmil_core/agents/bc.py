"""Behaviour cloning: the same encoder as IQ-MPC and an MLP policy fitted to expert actions."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from wmil_core.buffer import Batch
from wmil_core.nn.layers import mlp
from wmil_core.world_model import Encoder, ModelConfig


@dataclasses.dataclass
class BCConfig:
    """Behaviour-cloning hyperparameters."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)  # encoder sizes
    policy: Literal["deterministic", "gaussian"] = "deterministic"
    batch_size: int = 256  # expert transitions per update
    lr: float = 3e-4
    grad_clip_norm: float = 20.0

    def __post_init__(self) -> None:
        if self.policy not in ("deterministic", "gaussian"):
            raise ValueError(f"policy: must be deterministic or gaussian, got {self.policy!r}")
        if self.batch_size < 1 or self.lr <= 0:
            raise ValueError("batch_size and lr: must be positive")


class BC:
    """Behaviour cloning on the expert buffer; online data is ignored.

    ``deterministic``: tanh MLP trained with mean squared error. ``gaussian``: tanh-squashed
    Gaussian trained by maximum likelihood of the expert actions; acts with its mean.
    """

    def __init__(self, obs_shapes: Mapping[str, tuple[int, ...]], action_dim: int,
                 episode_length: int, cfg: BCConfig, device: str | torch.device = "cpu",
                 seed: int = 0) -> None:
        del episode_length, seed  # same constructor as the other agents
        self.cfg = cfg
        self.device = torch.device(device)
        self.obs_shapes = {k: tuple(v) for k, v in obs_shapes.items()}
        self.action_dim = action_dim
        out = action_dim * (2 if cfg.policy == "gaussian" else 1)
        self.net = nn.ModuleDict({
            "encoder": Encoder(self.obs_shapes, cfg.model),
            "head": mlp(cfg.model.latent_dim, 2 * [cfg.model.mlp_dim], out),
        }).to(self.device)
        self.optim = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        self.net.eval()
        self.updates = 0

    def _forward(self, obs: Mapping[str, Tensor]) -> tuple[Tensor, Tensor | None]:
        y = self.net["head"](self.net["encoder"](obs))
        if self.cfg.policy == "deterministic":
            return torch.tanh(y), None
        mu, log_std = y.chunk(2, -1)
        return mu, log_std.clamp(-5.0, 2.0)

    def update(self, expert: Batch, behaviour: Batch | None = None) -> dict[str, float]:
        """One gradient step on expert (observation, action) pairs of the batch."""
        obs = {k: v[:-1].reshape(-1, *v.shape[2:]) for k, v in expert.obs.items()}
        act = expert.action.reshape(-1, self.action_dim)
        self.net.train()
        mu, log_std = self._forward(obs)
        if log_std is None:
            loss = (mu - act).pow(2).mean()
        else:  # log-likelihood of atanh(a) under N(mu, std), tanh correction is constant
            u = torch.atanh(act.clamp(-0.999, 0.999))
            loss = (0.5 * ((u - mu) / log_std.exp()).pow(2) + log_std).sum(-1).mean()
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.cfg.grad_clip_norm)
        self.optim.step()
        self.net.eval()
        self.updates += 1
        return {"bc_loss": float(loss.detach())}

    @torch.no_grad()
    def act(self, obs: Mapping[str, np.ndarray], t0: bool, eval_mode: bool = False) -> np.ndarray:
        """The policy's action (its mean for the Gaussian policy)."""
        o = {k: torch.as_tensor(np.asarray(obs[k])).unsqueeze(0).to(self.device)
             for k in self.obs_shapes}
        mu, _ = self._forward(o)
        return torch.tanh(mu)[0].cpu().numpy() if self.cfg.policy == "gaussian" \
            else mu[0].cpu().numpy()

    def decode_rewards(self, obs: Mapping[str, np.ndarray], actions: np.ndarray) -> np.ndarray:
        """BC has no reward or value: NaN for every step."""
        return np.full(len(actions), np.nan, dtype=np.float32)

    def state_dict(self) -> dict[str, Any]:
        """Network, optimiser and counter."""
        return {"net": self.net.state_dict(), "optim": self.optim.state_dict(),
                "updates": self.updates}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        self.net.load_state_dict(state["net"])
        self.optim.load_state_dict(state["optim"])
        self.updates = int(state["updates"])
