"""Replay buffers of whole episodes, sampled as sub-trajectories of H+1 observations.

One class serves both roles: the expert buffer (filled from a demo file) and the behaviour
buffer (filled with the agent's own episodes online). Images stay uint8.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from wmil_core.demos import DemoDataset


class Batch(NamedTuple):
    """Sub-trajectories: obs[k] (H+1, B, ...), action (H, B, A), done (H, B, 1) and, from a
    buffer that stores rewards (expert training only), reward (H, B, 1)."""

    obs: dict[str, torch.Tensor]
    action: torch.Tensor
    done: torch.Tensor
    reward: torch.Tensor | None = None


class EpisodeBuffer:
    """Ring buffer of episodes; an episode of T actions takes T+1 rows.

    Args:
        obs_spec: key -> {"shape": [...], "dtype": "float32"|"uint8"}.
        action_dim: A.
        capacity: rows (observations) kept; the oldest episodes are overwritten.
        horizon: H; samples are windows of H+1 consecutive rows of one episode.
        rewards: also store the simulator's reward of each step. Only the reward-trained SAC
            experts do; the imitation learners' buffers hold none.
    """

    def __init__(self, obs_spec: Mapping[str, Mapping[str, Any]], action_dim: int,
                 capacity: int, horizon: int, rewards: bool = False) -> None:
        if capacity < horizon + 1:
            raise ValueError(f"capacity: must be >= horizon + 1, got {capacity}")
        self.obs_spec = {k: {"shape": list(v["shape"]), "dtype": str(v["dtype"])}
                         for k, v in obs_spec.items()}
        self.capacity = int(capacity)
        self.horizon = int(horizon)
        self.action_dim = int(action_dim)
        self.obs = {k: np.zeros((capacity, *v["shape"]), dtype=v["dtype"])
                    for k, v in self.obs_spec.items()}
        self.action = np.zeros((capacity, action_dim), dtype=np.float32)
        self.done = np.zeros(capacity, dtype=np.float32)
        self.reward = np.zeros(capacity, dtype=np.float32) if rewards else None
        self.episode = np.full(capacity, -1, dtype=np.int64)  # episode id of each row
        self.pos = 0  # next row to write
        self.num_episodes = 0
        self.num_steps = 0  # actions added in total (including overwritten ones)
        self._starts = np.zeros(0, dtype=np.int64)
        self._last: np.ndarray | None = None  # row -> last row of its episode (lazy)

    def __len__(self) -> int:
        """Rows that hold data."""
        return int((self.episode >= 0).sum())

    @property
    def num_windows(self) -> int:
        """How many distinct sub-trajectories can be sampled."""
        return int(self._starts.size)

    def add_episode(self, obs: Mapping[str, np.ndarray], actions: np.ndarray,
                    terminated: bool = False, rewards: np.ndarray | None = None) -> None:
        """Append an episode: obs[k] (T+1, ...), actions (T, A) in [-1, 1], rewards (T,)
        (required by, and only accepted by, a buffer made with ``rewards=True``)."""
        t = int(actions.shape[0])
        rows = t + 1
        if rows > self.capacity:
            raise ValueError(f"episode of {t} steps does not fit a buffer of {self.capacity} rows")
        if set(obs) != set(self.obs):
            raise ValueError(f"episode has observations {sorted(obs)}, expected {sorted(self.obs)}")
        if actions.shape[1:] != (self.action_dim,):
            raise ValueError(f"actions have shape {actions.shape}, expected (T, {self.action_dim})")
        if (rewards is None) != (self.reward is None):
            raise ValueError("rewards: given to a buffer that stores none" if rewards is not None
                             else "rewards: this buffer stores rewards; the episode has none")
        if rewards is not None and np.shape(rewards) != (t,):
            raise ValueError(f"rewards have shape {np.shape(rewards)}, expected ({t},)")
        if self.pos + rows > self.capacity:  # wrap: the tail stays unused
            self.episode[self.pos:] = -1
            self.pos = 0
        sl = slice(self.pos, self.pos + rows)
        for k, v in obs.items():
            if v.shape[0] != rows:
                raise ValueError(f"obs/{k} has {v.shape[0]} rows, expected {rows}")
            self.obs[k][sl] = v
        self.action[self.pos:self.pos + t] = actions
        self.action[self.pos + t] = 0.0
        if self.reward is not None:
            self.reward[self.pos:self.pos + t] = rewards
            self.reward[self.pos + t] = 0.0
        self.done[sl] = 0.0
        if terminated:
            self.done[self.pos + t - 1] = 1.0
        self.episode[sl] = self.num_episodes
        self.num_episodes += 1
        self.num_steps += t
        self.pos += rows
        self._index()

    def add_dataset(self, ds: DemoDataset) -> None:
        """Append every episode of a demo dataset."""
        for ep in ds.episodes:
            self.add_episode(ep.obs, ep.actions)

    def _index(self) -> None:
        h = self.horizon
        ep = self.episode
        ok = (ep[:-h] >= 0) & (ep[:-h] == ep[h:])
        self._starts = np.flatnonzero(ok)
        self._last = None

    def last_rows(self, rows: np.ndarray) -> np.ndarray:
        """The last row of the episode each of ``rows`` belongs to."""
        if self._last is None:
            ep = self.episode
            ends = np.r_[np.flatnonzero(ep[1:] != ep[:-1]), ep.size - 1]  # last row of each run
            self._last = np.repeat(ends, np.diff(np.r_[-1, ends]))
        return self._last[rows]

    def sample(self, batch_size: int, rng: np.random.Generator,
               device: torch.device | str = "cpu", recent_fraction: float = 0.0,
               recent_episodes: int = 0,
               relabel: Callable[[EpisodeBuffer, np.ndarray, dict[str, np.ndarray],
                                  np.random.Generator], None] | None = None) -> Batch:
        """``batch_size`` sub-trajectories drawn uniformly (with replacement); with
        ``recent_fraction`` f > 0, the first round(f * batch_size) of them are drawn from the
        latest ``recent_episodes`` episodes only (all of them while there are no more).
        ``relabel(buffer, rows, obs, rng)`` may rewrite the gathered observations ``obs[k]``
        (H+1, B, ...) of buffer rows ``rows`` (H+1, B) in place (wmil_core.hindsight)."""
        if self._starts.size == 0:
            raise ValueError("the buffer holds no episode of at least horizon steps yet")
        start = self._starts[rng.integers(0, self._starts.size, batch_size)]
        n_recent = round(recent_fraction * batch_size)
        if n_recent > 0 and recent_episodes > 0:
            recent = self._starts[self.episode[self._starts] >= self.num_episodes - recent_episodes]
            if recent.size:  # none: the latest episodes were all shorter than the horizon
                start[:n_recent] = recent[rng.integers(0, recent.size, n_recent)]
        idx = start[None, :] + np.arange(self.horizon + 1)[:, None]  # (H+1, B)
        rows = {k: v[idx] for k, v in self.obs.items()}  # copies
        if relabel is not None:
            relabel(self, idx, rows, rng)
        obs = {k: torch.from_numpy(v).to(device) for k, v in rows.items()}
        act = torch.from_numpy(self.action[idx[:-1]]).to(device)
        done = torch.from_numpy(self.done[idx[:-1]]).unsqueeze(-1).to(device)
        rew = (None if self.reward is None
               else torch.from_numpy(self.reward[idx[:-1]]).unsqueeze(-1).to(device))
        return Batch(obs, act, done, rew)

    def initial_obs(self) -> dict[str, np.ndarray]:
        """First observation of every stored (whole) episode."""
        ep = self.episode
        first = np.flatnonzero((ep >= 0) & (np.r_[-2, ep[:-1]] != ep))
        return {k: v[first] for k, v in self.obs.items()}

    # -- persistence (resume after a kill) -----------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the buffer atomically (uncompressed .npz)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        used = self.episode >= 0
        last = int(np.flatnonzero(used).max()) + 1 if used.any() else 0
        arrays = {f"obs/{k}": v[:last] for k, v in self.obs.items()}
        arrays.update(action=self.action[:last], done=self.done[:last],
                      episode=self.episode[:last],
                      meta=np.array([self.pos, self.num_episodes, self.num_steps, self.capacity,
                                     self.horizon], dtype=np.int64))
        if self.reward is not None:
            arrays["reward"] = self.reward[:last]
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npz")
        os.close(fd)
        try:
            np.savez(tmp, **arrays)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load(self, path: str | Path) -> None:
        """Restore a buffer written by :meth:`save` into this (same-spec) buffer.

        This buffer may be larger than the saved one if that one never wrapped (a run whose
        step budget was raised on resume): its rows keep their places, the rest is free.
        """
        try:
            with np.load(path) as f:
                pos, n_ep, n_steps, cap, h = (int(x) for x in f["meta"])
                last = f["episode"].shape[0]
                grows = cap < self.capacity and last <= pos  # saved rows all lie before pos
                if (cap != self.capacity and not grows) or h != self.horizon:
                    raise ValueError(f"{path}: buffer capacity/horizon {cap}/{h} differ from "
                                     f"{self.capacity}/{self.horizon}")
                for k in self.obs:
                    self.obs[k][:last] = f[f"obs/{k}"]
                self.action[:last] = f["action"]
                self.done[:last] = f["done"]
                if self.reward is not None:
                    self.reward[:last] = f["reward"]
                self.episode[:] = -1
                self.episode[:last] = f["episode"]
        except (OSError, KeyError) as exc:
            raise ValueError(f"{path}: unreadable buffer file ({exc})") from None
        self.pos, self.num_episodes, self.num_steps = pos, n_ep, n_steps
        self._index()
