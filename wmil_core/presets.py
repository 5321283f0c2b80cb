"""Named IQ-MPC size presets: ``paper`` (TD-MPC2's 5M model) and ``cpu`` (this 2-core machine).

A preset is a partial :class:`~wmil_core.agents.iqmpc.IQMPCConfig` as plain data; fields given
explicitly (command line or YAML) override it.
"""

from __future__ import annotations

import copy
from typing import Any

from wmil_core.agents.iqmpc import IQMPCConfig
from wmil_core.config import from_dict

PRESETS: dict[str, dict[str, Any]] = {
    # TD-MPC2 5M: latent 512, mlp 512, enc 256, 5 Q heads; planner 512 x 6 x 3
    "paper": {},
    # practical on 2 CPU cores: a quarter of the paper's width, 2 Q heads, smaller batches and
    # a lighter planner; measured cost per update and per plan: `wmil bench speed --preset cpu`
    "cpu": {
        "model": {"latent_dim": 128, "mlp_dim": 256, "enc_dim": 128, "num_q": 2,
                  "num_channels": 16},
        "batch_size": 64,
        "planner": {"num_samples": 256, "num_pi_trajs": 16, "num_elites": 32,
                    "iterations": 4},
    },
    # TD-MPC2's size-1 dimensions, for the speed comparison of the IQ-MPC issue
    "tdmpc2-1m": {
        "model": {"latent_dim": 128, "mlp_dim": 384, "enc_dim": 256, "num_q": 2},
    },
}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def agent_config(preset: str, overrides: dict[str, Any] | None = None) -> IQMPCConfig:
    """The IQ-MPC config of ``preset`` with ``overrides`` (nested dict) applied."""
    if preset not in PRESETS:
        raise ValueError(f"preset: unknown {preset!r} (known: {', '.join(PRESETS)})")
    return from_dict(IQMPCConfig, _merge(PRESETS[preset], overrides or {}))
