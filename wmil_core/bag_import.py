"""Import teleoperation recordings (rosbag2, MCAP or sqlite3) as a demo dataset.

Each message on the command topic is one step. Its observation is the latest sample of every
observed topic received at or before the command (bag receive timestamps), so dropped camera
frames and jitter only make a sample older. Commands received before every observed topic has
produced a sample are dropped and counted. The final observation of an episode is the latest
sample of each topic at the episode's end: the end of the bag, or, when episodes are split on
``split_gap``, ``split_gap`` seconds after the episode's last command.

Camera frames are stacked over the whole recording (the last ``frames`` frames at or before a
step, the first frame repeated while there are fewer), as a planner node subscribed to the
camera would see them.

The message -> array conversions are module-level functions without rclpy, for reuse in the
ROS nodes. No ROS installation is needed: ``rosbags`` reads and deserialises the recordings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wmil_core.demos import DemoWriter, Episode
from wmil_core.messages import (  # noqa: F401 - re-exported for callers of this module
    command_to_action,
    compressed_to_array,
    image_to_array,
    joint_state_to_array,
    multiarray_to_array,
    resize_frame,
)

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
JOINT_STATE_TYPE = "sensor_msgs/msg/JointState"
ARRAY_TYPE = "std_msgs/msg/Float64MultiArray"

_WANT: dict[str, tuple[str, ...]] = {  # stream key -> accepted message types
    "image": (IMAGE_TYPE, COMPRESSED_TYPE),
    "joints": (JOINT_STATE_TYPE,),
    "features": (ARRAY_TYPE,),
    "command": (ARRAY_TYPE,),
}


# -- alignment (pure) ----------------------------------------------------------------------------
def latest_index(times: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Index of the latest of sorted ``times`` at or before each ``query`` time (-1: none yet)."""
    return np.searchsorted(times, query, side="right").astype(np.int64) - 1


def stack_frames(frames: np.ndarray, index: np.ndarray, k: int) -> np.ndarray:
    """Frames ``index-k+1 .. index`` (oldest first, clamped at 0) stacked along channels.

    ``frames`` is (N, H, W, C); the result is (len(index), H, W, k*C).
    """
    parts = [frames[np.maximum(index - (k - 1 - j), 0)] for j in range(k)]
    return np.concatenate(parts, axis=-1)


def split_episodes(times: np.ndarray, gap_ns: int | None) -> list[slice]:
    """Slices of sorted ``times``, cut where consecutive times are more than ``gap_ns`` apart."""
    if len(times) == 0:
        return []
    if gap_ns is None:
        return [slice(0, len(times))]
    cuts = (np.flatnonzero(np.diff(times) > gap_ns) + 1).tolist()
    bounds = [0, *cuts, len(times)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


# -- reading bags --------------------------------------------------------------------------------
@dataclasses.dataclass
class ImportReport:
    """What :func:`import_bag` wrote."""

    path: Path
    task: str
    obs_mode: str
    bags: list[str]
    episodes: int
    steps: int
    episode_lengths: list[int]
    dropped: dict[str, int]  # reason -> number of commands dropped for it
    clipped: int  # command values outside the actuator range, clipped to [-1, 1]

    @property
    def dropped_total(self) -> int:
        """Commands dropped over all reasons."""
        return sum(self.dropped.values())


@dataclasses.dataclass
class _Stream:
    times: np.ndarray  # (N,) int64 receive time, ns, sorted
    values: np.ndarray  # (N, ...)


def _typestore() -> Any:
    from rosbags.typesys import Stores, get_typestore

    store = Stores.ROS2_KILTED if hasattr(Stores, "ROS2_KILTED") else Stores.LATEST
    return get_typestore(store)


@contextlib.contextmanager
def _open(path: Path) -> Iterator[Any]:
    """An open ``AnyReader`` of the recording at ``path``; unreadable ones raise ValueError."""
    from rosbags.highlevel import AnyReader, AnyReaderError

    try:
        reader = AnyReader([path], default_typestore=_typestore())
        reader.open()
    except (AnyReaderError, OSError) as exc:
        why = " ".join(str(exc).split())
        raise ValueError(f"{path}: not a readable rosbag2 recording ({why})") from None
    try:
        yield reader
    finally:
        reader.close()


def _topic_types(reader: Any) -> dict[str, str | None]:
    return {name: info.msgtype for name, info in reader.topics.items()}


def _check_topic(path: Path, types: dict[str, str | None], topic: str, want: Sequence[str]) -> str:
    if topic not in types:
        raise ValueError(f"{path}: no topic {topic} in the bag (it has {sorted(types)})")
    have = types[topic] or "several types"
    if have not in want:
        raise ValueError(f"{path}: topic {topic} has type {have}, expected {' or '.join(want)}")
    return str(have)


def infer_obs_mode(topics: Sequence[str], image_topic: str, joint_topic: str) -> str:
    """``pixels+joints`` with images and joints, ``pixels`` with images only, else ``state``."""
    has_img, has_joints = image_topic in topics, joint_topic in topics
    if has_img and has_joints:
        return "pixels+joints"
    if has_img:
        return "pixels"
    if has_joints:
        return "state"
    raise ValueError(f"neither {image_topic} nor {joint_topic} is in the bag: nothing to observe")


def _read_streams(
    path: Path,
    topics: dict[str, str],
    converters: dict[str, Callable[[Any, str], np.ndarray]],
    progress: bool,
) -> dict[str, _Stream]:
    """Read and convert every message of ``topics`` (key -> topic) into per-key streams."""
    with _open(path) as reader:
        types = _topic_types(reader)
        msgtypes = {k: _check_topic(path, types, t, _WANT[k]) for k, t in topics.items()}
        key_of = {t: k for k, t in topics.items()}
        conns = [c for c in reader.connections if c.topic in key_of]
        start = reader.start_time
        times: dict[str, list[int]] = {k: [] for k in topics}
        values: dict[str, list[np.ndarray]] = {k: [] for k in topics}
        total = sum(int(info.msgcount) for name, info in reader.topics.items() if name in key_of)
        for n, (conn, t, raw) in enumerate(reader.messages(connections=conns)):
            key = key_of[conn.topic]
            try:
                msg = reader.deserialize(raw, conn.msgtype)
                values[key].append(converters[key](msg, msgtypes[key]))
            except ValueError as exc:
                at = (t - start) / 1e9
                raise ValueError(f"{path}: {conn.topic} at {at:.3f} s: {exc}") from None
            times[key].append(int(t))
            if progress and (n + 1) % 1000 == 0:
                print(f"\r{path.name}: {n + 1}/{total} messages", end="", file=sys.stderr)
        if progress:
            print(f"\r{path.name}: {total}/{total} messages", file=sys.stderr)
    streams = {}
    for k in topics:
        ts = np.asarray(times[k], dtype=np.int64)
        order = np.argsort(ts, kind="stable")
        vals = np.stack(values[k]) if values[k] else np.zeros((0,), dtype=np.float32)
        streams[k] = _Stream(ts[order], vals[order] if len(order) else vals)
    return streams


def _converters(env: Any) -> dict[str, Callable[[Any, str], np.ndarray]]:
    size = env.image_size
    spec = env.obs_spec()
    n_act = int(env.action_low.shape[0])
    n_feat = int(spec["features"]["shape"][0]) if "features" in spec else 0
    names = list(env.joint_names)

    def image(msg: Any, msgtype: str) -> np.ndarray:
        rgb = compressed_to_array(msg) if msgtype == COMPRESSED_TYPE else image_to_array(msg)
        return resize_frame(rgb, size)

    return {
        "image": image,
        "joints": lambda msg, _t: joint_state_to_array(msg, names),
        "features": lambda msg, _t: multiarray_to_array(msg, n_feat, "features").astype(np.float32),
        "command": lambda msg, _t: multiarray_to_array(msg, n_act, "command"),
    }


def _bag_episodes(
    streams: dict[str, _Stream],
    obs_keys: Sequence[str],
    topics: dict[str, str],
    frames: int,
    low: np.ndarray,
    high: np.ndarray,
    gap_ns: int | None,
    dropped: dict[str, int],
) -> tuple[list[Episode], int]:
    """Episodes of one bag's streams; counts dropped commands into ``dropped``."""
    cmd = streams["command"]
    idx = {k: latest_index(streams[k].times, cmd.times) for k in obs_keys}
    keep = np.ones(len(cmd.times), dtype=bool)
    for k in obs_keys:  # a command is dropped for the first observed topic still silent
        missing = keep & (idx[k] < 0)
        if missing.any():
            reason = f"before the first {topics[k]} message"
            dropped[reason] = dropped.get(reason, 0) + int(missing.sum())
        keep &= idx[k] >= 0
    times = cmd.times[keep]
    u = cmd.values[keep] if keep.any() else np.zeros((0, len(low)))
    clipped = int(np.sum((u < low) | (u > high)))
    actions = command_to_action(u, low, high) if len(u) else np.zeros((0, len(low)), np.float32)
    episodes = []
    for sl in split_episodes(times, gap_ns):
        end = times[sl.stop - 1] + gap_ns if gap_ns is not None else np.iinfo(np.int64).max
        obs = {}
        for k in obs_keys:
            at = np.append(idx[k][keep][sl], latest_index(streams[k].times, np.array([end]))[0])
            vals = streams[k].values
            obs[k] = stack_frames(vals, at, frames) if k == "image" else vals[at]
        episodes.append(Episode(obs=obs, actions=actions[sl]))
    return episodes, clipped


def import_bag(
    bag: Path | str | Sequence[Path | str],
    out: Path | str,
    task: str,
    obs_mode: str | None = None,
    image_topic: str = "/camera/image_raw",
    joint_topic: str = "/joint_states",
    features_topic: str = "/wmil/features",
    command_topic: str = "/wmil/commands",
    split_gap: float | None = None,
    progress: bool = False,
) -> ImportReport:
    """Convert rosbag2 recording(s) of ``task`` into the demo dataset ``out``.

    Args:
        bag: one recording (a rosbag2 directory or its .mcap/.db3 file) or a list of them.
        out: the HDF5 demo file to write (written atomically; nothing is left on error).
        task: registry task name; fixes joint order, feature size, image size, frames, and the
            actuator range used to map commands to [-1, 1].
        obs_mode: observation mode; inferred from the first bag's topics when None.
        image_topic: camera topic, sensor_msgs/Image or sensor_msgs/CompressedImage.
        joint_topic: sensor_msgs/JointState topic.
        features_topic: std_msgs/Float64MultiArray topic of task features.
        command_topic: std_msgs/Float64MultiArray topic of actuator commands (one per step).
        split_gap: seconds; consecutive commands further apart start a new episode (None: one
            episode per bag).
        progress: report reading progress on stderr.

    Returns:
        An :class:`ImportReport`. Bad input raises ValueError naming the problem.
    """
    from wmil_core.tasks.env import make_env

    bags = [Path(bag)] if isinstance(bag, (str, Path)) else [Path(b) for b in bag]
    if not bags:
        raise ValueError("no bag given")
    for b in bags:
        if not b.exists():
            raise ValueError(f"{b}: no such bag")
    if split_gap is not None and not split_gap > 0:
        raise ValueError(f"split_gap must be > 0 seconds, got {split_gap}")
    if obs_mode is None:
        with _open(bags[0]) as reader:
            obs_mode = infer_obs_mode(list(reader.topics), image_topic, joint_topic)
    env = make_env(task, obs_mode)  # type: ignore[arg-type]
    try:
        obs_keys = list(env.obs_keys)
        spec = env.obs_spec()
        low = np.asarray(env.action_low, dtype=np.float64)
        high = np.asarray(env.action_high, dtype=np.float64)
        converters = _converters(env)
        frames, joint_names = env.frames, list(env.joint_names)
    finally:
        env.close()
    all_topics = {"image": image_topic, "joints": joint_topic, "features": features_topic,
                  "command": command_topic}
    topics = {k: all_topics[k] for k in [*obs_keys, "command"]}
    if len(set(topics.values())) < len(topics):
        raise ValueError(f"the topics read must differ, got {topics}")
    gap_ns = int(round(split_gap * 1e9)) if split_gap is not None else None
    dropped: dict[str, int] = {}
    lengths: list[int] = []
    clipped = 0
    expert = {"name": "teleop", "source": "rosbag2", "bags": [str(b) for b in bags]}
    with DemoWriter(out, task, obs_mode, spec, len(low), joint_names, expert) as writer:
        for i, b in enumerate(bags):
            if progress:
                print(f"bag {i + 1}/{len(bags)}: {b}", file=sys.stderr)
            streams = _read_streams(b, topics, converters, progress)
            episodes, n_clip = _bag_episodes(streams, obs_keys, topics, frames, low, high, gap_ns,
                                             dropped)
            clipped += n_clip
            for ep in episodes:
                writer.add_episode(ep)
                lengths.append(len(ep))
        if not lengths:
            raise ValueError(
                f"no usable commands on {command_topic} in {', '.join(map(str, bags))} "
                f"(dropped: {dropped or 'none recorded'})")
    return ImportReport(path=Path(out), task=task, obs_mode=obs_mode, bags=[str(b) for b in bags],
                        episodes=len(lengths), steps=sum(lengths), episode_lengths=lengths,
                        dropped=dropped, clipped=clipped)
