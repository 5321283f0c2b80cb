"""Demonstration datasets: one HDF5 file, written atomically, validated on load.

Layout (format version 1)::

    /                       attrs: format_version, task, obs_mode, obs_spec (JSON),
                                   joint_names (JSON), action_dim, expert (JSON), wmil_version
    /episode_000000/obs/<key>   (T+1, ...) observations, the last one after the last action
    /episode_000000/actions     (T, A) float32 in [-1, 1]
    /episode_000000/rewards     (T,) float32, simulator reward: evaluation only
    /episode_000000             attrs: success (bool, or absent where the task has none)

Images are uint8, chunked one frame a chunk and gzip-compressed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

FORMAT_VERSION = 1
_EP_PREFIX = "episode_"


class DatasetError(ValueError):
    """A demo file that cannot be used; the message names the file and the first problem."""


@dataclasses.dataclass
class Episode:
    """One demonstration: ``obs[k]`` has T+1 rows, ``actions`` T rows."""

    obs: dict[str, np.ndarray]
    actions: np.ndarray  # (T, A) float32 in [-1, 1]
    rewards: np.ndarray | None = None  # (T,) float32, evaluation only
    success: bool | None = None

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    @property
    def ret(self) -> float:
        """Simulator return (evaluation only); NaN when rewards were not recorded."""
        return float(np.sum(self.rewards)) if self.rewards is not None else float("nan")


@dataclasses.dataclass
class DemoDataset:
    """A loaded, validated demo file."""

    path: Path
    task: str
    obs_mode: str
    obs_spec: dict[str, dict[str, Any]]  # key -> {"shape": [...], "dtype": "float32"}
    joint_names: list[str]
    action_dim: int
    expert: dict[str, Any]
    episodes: list[Episode]

    @property
    def num_steps(self) -> int:
        """Total transitions over all episodes."""
        return sum(len(e) for e in self.episodes)

    def summary(self) -> dict[str, Any]:
        """Episodes, steps, spec and the expert's return and success (for ``wmil demos info``)."""
        rets = np.array([e.ret for e in self.episodes if e.rewards is not None])
        succ = [e.success for e in self.episodes if e.success is not None]
        return {
            "path": str(self.path),
            "task": self.task,
            "obs_mode": self.obs_mode,
            "episodes": len(self.episodes),
            "steps": self.num_steps,
            "obs_spec": self.obs_spec,
            "action_dim": self.action_dim,
            "joint_names": self.joint_names,
            "expert": self.expert,
            "return_mean": float(np.mean(rets)) if rets.size else None,  # None: no rewards
            "return_std": float(np.std(rets)) if rets.size else None,
            "success_rate": float(np.mean(succ)) if succ else None,
        }


def _plain_spec(obs_spec: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    return {k: {"shape": list(v["shape"]), "dtype": str(v["dtype"])} for k, v in obs_spec.items()}


def _check_spec(obs_spec: Mapping[str, Mapping[str, Any]]) -> None:
    if not obs_spec:
        raise DatasetError("observation spec is empty")
    for key, s in obs_spec.items():
        if key not in ("joints", "features", "image"):
            raise DatasetError(f"observation key {key!r} is not one of joints, features, image")
        want = "uint8" if key == "image" else "float32"
        if s["dtype"] != want:
            raise DatasetError(f"observation {key!r} must be {want}, spec says {s['dtype']}")


class DemoWriter:
    """Write a demo file through a temporary file that is renamed into place on :meth:`close`.

    Used as a context manager: leaving the block with an exception (Ctrl-C included) deletes
    the temporary file, so an interrupted collection leaves nothing behind.
    """

    def __init__(
        self,
        path: str | Path,
        task: str,
        obs_mode: str,
        obs_spec: Mapping[str, Mapping[str, Any]],
        action_dim: int,
        joint_names: list[str] | None = None,
        expert: Mapping[str, Any] | None = None,
    ) -> None:
        _check_spec(obs_spec)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
        )
        os.close(fd)
        self.tmp_path = Path(tmp)
        self.obs_spec = _plain_spec(obs_spec)
        self.action_dim = int(action_dim)
        try:
            self._f = h5py.File(self.tmp_path, "w")
        except OSError:
            self.tmp_path.unlink(missing_ok=True)
            raise
        from wmil_core import __version__

        a = self._f.attrs
        a["format_version"] = FORMAT_VERSION
        a["task"] = task
        a["obs_mode"] = obs_mode
        a["obs_spec"] = json.dumps(self.obs_spec)
        a["joint_names"] = json.dumps(list(joint_names or []))
        a["action_dim"] = self.action_dim
        a["expert"] = json.dumps(dict(expert or {}))
        a["wmil_version"] = __version__
        self.num_episodes = 0

    def add_episode(self, episode: Episode) -> None:
        """Append one episode after checking it against the spec."""
        _validate_episode(episode, self.obs_spec, self.action_dim, f"episode {self.num_episodes}")
        g = self._f.create_group(f"{_EP_PREFIX}{self.num_episodes:06d}")
        og = g.create_group("obs")
        for key, arr in episode.obs.items():
            if key == "image":
                og.create_dataset(key, data=arr, chunks=(1, *arr.shape[1:]), compression="gzip",
                                  compression_opts=4, shuffle=True)
            else:
                og.create_dataset(key, data=arr)
        g.create_dataset("actions", data=episode.actions)
        if episode.rewards is not None:
            g.create_dataset("rewards", data=np.asarray(episode.rewards, dtype=np.float32))
        if episode.success is not None:
            g.attrs["success"] = bool(episode.success)
        self.num_episodes += 1

    def close(self) -> Path:
        """Finish the file and rename it into place; an empty dataset is refused."""
        if self.num_episodes == 0:
            self.abort()
            raise DatasetError(f"{self.path}: no episodes to write")
        self._f.attrs["num_episodes"] = self.num_episodes
        self._f.close()
        os.replace(self.tmp_path, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the temporary file."""
        try:
            self._f.close()
        finally:
            self.tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> DemoWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _validate_episode(ep: Episode, spec: Mapping[str, Mapping[str, Any]], action_dim: int,
                      where: str) -> None:
    acts = ep.actions
    if acts.dtype != np.float32 or acts.ndim != 2 or acts.shape[1] != action_dim:
        raise DatasetError(
            f"{where}: actions must be float32 (T, {action_dim}), got {acts.dtype} {acts.shape}")
    t = acts.shape[0]
    if t == 0:
        raise DatasetError(f"{where}: has no steps")
    if not np.all(np.isfinite(acts)):
        raise DatasetError(f"{where}: actions hold NaN or infinite values")
    for key, s in spec.items():
        if key not in ep.obs:
            raise DatasetError(f"{where}: missing observation {key!r}")
        arr = ep.obs[key]
        want = (t + 1, *s["shape"])
        if arr.dtype != np.dtype(s["dtype"]):
            raise DatasetError(f"{where}: obs/{key} has dtype {arr.dtype}, expected {s['dtype']}")
        if tuple(arr.shape) != want:
            raise DatasetError(f"{where}: obs/{key} has shape {arr.shape}, expected {want}")
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise DatasetError(f"{where}: obs/{key} holds NaN or infinite values")
    extra = sorted(set(ep.obs) - set(spec))
    if extra:
        raise DatasetError(f"{where}: observation {extra[0]!r} is not in the spec")
    if ep.rewards is not None and np.asarray(ep.rewards).shape != (t,):
        raise DatasetError(f"{where}: rewards must have shape ({t},)")


def _attr(f: h5py.File, name: str, path: Path) -> Any:
    if name not in f.attrs:
        raise DatasetError(f"{path}: missing attribute {name!r}")
    v = f.attrs[name]
    return v.decode() if isinstance(v, bytes) else v


def _iter_groups(f: h5py.File) -> Iterator[tuple[str, h5py.Group]]:
    for name in sorted(f.keys()):
        if name.startswith(_EP_PREFIX) and isinstance(f[name], h5py.Group):
            yield name, f[name]


def load_demos(
    path: str | Path,
    task: str | None = None,
    obs_spec: Mapping[str, Mapping[str, Any]] | None = None,
    action_dim: int | None = None,
    max_episodes: int | None = None,
) -> DemoDataset:
    """Load and validate a demo file; any problem raises :class:`DatasetError` naming it.

    ``task``, ``obs_spec`` and ``action_dim``, when given, must match the file's (a dataset
    recorded for another task or observation spec is refused).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        msg = f"{path}: not a readable HDF5 file, truncated or corrupt ({exc})"
        raise DatasetError(msg) from None
    with f:
        version = _attr(f, "format_version", path)
        if int(version) != FORMAT_VERSION:
            raise DatasetError(
                f"{path}: format version {version}, this wmil reads {FORMAT_VERSION}"
            )
        file_task = str(_attr(f, "task", path))
        if task is not None and file_task != task:
            raise DatasetError(f"{path}: recorded for task {file_task!r}, not {task!r}")
        try:
            spec = json.loads(_attr(f, "obs_spec", path))
            joint_names = json.loads(_attr(f, "joint_names", path))
            expert = json.loads(_attr(f, "expert", path))
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}: malformed JSON attribute ({exc})") from None
        try:
            _check_spec(spec)
        except DatasetError as exc:
            raise DatasetError(f"{path}: {exc}") from None
        if obs_spec is not None:
            want = _plain_spec(obs_spec)
            if want != spec:
                raise DatasetError(
                    f"{path}: observation spec {spec} does not match the task's {want}"
                )
        adim = int(_attr(f, "action_dim", path))
        if action_dim is not None and adim != action_dim:
            raise DatasetError(f"{path}: action size {adim}, the task has {action_dim}")
        episodes: list[Episode] = []
        groups = list(_iter_groups(f))
        declared = f.attrs.get("num_episodes")
        if declared is not None and int(declared) != len(groups):
            raise DatasetError(f"{path}: declares {int(declared)} episodes but holds {len(groups)}")
        for name, g in groups[:max_episodes]:
            where = f"{path}: {name}"
            try:
                if "actions" not in g:
                    raise DatasetError(f"{where}: missing 'actions'")
                if "obs" not in g:
                    raise DatasetError(f"{where}: missing 'obs'")
                obs = {k: g["obs"][k][()] for k in g["obs"]}
                ep = Episode(
                    obs=obs,
                    actions=g["actions"][()],
                    rewards=g["rewards"][()] if "rewards" in g else None,
                    success=bool(g.attrs["success"]) if "success" in g.attrs else None,
                )
            except (OSError, KeyError) as exc:
                raise DatasetError(f"{where}: unreadable ({exc})") from None
            _validate_episode(ep, spec, adim, where)
            episodes.append(ep)
        if not episodes:
            raise DatasetError(f"{path}: the dataset has no episodes")
        return DemoDataset(
            path=path,
            task=file_task,
            obs_mode=str(_attr(f, "obs_mode", path)),
            obs_spec=spec,
            joint_names=list(joint_names),
            action_dim=adim,
            expert=expert,
            episodes=episodes,
        )
