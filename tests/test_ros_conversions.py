"""Message <-> array conversions on real sensor_msgs / std_msgs objects (no DDS needed)."""

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray

from wmil.ros_io import (
    array_msg,
    camera_frame,
    camera_subscription,
    from_stamp,
    image_msg,
    joint_state_msg,
    to_stamp,
)
from wmil_core.bag_import import stack_frames
from wmil_core.messages import (
    FrameStack,
    compressed_to_array,
    image_to_array,
    joint_state_to_array,
    multiarray_to_array,
    resize_frame,
)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)


def padded_image(rgb: np.ndarray, encoding: str, pad: int) -> Image:
    """A real sensor_msgs/Image of ``rgb`` in ``encoding``, each row padded with ``pad`` bytes."""
    px = {"rgb8": rgb, "bgr8": rgb[..., ::-1], "mono8": rgb[..., :1]}[encoding]
    h, w, ch = px.shape
    rows = np.concatenate([px.reshape(h, w * ch), np.full((h, pad), 0xAB, np.uint8)], axis=1)
    return Image(height=h, width=w, encoding=encoding, step=w * ch + pad,
                 data=np.ascontiguousarray(rows).tobytes())


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8"])
@pytest.mark.parametrize("pad", [0, 3])
def test_colour_images_with_row_padding(encoding, pad):
    np.testing.assert_array_equal(image_to_array(padded_image(RGB, encoding, pad)), RGB)


def test_mono8_with_padding_becomes_three_equal_channels():
    grey = np.repeat(RGB[..., :1], 3, axis=2)
    np.testing.assert_array_equal(image_to_array(padded_image(grey, "mono8", 7)), grey)


def test_bad_images_are_refused():
    msg = padded_image(RGB, "rgb8", 0)
    msg.encoding = "rgba8"
    with pytest.raises(ValueError, match="rgba8"):
        image_to_array(msg)
    msg = padded_image(RGB, "rgb8", 0)
    msg.data = msg.data[:-1].tobytes()
    with pytest.raises(ValueError, match="bytes"):
        image_to_array(msg)


def test_published_image_round_trip_and_stamp():
    msg = image_msg(RGB, 12.34, "cam")
    assert (msg.encoding, msg.step, msg.header.frame_id) == ("rgb8", 15, "cam")
    np.testing.assert_array_equal(image_to_array(msg), RGB)
    assert from_stamp(msg.header.stamp) == pytest.approx(12.34, abs=1e-9)
    assert (to_stamp(1.5).sec, to_stamp(1.5).nanosec) == (1, 500_000_000)


def test_compressed_png_and_resize():
    ok, png = cv2.imencode(".png", RGB[..., ::-1])
    assert ok
    msg = CompressedImage(format="png", data=png.tobytes())
    np.testing.assert_array_equal(compressed_to_array(msg), RGB)
    small = resize_frame(compressed_to_array(msg), 4)
    assert small.shape == (4, 4, 3) and small.dtype == np.uint8
    square = RGB[:5]
    assert resize_frame(square, 5) is square  # already the size: untouched
    with pytest.raises(ValueError, match="decode"):
        compressed_to_array(CompressedImage(format="jpeg", data=b"not an image"))


def test_frame_stack_matches_env_and_bag_stacking():
    frames = RNG.integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)
    stack = FrameStack(3)
    assert stack.stacked() is None
    for i, f in enumerate(frames):
        stack.push(f, stamp=float(i))
        want = stack_frames(frames, np.array([i]), 3)[0]  # first frame repeated, oldest first
        np.testing.assert_array_equal(stack.stacked(), want)
    # the simulator's own stacking: fed the env's newest frame each step, the node's stack is
    # the env's stacked observation
    from wmil_core.tasks.env import make_env

    env = make_env("dmc/cartpole-swingup", "pixels", seed=0, image_size=16, frames=3)
    obs, _ = env.reset(seed=0)
    stack = FrameStack(3)
    for i in range(5):
        stack.push(obs["image"][..., -3:], stamp=float(i))
        np.testing.assert_array_equal(stack.stacked(), obs["image"])
        obs = env.step(np.ones(1))[0]
    assert not np.array_equal(obs["image"][..., :3], obs["image"][..., -3:])  # frames moved
    env.close()


@pytest.mark.parametrize("mark_first", [True, False])
def test_frame_stack_restart_drops_the_previous_episode(mark_first):
    old, new1, new2 = (np.full((2, 2, 3), v, np.uint8) for v in (1, 2, 3))
    stack = FrameStack(3)
    stack.push(old, 0.9)
    if mark_first:  # the episode message comes before the new episode's first frame
        stack.restart(1.0)
        assert stack.stacked() is None
        stack.push(new1, 1.0)
    else:  # or after it
        stack.push(new1, 1.0)
        stack.restart(1.0)
    np.testing.assert_array_equal(stack.stacked(), np.concatenate([new1] * 3, axis=-1))
    stack.push(new2, 1.1)
    np.testing.assert_array_equal(stack.stacked(), np.concatenate([new1, new1, new2], axis=-1))
    stack.restart(None)
    assert stack.stacked() is None


def test_joint_states_reordered_extra_joints_ignored():
    msg = JointState(name=["gripper", "wrist", "shoulder"], position=[9.0, 0.2, 0.1],
                     velocity=[8.0, -2.0, -1.0])
    q = joint_state_to_array(msg, ["shoulder", "wrist"])
    assert q.dtype == np.float32
    np.testing.assert_array_equal(q, np.float32([0.1, 0.2, -1.0, -2.0]))


def test_missing_joint_and_non_finite_are_errors():
    msg = JointState(name=["wrist"], position=[0.2], velocity=[0.0])
    with pytest.raises(ValueError, match="no joint 'shoulder'"):
        joint_state_to_array(msg, ["shoulder", "wrist"])
    msg = JointState(name=["shoulder", "wrist"], position=[0.0, float("nan")],
                     velocity=[0.0, 0.0])
    with pytest.raises(ValueError, match="non-finite.*wrist"):
        joint_state_to_array(msg, ["shoulder", "wrist"])


def test_published_joint_state_round_trips_float32_exactly():
    q = RNG.standard_normal(4).astype(np.float32)
    msg = joint_state_msg(["a", "b"], q, 3.0)
    assert list(msg.name) == ["a", "b"]
    np.testing.assert_array_equal(joint_state_to_array(msg, ["a", "b"]), q)
    with pytest.raises(ValueError, match="2 joint names need 4"):
        joint_state_msg(["a", "b"], q[:3], 0.0)


def test_float64_multiarray_round_trip():
    x = RNG.standard_normal(3).astype(np.float32)
    msg = array_msg(x)
    assert isinstance(msg, Float64MultiArray)
    np.testing.assert_array_equal(multiarray_to_array(msg, 3).astype(np.float32), x)
    with pytest.raises(ValueError, match="has 3 values, the task expects 2"):
        multiarray_to_array(msg, 2, "features")


def test_camera_subscription_and_frame_take_raw_or_compressed_images():
    """The one camera intake of the planner and the learner nodes."""
    assert camera_subscription("/cam/image_raw", False) == (Image, "/cam/image_raw")
    assert camera_subscription("/cam/image_raw", True) == (CompressedImage,
                                                           "/cam/image_raw/compressed")
    assert camera_subscription("/cam/compressed", True) == (CompressedImage, "/cam/compressed")
    ok, png = cv2.imencode(".png", RGB[..., ::-1])
    assert ok
    raw, packed = image_msg(RGB, 1.0), CompressedImage(format="png", data=png.tobytes())
    square = np.ascontiguousarray(RGB[:5])
    np.testing.assert_array_equal(camera_frame(image_msg(square, 1.0), None), square)
    np.testing.assert_array_equal(camera_frame(packed, 4), camera_frame(raw, 4))
    assert camera_frame(packed, 4).shape == (4, 4, 3)
    with pytest.raises(ValueError, match="decode"):
        camera_frame(CompressedImage(format="png", data=b"broken"), 4)
