"""Floating-point operations of one planning step, counted from the layer shapes.

Counts the multiply-adds of every matrix product and convolution (2 FLOPs each); the
element-wise work (LayerNorm, Mish, SimNorm, tanh) is left out, as is usual for GFLOP/s
figures, so the achieved rate is a slight underestimate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from wmil_core.runtime.mppi import PlannerConfig


def mlp_flops(dims: Sequence[int], rows: int = 1) -> int:
    """FLOPs of an MLP with layer widths ``dims`` (input first) on ``rows`` inputs."""
    return 2 * rows * sum(a * b for a, b in zip(dims[:-1], dims[1:]))


def conv_flops(image_shape: Sequence[int], channels: int) -> tuple[int, int]:
    """(FLOPs, output features) of the conv encoder on one (H, W, C) image."""
    h, w, c = image_shape
    flops = 0
    for k, s in ((7, 2), (5, 2), (3, 2), (3, 1)):
        h, w = (h - k) // s + 1, (w - k) // s + 1
        flops += 2 * k * k * c * channels * h * w
        c = channels
    return flops, channels * h * w


def encoder_flops(model: Mapping[str, Any], obs_spec: Mapping[str, Sequence[int]]) -> int:
    """FLOPs of encoding one observation (``model``: the manifest's model section)."""
    lat, enc = model["latent_dim"], model["enc_dim"]
    hidden = max(model["num_enc_layers"] - 1, 1) * [enc]
    d_vec = sum(int(obs_spec[k][0]) for k in ("joints", "features") if k in obs_spec)
    if "image" not in obs_spec:
        return mlp_flops([d_vec, *hidden, lat])
    flops, d = conv_flops(obs_spec["image"], model["num_channels"])
    if d_vec:
        flops += mlp_flops([d_vec, *hidden[:-1], enc])
        d += enc
    return flops + mlp_flops([d, lat])


def planner_flops(model: Mapping[str, Any], obs_spec: Mapping[str, Sequence[int]],
                  action_dim: int, cfg: PlannerConfig, shared_start: bool = False,
                  ) -> dict[str, int]:
    """FLOPs of one planning step: encoder, policy proposals and the MPPI iterations.

    ``shared_start``: the fused value graph that does the start's work once
    (:class:`wmil_core.export.ValueGraph`): pi's network at z_0 on one row, the latent's part
    of the first layer of d and of both Q heads at step 0 on one row, and from step 1 on the
    latent's part of the Q heads' first layer once for both actions.
    """
    lat, hid, a = model["latent_dim"], model["mlp_dim"], action_dim
    h, n, npi = cfg.horizon, cfg.num_samples, cfg.num_pi_trajs
    pi = mlp_flops([lat, hid, hid, 2 * a])
    dyn = mlp_flops([lat + a, hid, hid, lat])
    q_head = mlp_flops([lat + a, hid, hid, 1])
    proposals = npi * (h * pi + (h - 1) * dyn)
    # per iteration: d at H steps, pi at H + 1 latents, two Q heads on 2N rows per step
    iteration = n * (h * dyn + (h + 1) * pi + 4 * h * q_head)
    if shared_start:
        z_part = mlp_flops([lat, hid])  # the latent's share of one first layer, per row
        saved = (n - 1) * (pi + 3 * z_part)  # pi at z_0; W_z z_0 of d and of two Q heads
        saved += n * 2 * (h - 1) * z_part  # W_z z_t once for Q(z_t, a_t) and Q(z_t, pi)
        iteration -= saved
    out = {
        "encoder": encoder_flops(model, obs_spec),
        "proposals": proposals,
        "iterations": cfg.iterations_for(action_dim) * iteration,
    }
    out["total"] = sum(out.values())
    return out
