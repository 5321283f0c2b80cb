"""ROS message <-> numpy conversions, without rclpy (shared by the nodes and the bag importer).

The functions take any object with the fields of the ROS message (rclpy messages, rosbags
messages, or a test's stand-in) and return numpy arrays in wmil's observation conventions.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

_CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1}


def image_to_array(msg: Any) -> np.ndarray:
    """A sensor_msgs/Image (rgb8, bgr8 or mono8, rows possibly padded to ``step``) as RGB uint8.

    Returns an (height, width, 3) array; mono8 is repeated over the three channels.
    """
    enc = str(msg.encoding).lower()
    if enc not in _CHANNELS:
        raise ValueError(f"image encoding {msg.encoding!r} is not one of {', '.join(_CHANNELS)}")
    h, w, step, ch = int(msg.height), int(msg.width), int(msg.step), _CHANNELS[enc]
    if step < w * ch:
        raise ValueError(f"image step {step} is less than width {w} x {ch} channels")
    data = np.frombuffer(memoryview(msg.data), dtype=np.uint8)
    if data.size < h * step:
        raise ValueError(f"image data has {data.size} bytes, {h} rows of {step} need {h * step}")
    img = data[: h * step].reshape(h, step)[:, : w * ch].reshape(h, w, ch)
    if enc == "bgr8":
        img = img[..., ::-1]
    elif enc == "mono8":
        img = np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img)


def compressed_to_array(msg: Any) -> np.ndarray:
    """A sensor_msgs/CompressedImage (jpeg or png) as an (H, W, 3) RGB uint8 array."""
    buf = np.frombuffer(memoryview(msg.data), dtype=np.uint8)
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if bgr is None:
        raise ValueError(f"cannot decode compressed image (format {msg.format!r})")
    return np.ascontiguousarray(bgr[..., ::-1])


def resize_frame(rgb: np.ndarray, size: int) -> np.ndarray:
    """``rgb`` resized to ``size`` x ``size`` (cv2 INTER_AREA); unchanged when already that size."""
    if rgb.shape[:2] == (size, size):
        return rgb
    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)


def joint_state_to_array(msg: Any, names: Sequence[str]) -> np.ndarray:
    """Positions then velocities of joints ``names`` (in that order) from a sensor_msgs/JointState.

    Joints of the message not in ``names`` are ignored. A missing joint, or position/velocity
    arrays that do not match the names, raise ValueError.
    """
    msg_names = list(msg.name)
    pos = np.asarray(msg.position, dtype=np.float64)
    vel = np.asarray(msg.velocity, dtype=np.float64)
    if pos.shape != (len(msg_names),):
        raise ValueError(f"joint state has {len(msg_names)} names but {pos.size} positions")
    if vel.shape != (len(msg_names),):
        what = "no velocities" if vel.size == 0 else f"{vel.size} velocities"
        raise ValueError(f"joint state has {len(msg_names)} names but {what}")
    index = {n: i for i, n in enumerate(msg_names)}
    missing = [n for n in names if n not in index]
    if missing:
        raise ValueError(f"joint state has no joint {missing[0]!r} (it has {msg_names})")
    order = np.array([index[n] for n in names], dtype=np.int64)
    out = np.concatenate([pos[order], vel[order]]).astype(np.float32)
    if not np.all(np.isfinite(out)):
        bad = names[int(np.flatnonzero(~np.isfinite(out))[0]) % len(names)]
        raise ValueError(f"joint state has a non-finite position or velocity for {bad!r}")
    return out


def multiarray_to_array(msg: Any, size: int, what: str = "array") -> np.ndarray:
    """The data of a std_msgs/Float64MultiArray as float64, which must hold ``size`` values."""
    data = np.asarray(msg.data, dtype=np.float64).reshape(-1)
    if data.size != size:
        raise ValueError(f"{what} has {data.size} values, the task expects {size}")
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{what} has a non-finite value")
    return data


def command_to_action(u: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Actuator commands ``u`` as actions: 2 (u - low) / (high - low) - 1, clipped to [-1, 1]."""
    a = 2.0 * (np.asarray(u, dtype=np.float64) - low) / (high - low) - 1.0
    return np.clip(a, -1.0, 1.0).astype(np.float32)


def action_to_command(a: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Actions in [-1, 1] as actuator commands: low + (a + 1) (high - low) / 2, within bounds."""
    a = np.clip(np.asarray(a, dtype=np.float64), -1.0, 1.0)
    return low + (a + 1.0) * 0.5 * (high - low)



# -- arrays -> message fields (for publishers; still no rclpy) ----------------------------------
def image_fields(rgb: np.ndarray) -> dict[str, Any]:
    """The fields of an rgb8 sensor_msgs/Image holding ``rgb`` (H, W, 3 uint8), rows unpadded."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    h, w, _ = rgb.shape
    return {"height": h, "width": w, "encoding": "rgb8", "is_bigendian": 0, "step": 3 * w,
            "data": np.ascontiguousarray(rgb).tobytes()}


def joint_state_fields(names: Sequence[str], joints: np.ndarray) -> dict[str, Any]:
    """The name, position and velocity fields of a sensor_msgs/JointState from ``joints``.

    ``joints`` holds positions then velocities of ``names`` (wmil's ``joints`` layout); the
    values are widened to float64, so a float32 observation survives the round trip exactly.
    """
    q = np.asarray(joints, dtype=np.float64).reshape(-1)
    n = len(names)
    if q.shape != (2 * n,):
        raise ValueError(f"joints has {q.size} values, {n} joint names need {2 * n}")
    return {"name": list(names), "position": q[:n].tolist(), "velocity": q[n:].tolist()}


class FrameStack:
    """The last ``frames`` frames of a live camera stream, stacked as ``WmilEnv`` stacks them.

    Frames are concatenated along channels, oldest first; while fewer than ``frames`` frames
    of the current episode have arrived the oldest one is repeated (as at an env reset).
    :meth:`restart` marks an episode start by stamp, so frames of the previous episode are
    dropped whether they arrive before or after the mark.
    """

    def __init__(self, frames: int) -> None:
        if frames < 1:
            raise ValueError(f"frames: must be >= 1, got {frames}")
        self.frames = int(frames)
        self._items: collections.deque[tuple[float | None, np.ndarray]] = collections.deque(
            maxlen=self.frames)
        self._since: float | None = None

    def push(self, frame: np.ndarray, stamp: float | None = None) -> None:
        """Add a frame (H, W, C) with its capture time (seconds; None: unknown, always kept)."""
        self._items.append((stamp, frame))

    def restart(self, since: float | None = None) -> None:
        """Start an episode: only frames stamped ``since`` or later count (None: drop all)."""
        if since is None:
            self._items.clear()
        self._since = since

    def stacked(self) -> np.ndarray | None:
        """The stacked frames (H, W, frames * C), or None when no frame of the episode came."""
        since = self._since
        valid = [f for s, f in self._items if since is None or s is None or s >= since]
        if not valid:
            return None
        valid = [valid[0]] * (self.frames - len(valid)) + valid
        return np.concatenate(valid, axis=-1)
