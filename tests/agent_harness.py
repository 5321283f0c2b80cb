"""Tiny IQ-MPC agents shared by the export and runtime tests."""

from __future__ import annotations

import torch

from wmil_core.agents.iqmpc import IQMPC, IQMPCConfig
from wmil_core.config import from_dict

TINY = {
    "model": {"latent_dim": 16, "mlp_dim": 32, "enc_dim": 32, "num_q": 2, "num_channels": 8},
    "batch_size": 8,
    "planner": {"num_samples": 32, "num_pi_trajs": 4, "num_elites": 4, "iterations": 2,
                "horizon": 3},
}
MODES = {  # reacher-like: 2 joints (positions, velocities) + 6 features; 40x40 images, 2 frames
    "state": {"joints": (4,), "features": (6,)},
    "pixels+joints": {"image": (40, 40, 6), "joints": (4,)},
}


def tiny_agent(mode: str, seed: int = 0) -> IQMPC:
    """A tiny agent whose Q heads are not all zero (their last layer starts at zero)."""
    torch.manual_seed(seed)
    agent = IQMPC(MODES[mode], 2, 50, from_dict(IQMPCConfig, TINY))
    with torch.no_grad():
        for p in agent.model._Qs.out.parameters():
            p.normal_(0.0, 0.5)
    return agent
