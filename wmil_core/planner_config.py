"""MPPI settings, shared by the torch planner and the torch-free runtime (no imports beyond
the standard library, so ``wmil_core.runtime`` can use it)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class PlannerConfig:
    """MPPI settings (paper defaults)."""

    horizon: int = 3  # H, planning horizon (agent steps)
    num_samples: int = 512  # N, action sequences per iteration (policy ones included)
    num_pi_trajs: int = 24  # N_pi, sequences proposed by the policy prior
    num_elites: int = 64  # k, top sequences refitting mean and std
    iterations: int = 6  # MPPI iterations (+2 at 20 or more action dimensions, see below)
    temperature: float = 0.5  # weight of the elites' value in exp(temperature * (G - max G))
    min_std: float = 0.05  # std clamp, in action units
    max_std: float = 2.0

    def __post_init__(self) -> None:
        if self.horizon < 1:
            raise ValueError(f"horizon: must be >= 1, got {self.horizon}")
        if not 0 <= self.num_pi_trajs < self.num_samples:
            raise ValueError("num_pi_trajs: must be in [0, num_samples)")
        if not 1 <= self.num_elites <= self.num_samples:
            raise ValueError("num_elites: must be in [1, num_samples]")
        if self.iterations < 1:
            raise ValueError(f"iterations: must be >= 1, got {self.iterations}")
        if self.temperature <= 0:
            raise ValueError("temperature: must be > 0")
        if not 0 < self.min_std <= self.max_std:
            raise ValueError("min_std: must be in (0, max_std]")

    def iterations_for(self, action_dim: int) -> int:
        """TD-MPC2's heuristic: two more iterations for 20 or more action dimensions."""
        return self.iterations + 2 * int(action_dim >= 20)
