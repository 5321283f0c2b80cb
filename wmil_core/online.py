"""Online learning from a live stream (the learner node's engine; no ROS in here).

:class:`TransitionAssembler` turns the latest observation at each command into episodes;
:class:`OnlineLearner` keeps the expert and behaviour buffers, runs IQ-MPC updates and exports
versioned model bundles, each written atomically.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from wmil_core.buffer import EpisodeBuffer
from wmil_core.demos import load_demos
from wmil_core.hindsight import HindsightGoals
from wmil_core.symmetry import PlanarRotation


class TransitionAssembler:
    """Pairs each command with the latest complete observation received before it.

    Args:
        keys: the observation keys the model needs.
    """

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = keys
        self.latest: dict[str, np.ndarray] = {}
        self.obs: list[dict[str, np.ndarray]] = []
        self.actions: list[np.ndarray] = []
        self.dropped = 0  # commands with no complete observation yet

    def observe(self, key: str, value: np.ndarray) -> None:
        """The newest value of observation ``key``."""
        self.latest[key] = value

    def command(self, action: np.ndarray) -> None:
        """A command (as an action in [-1, 1]) was sent for the current observation."""
        if not all(k in self.latest for k in self.keys):
            self.dropped += 1
            return
        self.obs.append({k: np.array(self.latest[k], copy=True) for k in self.keys})
        self.actions.append(np.asarray(action, dtype=np.float32))

    def end_episode(self) -> tuple[dict[str, np.ndarray], np.ndarray] | None:
        """Close the episode: (obs with T rows, T-1 actions), or None when under 2 steps.

        The last command has no observation after it, so it is not a transition.
        """
        obs, actions = self.obs, self.actions
        self.obs, self.actions = [], []
        if len(actions) < 2:
            return None
        stacked = {k: np.stack([o[k] for o in obs]) for k in self.keys}
        return stacked, np.stack(actions[:-1])


class OnlineLearner:
    """IQ-MPC updated from the behaviour stream, exporting a new bundle every ``export_every``.

    Args:
        agent: an IQ-MPC agent (e.g. from :func:`wmil_core.export.load_trained`).
        demos: demo file for the expert buffer (must match the agent's observations).
        task, joint_names, action_low, action_high: the bundle's interface (manifest).
        out_dir: versioned bundles go to ``out_dir/v0001``, ``v0002``, ...
        symmetry: turn expert batches as training did (``wmil train --demo-symmetry``).
        behaviour_symmetry: turn behaviour batches as training did (``--behaviour-symmetry``).
        hindsight: give expert sub-trajectories later goals as training did
            (``--hindsight-goals``, :mod:`wmil_core.hindsight`).
        recent_fraction, recent_episodes: behaviour batches as training drew them
            (:class:`wmil_core.train.TrainConfig`).
    """

    def __init__(self, agent: Any, demos: str | Path, task: str, joint_names: list[str],
                 action_low: np.ndarray, action_high: np.ndarray, out_dir: str | Path,
                 export_every: int = 500, buffer_size: int = 100_000, seed: int = 0,
                 symmetry: PlanarRotation | None = None, recent_fraction: float = 0.0,
                 recent_episodes: int = 10,
                 behaviour_symmetry: PlanarRotation | None = None,
                 hindsight: HindsightGoals | None = None) -> None:
        if export_every < 1:
            raise ValueError(f"export_every: must be >= 1, got {export_every}")
        self.agent = agent
        spec = {k: {"shape": list(v), "dtype": "uint8" if k == "image" else "float32"}
                for k, v in agent.obs_shapes.items()}
        ds = load_demos(demos, task=task, obs_spec=spec, action_dim=agent.action_dim)
        h = agent.cfg.planner.horizon
        self.expert = EpisodeBuffer(spec, agent.action_dim,
                                    sum(len(e) + 1 for e in ds.episodes), h)
        self.expert.add_dataset(ds)
        self.behaviour = EpisodeBuffer(spec, agent.action_dim, buffer_size, h)
        self.meta = {"task": task, "joint_names": list(joint_names),
                     "action_low": np.asarray(action_low).tolist(),
                     "action_high": np.asarray(action_high).tolist()}
        self.out_dir = Path(out_dir)
        self.export_every = export_every
        self.rng = np.random.default_rng(seed)
        self.symmetry = symmetry
        self.behaviour_symmetry = behaviour_symmetry
        self.hindsight = hindsight
        self.recent = (recent_fraction, recent_episodes)
        self.lock = threading.Lock()  # buffers
        self.pending = 0  # transitions received and not yet trained on
        self.updates = 0
        self.version = self._last_version()

    def _last_version(self) -> int:
        versions = [int(p.name[1:]) for p in self.out_dir.glob("v[0-9]*") if p.name[1:].isdigit()]
        return max(versions, default=0)

    def add_episode(self, obs: Mapping[str, np.ndarray], actions: np.ndarray) -> None:
        """A finished behaviour episode (obs: T+1 rows, actions: T)."""
        with self.lock:
            self.behaviour.add_episode(obs, actions)
            self.pending += len(actions)

    def ready(self) -> bool:
        """Whether there is behaviour data to sample and unused transitions to learn from."""
        return self.pending > 0 and self.behaviour.num_windows > 0

    def step(self, updates_per_transition: int = 1) -> dict[str, Any] | None:
        """Train on the pending transitions; export when ``export_every`` updates have passed.

        Returns the export's {path, version} when a bundle was written, else None.
        """
        with self.lock:
            n = self.pending * updates_per_transition
            self.pending = 0
        exported = None
        b = self.agent.cfg.batch_size
        for _ in range(n):
            with self.lock:
                e = self.expert.sample(b, self.rng, self.agent.device, relabel=self.hindsight)
                beh = self.behaviour.sample(b, self.rng, self.agent.device, *self.recent)
            if self.symmetry is not None:  # tensor work: outside the buffers' lock
                e = self.symmetry.augment(e, self.rng)
            if self.behaviour_symmetry is not None:
                beh = self.behaviour_symmetry.augment(beh, self.rng)
            self.agent.update(e, beh)
            self.updates += 1
            if self.updates % self.export_every == 0:
                exported = self.export()
        return exported

    def export(self) -> dict[str, Any]:
        """Write the next versioned bundle; returns {path, version}."""
        from wmil_core.export import export_agent

        self.version += 1
        path = self.out_dir / f"v{self.version:04d}"
        meta = {**self.meta, "name": path.name,
                "training": {"step": None, "updates": int(self.agent.updates)},
                "source": "wmil_learner"}
        export_agent(self.agent, path, meta)
        return {"path": str(path), "version": self.version}
