"""Agents by method name: ``iqmpc`` (the product) and the baselines ``bc``, ``iql-sac``
and ``gail-sac``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

METHODS = ("iqmpc", "bc", "iql-sac", "gail-sac")


def make_agent(method: str, preset: str, overrides: dict[str, Any] | None,
               obs_shapes: Mapping[str, tuple[int, ...]], action_dim: int, episode_length: int,
               device: torch.device | str = "cpu", seed: int = 0) -> tuple[Any, Any, int]:
    """(agent, its config, sub-trajectory horizon) for ``method`` at size ``preset``.

    The preset sizes IQ-MPC; baselines take its encoder sizes, batch size and learning rate,
    then ``overrides`` (a nested dict of the method's config fields).
    """
    from wmil_core.config import from_dict, to_dict
    from wmil_core.presets import agent_config

    if method not in METHODS:
        raise ValueError(f"method: unknown {method!r} (known: {', '.join(METHODS)})")
    if method == "iqmpc":
        from wmil_core.agents.iqmpc import IQMPC

        cfg = agent_config(preset, overrides)
        return (IQMPC(obs_shapes, action_dim, episode_length, cfg, device, seed), cfg,
                cfg.planner.horizon)
    from wmil_core.agents.bc import BC, BCConfig
    from wmil_core.agents.sac import GAILSAC, IQLSAC, SACConfig

    base = agent_config(preset)
    data = {"model": to_dict(base.model), "batch_size": base.batch_size, "lr": base.lr}
    for k, v in (overrides or {}).items():
        data[k] = {**data[k], **v} if isinstance(v, dict) and isinstance(data.get(k), dict) else v
    kind, cls = {"bc": (BCConfig, BC), "iql-sac": (SACConfig, IQLSAC),
                 "gail-sac": (SACConfig, GAILSAC)}[method]
    cfg = from_dict(kind, data)
    return cls(obs_shapes, action_dim, episode_length, cfg, device, seed), cfg, 1
