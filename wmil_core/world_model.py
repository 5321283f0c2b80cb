"""Decoder-free latent world model (TD-MPC2 style) without a reward head.

Components, named as in the paper: encoder ``h`` (:meth:`WorldModel.encode`), latent dynamics
``d`` (:meth:`WorldModel.next`), Q ensemble (:meth:`WorldModel.Q`, target heads by Polyak
averaging) and policy prior ``pi`` (:meth:`WorldModel.pi`, tanh-squashed Gaussian).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wmil_core.nn.layers import ConvEncoder, Mish, QEnsemble, SimNorm, mlp

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_LOG_2 = math.log(2.0)


def tanh_log_det(u: Tensor) -> Tensor:
    """sum log(1 - tanh(u)^2) over the last axis, as 2 (log 2 - u - softplus(-2u)).

    Exact and well conditioned where tanh saturates (the form log(1 - a^2 + eps) is not);
    softplus is written with exp/log1p so that ONNX runs it vectorised.
    """
    v = -2.0 * u
    softplus = torch.relu(v) + torch.log1p(torch.exp(-v.abs()))
    return (2.0 * (_LOG_2 - u - softplus)).sum(-1, keepdim=True)


@dataclasses.dataclass
class ModelConfig:
    """Sizes of the world model (TD-MPC2's 5M model by default)."""

    latent_dim: int = 512  # |z|
    enc_dim: int = 256  # hidden width of the state encoder
    num_enc_layers: int = 2  # layers of the state encoder
    mlp_dim: int = 512  # hidden width of d, Q and pi
    num_q: int = 5  # Q heads in the ensemble
    simnorm_dim: int = 8  # SimNorm group size
    num_channels: int = 32  # conv encoder channels
    dropout: float = 0.01  # Q first-layer dropout
    log_std_min: float = -10.0  # pi's log standard deviation range
    log_std_max: float = 2.0
    # indices in ``joints`` of angles on a circle (unlimited hinges, ``env.angle_joints()``):
    # the encoder reads each as its sine and cosine, so theta and theta + 2 pi are one input
    angle_joints: tuple[int, ...] = ()
    # the arm's own frame (``TrainConfig.canonical_frame``): the encoder turns the scene about a
    # vertical base hinge until that hinge reads 0 (:func:`to_frame`), so that every pose the
    # hinge alone tells apart is one input. frame_joint: index in ``joints`` of the hinge's
    # angle (-1: off); frame_vectors / frame_points: index in ``features`` of each world-frame
    # vector's / position's x (y follows); frame_center: the hinge's anchor (world x, y);
    # frame_direction: +1 for an axis pointing up, -1 down (``wmil_core.symmetry``'s terms)
    frame_joint: int = -1
    frame_vectors: tuple[int, ...] = ()
    frame_points: tuple[int, ...] = ()
    frame_center: tuple[float, float] = (0.0, 0.0)
    frame_direction: float = 1.0

    def __post_init__(self) -> None:
        if self.latent_dim % self.simnorm_dim:
            raise ValueError(f"latent_dim: must be a multiple of simnorm_dim ({self.simnorm_dim})")
        if self.num_q < 2:
            raise ValueError(f"num_q: the min/avg over 2 random heads needs >= 2, got {self.num_q}")
        for name in ("latent_dim", "enc_dim", "mlp_dim", "num_enc_layers", "num_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: must be in [0, 1), got {self.dropout}")
        if self.log_std_min >= self.log_std_max:
            raise ValueError("log_std_min: must be below log_std_max")
        if any(i < 0 for i in self.angle_joints) or len(set(self.angle_joints)) != len(
                self.angle_joints):
            raise ValueError(f"angle_joints: must be distinct indices >= 0, got "
                             f"{list(self.angle_joints)}")
        if self.frame_joint < -1 or any(i < 0 for i in self.frame_vectors + self.frame_points):
            raise ValueError("frame_joint, frame_vectors, frame_points: must be indices >= 0 "
                             "(frame_joint -1: no frame)")
        if self.frame_direction not in (1.0, -1.0):
            raise ValueError(f"frame_direction: must be 1 or -1, got {self.frame_direction}")


def circular(joints: Tensor, angles: Tensor, mask: Tensor) -> Tensor:
    """``joints`` (..., J) with the columns ``angles`` (K indices; ``mask``: (J,) bool, True
    at them) replaced by their sine and their cosines appended: (..., J + K). Continuous in
    the pose, periodic in 2 pi."""
    sin = torch.where(mask, torch.sin(joints), joints)  # (..., J)
    return torch.cat([sin, torch.cos(joints.index_select(-1, angles))], -1)


def turn_features(features: Tensor, theta: Tensor, vectors: Sequence[int],
                  points: Sequence[int], center: tuple[float, float]) -> Tensor:
    """``features`` (..., F) with the x, y of each vector (index of its x in ``vectors``)
    turned by ``theta`` (broadcast over the leading axes) about the origin and each point's
    about ``center``; every other value as it was. The one rotation of the scene that the
    symmetry augmentation (:class:`wmil_core.symmetry.PlanarRotation`) and the arm's frame
    (:func:`to_frame`) both apply."""
    c, s = torch.cos(theta), torch.sin(theta)
    cols = list(features.unbind(-1))
    for i in vectors:
        x, y = cols[i], cols[i + 1]
        cols[i], cols[i + 1] = c * x - s * y, s * x + c * y
    cx, cy = center
    for i in points:
        x, y = cols[i] - cx, cols[i + 1] - cy
        cols[i], cols[i + 1] = c * x - s * y + cx, s * x + c * y + cy
    return torch.stack(cols, -1)


def to_frame(joints: Tensor, features: Tensor, cfg: ModelConfig) -> tuple[Tensor, Tensor]:
    """``(joints, features)`` seen from the frame that turns with the hinge ``cfg.frame_joint``
    (a vertical axis): each named vector turned by -direction * angle about the origin, each
    point about the hinge's anchor, and the hinge's angle read as 0 (its velocity stays).
    Turning the scene about that axis (:class:`wmil_core.symmetry.PlanarRotation`) leaves the
    result unchanged."""
    theta = -cfg.frame_direction * joints[..., cfg.frame_joint]
    keep = torch.ones(joints.shape[-1], dtype=joints.dtype, device=joints.device)
    keep[cfg.frame_joint] = 0.0
    return joints * keep, turn_features(features, theta, cfg.frame_vectors, cfg.frame_points,
                                        cfg.frame_center)


class Encoder(nn.Module):
    """h: observation dict -> latent z (SimNorm). MLP for joints+features, conv for image."""

    def __init__(self, obs_shapes: Mapping[str, tuple[int, ...]], cfg: ModelConfig) -> None:
        super().__init__()
        self.vector_keys = [k for k in ("joints", "features") if k in obs_shapes]
        self.has_image = "image" in obs_shapes
        act = SimNorm(cfg.simnorm_dim)
        d_vec = sum(int(obs_shapes[k][0]) for k in self.vector_keys)
        self.frame = cfg if cfg.frame_joint >= 0 else None
        if self.frame is not None:
            if self.vector_keys != ["joints", "features"] or self.has_image:
                raise ValueError(f"frame_joint: the arm's frame needs state observations "
                                 f"(joints and features), got {sorted(obs_shapes)}")
            n_joint, n_feat = int(obs_shapes["joints"][0]) // 2, int(obs_shapes["features"][0])
            if cfg.frame_joint >= n_joint:
                raise ValueError(f"frame_joint: index {cfg.frame_joint} is not a joint position "
                                 f"(joints has {n_joint} positions then velocities)")
            bad = [i for i in cfg.frame_vectors + cfg.frame_points if i + 1 >= n_feat]
            if bad:
                raise ValueError(f"frame_vectors, frame_points: index {bad[0]} has no x, y in "
                                 f"features ({n_feat} values)")
        self.register_buffer("angles", None, persistent=False)
        self.register_buffer("angle_mask", None, persistent=False)
        if cfg.angle_joints:
            n_pos = int(obs_shapes["joints"][0]) // 2 if "joints" in obs_shapes else 0
            bad = [i for i in cfg.angle_joints if i >= n_pos]
            if bad:
                raise ValueError(f"angle_joints: index {bad[0]} is not a joint position "
                                 f"(joints has {n_pos} positions then velocities)")
            idx = sorted(cfg.angle_joints)
            mask = torch.zeros(int(obs_shapes["joints"][0]), dtype=torch.bool)
            mask[idx] = True
            self.angles, self.angle_mask = torch.tensor(idx), mask
            d_vec += len(cfg.angle_joints)
        hidden = max(cfg.num_enc_layers - 1, 1) * [cfg.enc_dim]
        if not self.has_image:
            self.vec = mlp(d_vec, hidden, cfg.latent_dim, act=act)
            return
        self.conv = ConvEncoder(tuple(obs_shapes["image"]), cfg.num_channels)  # type: ignore[arg-type]
        d = self.conv.d_out
        if self.vector_keys:  # pixels+joints: fuse conv features with an MLP embedding
            self.vec = mlp(d_vec, hidden[:-1], cfg.enc_dim, act=Mish())
            d += cfg.enc_dim
        self.head = nn.Sequential(nn.Linear(d, cfg.latent_dim), nn.LayerNorm(cfg.latent_dim), act)

    def forward(self, obs: Mapping[str, Tensor]) -> Tensor:  # noqa: D102
        ref = obs["image"] if self.has_image else obs[self.vector_keys[0]]
        lead = ref.shape[: ref.dim() - (3 if self.has_image else 1)]  # leading (T, B) axes
        parts = []
        if self.vector_keys:
            vecs = [obs[k].reshape(-1, obs[k].shape[-1]) for k in self.vector_keys]
            if self.frame is not None:  # vector_keys is [joints, features] (checked)
                vecs = list(to_frame(vecs[0], vecs[1], self.frame))
            if self.angles is not None:
                vecs[0] = circular(vecs[0], self.angles, self.angle_mask)
            parts.append(self.vec(torch.cat(vecs, -1)))
        if not self.has_image:
            return parts[0].reshape(*lead, -1)
        img = obs["image"]
        parts.insert(0, self.conv(img.reshape(-1, *img.shape[-3:])))
        return self.head(torch.cat(parts, -1)).reshape(*lead, -1)


class WorldModel(nn.Module):
    """Encoder, latent dynamics, Q ensemble (+ target) and policy prior."""

    def __init__(self, obs_shapes: Mapping[str, tuple[int, ...]], action_dim: int,
                 cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.action_dim = action_dim
        self._encoder = Encoder(obs_shapes, cfg)
        za = cfg.latent_dim + action_dim
        self._dynamics = mlp(za, 2 * [cfg.mlp_dim], cfg.latent_dim, act=SimNorm(cfg.simnorm_dim))
        self._pi = mlp(cfg.latent_dim, 2 * [cfg.mlp_dim], 2 * action_dim)
        self._Qs = QEnsemble(cfg.num_q, za, cfg.mlp_dim, cfg.dropout, latent_dim=cfg.latent_dim)
        self._target_Qs = copy.deepcopy(self._Qs).requires_grad_(False)
        self.register_buffer("log_std_min", torch.tensor(cfg.log_std_min))
        self.register_buffer("log_std_dif", torch.tensor(cfg.log_std_max - cfg.log_std_min))

    def train(self, mode: bool = True) -> WorldModel:
        """Set training mode; the target Q heads always stay in eval mode."""
        super().train(mode)
        self._target_Qs.train(False)
        return self

    def track_q_grad(self, mode: bool = True) -> None:
        """Enable/disable gradients of the online Q heads (off during the policy update)."""
        for p in self._Qs.parameters():
            p.requires_grad_(mode)

    @torch.no_grad()
    def soft_update_target_Q(self, tau: float) -> None:
        """Polyak averaging of the target heads: theta' <- (1 - tau) theta' + tau theta."""
        src = list(self._Qs.parameters())
        dst = list(self._target_Qs.parameters())
        torch._foreach_lerp_(dst, src, tau)

    def encode(self, obs: Mapping[str, Tensor]) -> Tensor:
        """h(o) -> z, for observations with any leading axes."""
        return self._encoder(obs)

    def next(self, z: Tensor, a: Tensor) -> Tensor:
        """d(z, a) -> z'."""
        return self._dynamics(torch.cat([z, a], -1))

    def next_z_part(self, z: Tensor) -> Tensor:
        """W_z z of the dynamics' first layer (no bias): what d(z, a) needs of z alone."""
        return F.linear(z, self._dynamics[0][0].weight[:, : self.cfg.latent_dim])

    def next_from(self, zw: Tensor, a: Tensor) -> Tensor:
        """d(z, a) given ``zw`` = :meth:`next_z_part` (z) (one row is shared by every row of a)."""
        layers = list(self._dynamics)
        first = list(layers[0])  # NormedLinear: Linear, LayerNorm, activation
        lin = first[0]
        h = zw + F.linear(a, lin.weight[:, self.cfg.latent_dim:], lin.bias)
        for layer in first[1:] + layers[1:]:
            h = layer(h)
        return h

    def _pi_params(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """The prior's Gaussian before the squash: (mean, log std in its bounded range)."""
        mu, log_std = self._pi(z).chunk(2, -1)
        return mu, self.log_std_min + 0.5 * self.log_std_dif * (torch.tanh(log_std) + 1)

    @staticmethod
    def _squashed_log_prob(eps: Tensor, log_std: Tensor, u: Tensor) -> Tensor:
        """log pi of a = tanh(u), u = mean + eps std: Gaussian log density minus the change of
        variables; (..., 1)."""
        log_pi = (-0.5 * eps.pow(2) - log_std - _LOG_SQRT_2PI).sum(-1, keepdim=True)
        return log_pi - tanh_log_det(u)

    def pi(self, z: Tensor, deterministic: bool = False,
           eps: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Sample from the policy prior: (mean action, action, log pi(action|z), log std).

        Actions are tanh-squashed Gaussian samples in (-1, 1); ``log pi`` includes the
        change-of-variables correction. ``eps`` fixes the Gaussian noise (golden tests).
        """
        mu, log_std = self._pi_params(z)
        if deterministic:
            eps = torch.zeros_like(mu)
        elif eps is None:
            eps = torch.randn_like(mu)
        u = mu + eps * log_std.exp()
        return torch.tanh(mu), torch.tanh(u), self._squashed_log_prob(eps, log_std, u), log_std

    def pi_log_prob(self, z: Tensor, a: Tensor, clip: float = 0.999) -> Tensor:
        """log pi(a|z) of given actions a in [-1, 1]^A (..., 1), tanh correction included.

        Actions are clipped to +-``clip`` first: a demonstrator's saturated commands (+-1) lie
        on the boundary of the squashed Gaussian's support, where log pi is -inf.
        """
        mu, log_std = self._pi_params(z)
        u = torch.atanh(a.clamp(-clip, clip))
        return self._squashed_log_prob((u - mu) * torch.exp(-log_std), log_std, u)

    def pi_sample(self, z: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
        """(action, log pi) of the policy prior for given Gaussian noise (planning)."""
        _, a, log_pi, _ = self.pi(z, eps=eps)
        return a, log_pi

    def Q_heads(self, z: Tensor, a: Tensor, heads: Tensor,  # noqa: N802
                target: bool = False) -> Tensor:
        """Q of the chosen heads only: (len(heads), B, 1)."""
        return (self._target_Qs if target else self._Qs)(torch.cat([z, a], -1), heads)

    def Q_at(self, z: Tensor, actions: Sequence[Tensor], heads: Tensor) -> Tensor:  # noqa: N802
        """Q of two heads at latents z (1 or N rows) for each (N, A) action batch, z's share of
        the first layer computed once: (2, len(actions) N, 1), for a min or mean over the heads
        (with two heads in the ensemble, both, one at a time; see ``QEnsemble.at``). Eval mode.
        """
        return self._Qs.at(z, actions, heads, unrolled=self.cfg.num_q == 2)

    def Q(self, z: Tensor, a: Tensor, kind: Literal["all", "min", "avg"] = "min",  # noqa: N802
          target: bool = False) -> Tensor:
        """Q(z, a): every head (num_q, ..., 1), or min/avg of two random heads (..., 1)."""
        x = torch.cat([z, a], -1)
        lead = x.shape[:-1]
        qs = self._target_Qs if target else self._Qs
        if kind == "all":
            return qs(x.reshape(-1, x.shape[-1])).reshape(self.cfg.num_q, *lead, 1)
        if self.cfg.num_q == 2:  # the two random heads are both: no weights to gather
            out = qs(x.reshape(-1, x.shape[-1])).reshape(2, *lead, 1)
        else:  # two random heads, and only those two are computed (split, not [:2]:
            # inductor's randperm-slice pattern pass fails on the sliced form)
            idx = torch.randperm(self.cfg.num_q, device=x.device).split(2)[0]
            out = qs(x.reshape(-1, x.shape[-1]), idx).reshape(2, *lead, 1)
        return out.amin(0) if kind == "min" else out.mean(0)

    def V(self, z: Tensor, target: bool = False, beta: float = 0.0) -> Tensor:  # noqa: N802
        """Soft value V(z) = Q(z, pi(z)) - beta log pi(pi(z)|z), min of two random heads."""
        _, a, log_pi, _ = self.pi(z)
        return self.Q(z, a, "min", target=target) - beta * log_pi
