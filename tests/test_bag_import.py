"""rosbag2 recordings (sqlite3 and MCAP) become demo datasets, bit-exact, or a clear ValueError."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import h5py
import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from wmil_core.bag_import import (
    command_to_action,
    compressed_to_array,
    image_to_array,
    import_bag,
    joint_state_to_array,
    stack_frames,
)
from wmil_core.demos import load_demos

TS = get_typestore(Stores.ROS2_KILTED if hasattr(Stores, "ROS2_KILTED") else Stores.LATEST)
TASK = "dmc/reacher-easy"  # joints [shoulder, wrist], 2 features, 2 actuators in [-1, 1]
IMG = "/camera/image_raw"
JS = "/joint_states"
FT = "/wmil/features"
CMD = "/wmil/commands"
IMAGE_T = "sensor_msgs/msg/Image"
COMPRESSED_T = "sensor_msgs/msg/CompressedImage"
JOINT_T = "sensor_msgs/msg/JointState"
ARRAY_T = "std_msgs/msg/Float64MultiArray"
MS = 1_000_000  # ns


# -- message builders ----------------------------------------------------------------------------
def _header() -> Any:
    time = TS.types["builtin_interfaces/msg/Time"](sec=0, nanosec=0)
    return TS.types["std_msgs/msg/Header"](stamp=time, frame_id="camera")


def image_msg(rgb: np.ndarray, encoding: str = "rgb8", pad: int = 0) -> Any:
    """An Image of ``rgb`` (H, W, 3) in ``encoding``, rows padded with ``pad`` garbage bytes."""
    if encoding == "bgr8":
        px = rgb[..., ::-1]
    elif encoding == "mono8":
        px = rgb[..., :1]  # callers pass a grey image (three equal channels)
    else:
        px = rgb
    h, w, ch = px.shape
    rows = px.reshape(h, w * ch)
    rows = np.concatenate([rows, np.full((h, pad), 0xAB, np.uint8)], axis=1)
    return TS.types[IMAGE_T](header=_header(), height=h, width=w, encoding=encoding,
                             is_bigendian=0, step=w * ch + pad,
                             data=np.ascontiguousarray(rows).reshape(-1))


def compressed_msg(rgb: np.ndarray, fmt: str = "png") -> Any:
    ok, buf = cv2.imencode(f".{fmt}", np.ascontiguousarray(rgb[..., ::-1]))
    assert ok
    return TS.types[COMPRESSED_T](header=_header(), format=fmt, data=buf.reshape(-1))


def joint_msg(names: list[str], pos: list[float], vel: list[float] | None) -> Any:
    return TS.types[JOINT_T](header=_header(), name=names, position=np.array(pos, np.float64),
                             velocity=np.array(vel if vel is not None else [], np.float64),
                             effort=np.array([], np.float64))


def array_msg(values: list[float]) -> Any:
    layout = TS.types["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0)
    return TS.types[ARRAY_T](layout=layout, data=np.array(values, np.float64))


def write_bag(path: Path, records: list[tuple[str, str, int, Any]],
              plugin: StoragePlugin = StoragePlugin.SQLITE3) -> Path:
    """Write ``(topic, msgtype, receive time ns, message)`` records, in the given order."""
    with Writer(path, version=9, storage_plugin=plugin) as w:
        conns: dict[str, Any] = {}
        for topic, msgtype, t, msg in records:
            if topic not in conns:
                conns[topic] = w.add_connection(topic, msgtype, typestore=TS)
            w.write(conns[topic], t, TS.serialize_cdr(msg, msgtype))
    return path


def _no_output(out: Path) -> bool:
    """Neither the file nor a leftover temporary file exists."""
    return not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))


# -- pure conversions ----------------------------------------------------------------------------
def test_image_to_array_encodings_and_padding():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (3, 5, 3), dtype=np.uint8)
    np.testing.assert_array_equal(image_to_array(image_msg(rgb, "rgb8")), rgb)
    np.testing.assert_array_equal(image_to_array(image_msg(rgb, "bgr8", pad=7)), rgb)
    grey = np.repeat(rng.integers(0, 256, (3, 5, 1), dtype=np.uint8), 3, axis=2)
    np.testing.assert_array_equal(image_to_array(image_msg(grey, "mono8", pad=3)), grey)
    with pytest.raises(ValueError, match="16UC1"):
        image_to_array(image_msg(rgb, "16UC1"))


def test_compressed_jpeg_decodes_close_to_the_original():
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[..., 0], rgb[..., 2] = 200, 40  # flat colour: jpeg keeps it within a few levels
    out = compressed_to_array(compressed_msg(rgb, "jpg"))
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - rgb).max() <= 4


def test_joint_state_reorders_and_refuses_gaps():
    msg = joint_msg(["extra", "wrist", "shoulder"], [9.0, 2.0, 1.0], [90.0, 20.0, 10.0])
    np.testing.assert_array_equal(joint_state_to_array(msg, ["shoulder", "wrist"]),
                                  np.array([1, 2, 10, 20], np.float32))
    with pytest.raises(ValueError, match="'elbow'"):
        joint_state_to_array(msg, ["shoulder", "elbow"])
    with pytest.raises(ValueError, match="no velocities"):
        joint_state_to_array(joint_msg(["shoulder", "wrist"], [1, 2], None), ["shoulder", "wrist"])
    with pytest.raises(ValueError, match="non-finite .* 'wrist'"):
        joint_state_to_array(joint_msg(["shoulder", "wrist"], [1, 2], [0, np.nan]),
                             ["shoulder", "wrist"])


def test_command_to_action_scales_and_clips():
    low, high = np.array([-2.0, 0.0]), np.array([2.0, 10.0])
    u = np.array([[-2.0, 0.0], [1.0, 7.5], [3.0, -1.0]])
    np.testing.assert_array_equal(command_to_action(u, low, high),
                                  np.array([[-1, -1], [0.5, 0.5], [1, -1]], np.float32))


def test_stack_frames_repeats_the_first_frame():
    frames = np.arange(4, dtype=np.uint8).reshape(4, 1, 1, 1)
    got = stack_frames(frames, np.array([0, 2, 3]), 3)[:, 0, 0, :]
    np.testing.assert_array_equal(got, [[0, 0, 0], [0, 1, 2], [1, 2, 3]])


# -- a hand-built recording, aligned bit-exactly -----------------------------------------------
RNG = np.random.default_rng(1)
F = [RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(4)]
F[2] = np.repeat(F[2][..., :1], 3, axis=2)  # published as mono8
J_NAMES = ["extra", "wrist", "shoulder"]  # another order, one joint the task does not have
J = [([0.5, 0.1 * i, -0.2 * i], [7.0, 1.5 * i, -0.5 * i]) for i in range(5)]


def _j(i: int) -> np.ndarray:  # expected `joints` of sample i: shoulder, wrist; then velocities
    pos, vel = J[i]
    return np.array([pos[2], pos[1], vel[2], vel[1]], np.float32)


FEAT = [[0.25, -0.5], [0.125, 0.75]]
CMDS = [[0.9, 0.9], [0.8, 0.8], [0.5, -0.25], [1.5, -2.0], [0.0, 0.0], [-0.75, 0.125]]

# receive times (ms): the image at 50 ms is missing (dropped frame); joints jitter (20, 41, 52)
RECORDS = [
    (CMD, ARRAY_T, 0, array_msg(CMDS[0])),  # dropped: no image yet (and no joints)
    (FT, ARRAY_T, 2, array_msg(FEAT[0])),
    (IMG, IMAGE_T, 3, image_msg(F[0], "rgb8")),
    (CMD, ARRAY_T, 5, array_msg(CMDS[1])),  # dropped: no joints yet
    (JS, JOINT_T, 8, joint_msg(J_NAMES, *J[0])),
    (JS, JOINT_T, 20, joint_msg(J_NAMES, *J[1])),
    (CMD, ARRAY_T, 20, array_msg(CMDS[2])),  # same time as joints 1: included (<=)
    (IMG, IMAGE_T, 30, image_msg(F[1], "bgr8", pad=5)),
    (CMD, ARRAY_T, 39, array_msg(CMDS[3])),  # joints 2 arrive late, at 41
    (JS, JOINT_T, 41, joint_msg(J_NAMES, *J[2])),
    (FT, ARRAY_T, 45, array_msg(FEAT[1])),
    (JS, JOINT_T, 52, joint_msg(J_NAMES, *J[3])),
    (CMD, ARRAY_T, 60, array_msg(CMDS[4])),  # still frame 1: the 50 ms frame never came
    (IMG, IMAGE_T, 70, image_msg(F[2], "mono8", pad=2)),
    (CMD, ARRAY_T, 81, array_msg(CMDS[5])),
    (JS, JOINT_T, 90, joint_msg(J_NAMES, *J[4])),
    (IMG, IMAGE_T, 95, image_msg(F[3], "rgb8")),
]


def _records(records: list[tuple[str, str, int, Any]]) -> list[tuple[str, str, int, Any]]:
    return [(topic, typ, t * MS, msg) for topic, typ, t, msg in records]


@pytest.fixture(params=[StoragePlugin.SQLITE3, StoragePlugin.MCAP], ids=["sqlite3", "mcap"])
def recording(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    return write_bag(tmp_path / "bag", _records(RECORDS), request.param)


def test_pixels_joints_bit_exact(recording: Path, tmp_path: Path):
    out = tmp_path / "out" / "demos.h5"
    rep = import_bag(recording, out, TASK)  # images and joints: pixels+joints inferred
    assert rep.obs_mode == "pixels+joints"
    assert (rep.episodes, rep.steps, rep.episode_lengths) == (1, 4, [4])
    assert rep.dropped == {f"before the first {IMG} message": 1,
                           f"before the first {JS} message": 1}
    assert rep.clipped == 2  # 1.5 and -2.0
    ds = load_demos(out, task=TASK)
    assert ds.obs_mode == "pixels+joints" and ds.joint_names == ["shoulder", "wrist"]
    assert ds.expert == {"name": "teleop", "source": "rosbag2", "bags": [str(recording)]}
    (ep,) = ds.episodes
    assert ep.rewards is None and ep.success is None
    np.testing.assert_array_equal(
        ep.actions, np.array([[0.5, -0.25], [1, -1], [0, 0], [-0.75, 0.125]], np.float32))
    # steps at 20, 39, 60, 81 ms, then the end of the bag
    np.testing.assert_array_equal(ep.obs["joints"], np.stack([_j(i) for i in (1, 1, 3, 3, 4)]))
    stacks = [(0, 0, 0), (0, 0, 1), (0, 0, 1), (0, 1, 2), (1, 2, 3)]  # oldest first
    want = np.stack([np.concatenate([F[i] for i in s], axis=-1) for s in stacks])
    assert ep.obs["image"].dtype == np.uint8 and ep.obs["image"].shape == (5, 64, 64, 9)
    np.testing.assert_array_equal(ep.obs["image"], want)


def test_state_mode_same_recording(recording: Path, tmp_path: Path):
    out = tmp_path / "state.h5"
    rep = import_bag([recording], out, TASK, obs_mode="state")
    assert rep.dropped == {f"before the first {JS} message": 2}
    (ep,) = load_demos(out, task=TASK).episodes
    assert set(ep.obs) == {"joints", "features"}
    np.testing.assert_array_equal(ep.obs["joints"], np.stack([_j(i) for i in (1, 1, 3, 3, 4)]))
    np.testing.assert_array_equal(ep.obs["features"],
                                  np.array([FEAT[i] for i in (0, 0, 1, 1, 1)], np.float32))


def test_state_inferred_without_images(tmp_path: Path):
    bag = write_bag(tmp_path / "bag", _records([r for r in RECORDS if r[0] != IMG]),
                    StoragePlugin.MCAP)
    rep = import_bag(bag, tmp_path / "d.h5", TASK)
    assert rep.obs_mode == "state" and rep.steps == 4  # the joint-less command at 5 ms dropped
    assert rep.dropped == {f"before the first {JS} message": 2}


def test_compressed_png_resized(tmp_path: Path):
    frames = [RNG.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(2)]
    records = [
        (JS, JOINT_T, 0, joint_msg(J_NAMES, *J[0])),
        (IMG, COMPRESSED_T, 1, compressed_msg(frames[0], "png")),
        (CMD, ARRAY_T, 2, array_msg([0.1, 0.2])),
        (IMG, COMPRESSED_T, 3, compressed_msg(frames[1], "png")),
        (CMD, ARRAY_T, 4, array_msg([0.3, 0.4])),
    ]
    bag = write_bag(tmp_path / "bag", _records(records), StoragePlugin.MCAP)
    out = tmp_path / "d.h5"
    rep = import_bag(bag, out, TASK, obs_mode="pixels+joints")
    assert rep.steps == 2 and rep.dropped == {}
    (ep,) = load_demos(out, task=TASK).episodes
    small = [cv2.resize(f, (64, 64), interpolation=cv2.INTER_AREA) for f in frames]
    stacks = [(0, 0, 0), (0, 0, 1), (0, 0, 1)]
    want = np.stack([np.concatenate([small[i] for i in s], axis=-1) for s in stacks])
    np.testing.assert_array_equal(ep.obs["image"], want)


# -- episodes ------------------------------------------------------------------------------------
def _split_records() -> list[tuple[str, str, int, Any]]:
    """Commands every 10 ms over 0-40 ms and 1000-1030 ms; joints at 0, 300, 700, 1000, 1050."""
    recs: list[tuple[str, str, int, Any]] = [(FT, ARRAY_T, 0, array_msg(FEAT[0]))]
    for k, t in enumerate([0, 300, 700, 1000, 1050]):
        recs.append((JS, JOINT_T, t, joint_msg(J_NAMES, *J[k])))
    for t in [*range(0, 50, 10), *range(1000, 1040, 10)]:
        recs.append((CMD, ARRAY_T, t, array_msg([t / 2000, 0.0])))
    return sorted(recs, key=lambda r: r[2])


def test_split_gap_makes_two_episodes(tmp_path: Path):
    bag = write_bag(tmp_path / "bag", _records(_split_records()))
    out = tmp_path / "d.h5"
    rep = import_bag(bag, out, TASK, split_gap=0.5)
    assert (rep.episodes, rep.episode_lengths) == (2, [5, 4])
    first, second = load_demos(out, task=TASK).episodes
    # the first episode ends split_gap after its last command (40 + 500 ms): joints at 300 ms,
    # not the 700 ms sample taken while nobody was commanding
    np.testing.assert_array_equal(first.obs["joints"], np.stack([_j(i) for i in (0,) * 5 + (1,)]))
    np.testing.assert_array_equal(second.obs["joints"], np.stack([_j(i) for i in (3,) * 4 + (4,)]))
    np.testing.assert_array_equal(second.actions[:, 0], np.array([0.5, 0.505, 0.51, 0.515],
                                                                 np.float32))
    whole = import_bag(bag, tmp_path / "one.h5", TASK)
    assert whole.episode_lengths == [9]


def test_several_bags_one_episode_each(tmp_path: Path):
    a = write_bag(tmp_path / "a", _records(_split_records()))
    b = write_bag(tmp_path / "b", _records(_split_records()), StoragePlugin.MCAP)
    out = tmp_path / "d.h5"
    rep = import_bag([a, b], out, TASK)
    assert rep.episode_lengths == [9, 9]
    ds = load_demos(out, task=TASK)
    assert ds.expert["bags"] == [str(a), str(b)]
    with h5py.File(out) as f:
        assert json.loads(f.attrs["expert"])["source"] == "rosbag2"


# -- bad input: a ValueError naming the problem, and no file ----------------------------------
def _replace(topic: str, typ: str, make: Any) -> list[tuple[str, str, int, Any]]:
    """The split recording with every ``topic`` message replaced by ``make(message)``."""
    return [(tp, typ, t, make(m)) if tp == topic else (tp, ty, t, m)
            for tp, ty, t, m in _split_records()]


BAD = {
    "topic missing": ([r for r in _split_records() if r[0] != FT], {}, FT),
    "wrong type": (_replace(JS, ARRAY_T, lambda m: array_msg([1.0])), {}, "JointState"),
    "command length": (_replace(CMD, ARRAY_T, lambda m: array_msg([0.0, 0.0, 0.0])), {},
                       "3 values"),
    "features length": (_replace(FT, ARRAY_T, lambda m: array_msg([0.0])), {}, "features"),
    "missing joint": (_replace(JS, JOINT_T, lambda m: joint_msg(["shoulder"], [0.0], [0.0])),
                      {}, "'wrist'"),
    "no velocities": (_replace(JS, JOINT_T,
                               lambda m: joint_msg(["shoulder", "wrist"], [0.0, 0.0], None)),
                      {}, "no velocities"),
    "unknown encoding": ([*_split_records(), (IMG, IMAGE_T, 0, image_msg(F[0], "bayer_rggb8"))],
                         {"obs_mode": "pixels+joints"}, "bayer_rggb8"),
    "no image topic": (_split_records(), {"obs_mode": "pixels+joints"}, IMG),
    "no commands kept": ([r for r in _split_records() if r[0] != JS or r[2] > 2000],
                         {}, "no usable commands"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_raises_and_writes_nothing(case: str, tmp_path: Path):
    records, kwargs, match = BAD[case]
    if case == "no commands kept":  # joints only after every command
        records = [*records, (JS, JOINT_T, 5000, joint_msg(J_NAMES, *J[0]))]
    bag = write_bag(tmp_path / "bag", _records(sorted(records, key=lambda r: r[2])))
    out = tmp_path / "out" / "d.h5"
    with pytest.raises(ValueError, match=match):
        import_bag(bag, out, TASK, **kwargs)
    assert _no_output(out)


def test_missing_or_unreadable_bag(tmp_path: Path):
    out = tmp_path / "out" / "d.h5"
    with pytest.raises(ValueError, match="no such bag"):
        import_bag(tmp_path / "nope", out, TASK)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a readable rosbag2"):
        import_bag(tmp_path / "empty", out, TASK, obs_mode="state")
    good = write_bag(tmp_path / "good", _records(_split_records()))
    with pytest.raises(ValueError, match="no such bag"):
        import_bag([good, tmp_path / "nope"], out, TASK)
    with pytest.raises(ValueError, match="split_gap"):
        import_bag(good, out, TASK, split_gap=0)
    assert _no_output(out)
