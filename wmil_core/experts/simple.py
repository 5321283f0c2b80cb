"""Task-agnostic reference demonstrators: ``random`` (uniform actions, seeded by the episode)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from wmil_core.experts.base import register_expert

if TYPE_CHECKING:
    from wmil_core.tasks.env import WmilEnv


class RandomExpert:
    """Uniform random actions in [-1, 1]^A: the floor every imitation score is compared to."""

    name = "random"

    def __init__(self, task: str) -> None:
        self.task = task
        self._rng = np.random.default_rng(0)
        self._dim = 0

    def reset(self, env: WmilEnv) -> None:
        """Reseed from the environment's episode seed stream, so rollouts repeat exactly."""
        self._dim = int(env.action_space.shape[0])
        self._rng = np.random.default_rng(int(env.np_random.integers(2**31)))

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """A uniform random action."""
        return self._rng.uniform(-1.0, 1.0, self._dim).astype(np.float32)


register_expert("random")(RandomExpert)
