"""``wmil_sim``: a registry task as a ROS 2 robot (camera, joint states, features, commands).

Two modes:

- ``lockstep`` (default): publish an observation, then advance exactly one agent step per
  command received on ``/wmil/commands``. Deterministic whatever the planner's speed, so a
  closed loop reproduces an in-process evaluation exactly. While no command arrives the
  current observation is sent again every ``resend_period`` seconds with the same stamps (so
  a dropped camera frame or a late subscriber cannot stall the loop; planners recognise the
  repeat by its stamp).
- ``realtime``: a wall-clock timer at ``rate`` Hz steps with the latest command (zeros when
  none came since the last step, or the last one with ``hold_last_command``).

All messages of one observation share its header stamp, the sim time, also published on
``/clock``. At every episode end ``/wmil/episode`` carries JSON statistics (evaluation only);
the next episode starts with seed ``seed + episode_index``.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray, String

from wmil.model import model_info, read_manifest
from wmil.ros_io import (
    OK,
    RELIABLE_QOS,
    SENSOR_QOS,
    WARN,
    ParamSpec,
    array_msg,
    declare,
    diagnostics,
    image_msg,
    joint_state_msg,
    steady_clock,
    to_stamp,
)
from wmil.simulation import EpisodeResult, SimCore, SimFrame

T = TypeVar("T")
MODES = ("lockstep", "realtime")

PARAMETERS = (
    ParamSpec("task", "", "registry task, e.g. dmc/reacher-easy (empty: the model's task)",
              read_only=True),
    ParamSpec("model_dir", "", "model bundle whose task and observation mode are the defaults",
              read_only=True),
    ParamSpec("obs_mode", "", "env observation mode: state, pixels, pixels+joints (empty: "
              "the model's, else state); what is published does not depend on it",
              read_only=True),
    ParamSpec("seed", 0, "episode i is reset with seed + i", read_only=True),
    ParamSpec("episode_length", 0, "agent steps per episode (0: the task's)", read_only=True,
              int_range=(0, 1_000_000)),
    ParamSpec("episodes", 0, "stop after this many episodes (0: run forever)", read_only=True,
              int_range=(0, 1_000_000)),
    ParamSpec("mode", "lockstep", "lockstep (one step per command) or realtime (timer)",
              read_only=True),
    ParamSpec("rate", 0.0, "realtime steps per second, Hz (0: 1 / (control_dt * "
              "action_repeat), real time)", read_only=True, float_range=(0.0, 10_000.0)),
    ParamSpec("hold_last_command", False, "realtime: repeat the last command when no new one "
              "came (false: zeros)"),
    ParamSpec("publish_image", True, "render and publish one camera frame per step",
              read_only=True),
    ParamSpec("resend_period", 0.5, "lockstep: resend the observation after this long without "
              "a command, s", float_range=(0.01, 60.0)),
    ParamSpec("image_topic", "/camera/image_raw", "camera topic (sensor_msgs/Image, rgb8)",
              read_only=True),
    ParamSpec("joint_topic", "/joint_states", "joint state topic", read_only=True),
    ParamSpec("features_topic", "/wmil/features", "task feature topic (Float64MultiArray)",
              read_only=True),
    ParamSpec("command_topic", "/wmil/commands", "command topic (Float64MultiArray, actuator "
              "units)", read_only=True),
    ParamSpec("episode_topic", "/wmil/episode", "episode statistics topic (JSON String)",
              read_only=True),
    ParamSpec("frame_id", "camera", "frame_id of the camera images", read_only=True),
)


class SimNode(Node):
    """The simulator node; ``done`` turns true after ``episodes`` episodes."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__("wmil_sim", **node_kwargs)
        self._worker: concurrent.futures.ThreadPoolExecutor | None = None
        try:
            self._setup()
        except BaseException:
            self.destroy_node()
            raise

    def _setup(self) -> None:
        p = declare(self, PARAMETERS)
        self.params = p
        if p["mode"] not in MODES:
            raise ValueError(f"mode: must be lockstep or realtime, got {p['mode']!r}")
        task, obs_mode = p["task"], p["obs_mode"]
        if p["model_dir"] and not (task and obs_mode):
            info = model_info(read_manifest(p["model_dir"]))
            task, obs_mode = task or info.task, obs_mode or info.obs_mode
        if not task:
            raise ValueError("task: set a task or a model_dir whose manifest names one")
        # MuJoCo's renderer is bound to one thread: every env call runs on this worker
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="wmil_sim")
        self.core: SimCore = self._on_sim(
            SimCore, task, obs_mode, p["seed"], p["episode_length"] or None, p["episodes"],
            p["publish_image"])
        self.results: list[EpisodeResult] = []
        self.refused = 0
        self._latest: np.ndarray | None = None  # realtime: the command for the next step
        self._last_command = np.zeros(self.core.action_dim)
        self._cached: list[tuple[Any, Any]] = []  # (publisher, message) of the last frame
        self._last_publish = 0.0
        self._started = time.monotonic()

        self._pub_clock = self.create_publisher(Clock, "/clock", RELIABLE_QOS)
        self._pub_image = self.create_publisher(Image, p["image_topic"], SENSOR_QOS)
        self._pub_joints = self.create_publisher(JointState, p["joint_topic"], RELIABLE_QOS)
        self._pub_features = (self.create_publisher(Float64MultiArray, p["features_topic"],
                                                    RELIABLE_QOS)
                              if self.core.features_dim else None)
        self._pub_episode = self.create_publisher(String, p["episode_topic"], RELIABLE_QOS)
        self._pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", RELIABLE_QOS)

        sim_group = MutuallyExclusiveCallbackGroup()  # the sim never steps twice at once
        self.create_subscription(Float64MultiArray, p["command_topic"], self._on_command,
                                 RELIABLE_QOS, callback_group=sim_group)
        clock = steady_clock()
        if p["mode"] == "lockstep":
            self._timer = self.create_timer(min(0.05, p["resend_period"] / 2), self._on_resend,
                                            callback_group=sim_group, clock=clock)
        else:
            rate = p["rate"] or self.core.default_rate
            self._timer = self.create_timer(1.0 / rate, self._on_tick, callback_group=sim_group,
                                            clock=clock)
        self.create_timer(1.0, self._on_diagnostics, clock=clock)
        self._publish(self._on_sim(self.core.reset), None)
        self.get_logger().info(
            f"{task} ({self.core.env.obs_mode}), {p['mode']}, {self.core.action_dim} actuators, "
            f"joints {self.core.joint_names}, {self.core.default_rate:g} steps per sim second")

    # -- the simulation thread ----------------------------------------------------------------
    def _on_sim(self, fn: Callable[..., T], *args: Any) -> T:
        return self._worker.submit(fn, *args).result()

    @property
    def done(self) -> bool:
        """Whether every requested episode has ended."""
        return self.core.done

    # -- callbacks ------------------------------------------------------------------------------
    def _on_command(self, msg: Float64MultiArray) -> None:
        u = np.asarray(msg.data, dtype=np.float64)
        why = self.core.check_command(u)
        if why is not None:
            self.refused += 1
            self.get_logger().warning(f"command refused: {why}", throttle_duration_sec=1.0)
            return
        if self.params["mode"] == "realtime":
            self._latest = u
            return
        if self.core.done:
            return
        self._advance(u)

    def _on_tick(self) -> None:
        if self.core.done:
            self._timer.cancel()
            return
        u = self._latest
        self._latest = None
        if u is None:
            u = self._last_command if self.get_parameter("hold_last_command").value \
                else np.zeros(self.core.action_dim)
        self._advance(u)

    def _on_resend(self) -> None:
        period = self.get_parameter("resend_period").value
        if self._cached and not self.core.done and time.monotonic() - self._last_publish >= period:
            for pub, msg in self._cached:
                pub.publish(msg)
            self._last_publish = time.monotonic()

    def _advance(self, u: np.ndarray) -> None:
        frame, result = self._on_sim(self.core.step, u)
        self._last_command = u
        self._publish(frame, result)

    def _publish(self, frame: SimFrame | None, result: EpisodeResult | None) -> None:
        self._pub_clock.publish(Clock(clock=to_stamp(self.core.time)))
        if result is not None:
            self.results.append(result)
            self._pub_episode.publish(String(data=json.dumps(result.to_dict())))
            self.get_logger().info(
                f"episode {result.episode}: return {result.episode_return:.3f}, "
                f"{result.steps} steps, success {result.success}")
        self._cached = []
        if frame is None:
            return
        if frame.image is not None:
            self._cached.append(
                (self._pub_image, image_msg(frame.image, frame.stamp, self.params["frame_id"])))
        self._cached.append(
            (self._pub_joints, joint_state_msg(self.core.joint_names, frame.joints, frame.stamp)))
        if self._pub_features is not None and frame.features is not None:
            self._cached.append((self._pub_features, array_msg(frame.features)))
        for pub, msg in self._cached:
            pub.publish(msg)
        self._last_publish = time.monotonic()

    def _on_diagnostics(self) -> None:
        core = self.core
        wall = time.monotonic() - self._started
        level, message = OK, "running"
        if core.done:
            message = "all episodes done"
        elif self.refused:
            level, message = WARN, f"{self.refused} commands refused"
        last = self.results[-1] if self.results else None
        values = {
            "task": core.env.task_name, "mode": self.params["mode"], "episode": core.episode,
            "steps": core.total_steps, "sim_time_s": core.time,
            "real_time_factor": core.time / wall if wall > 0 else 0.0,
            "refused_commands": self.refused,
            "last_return": last.episode_return if last else "none",
        }
        self._pub_diag.publish(diagnostics(self, "wmil_sim: simulation", level, message, values,
                                           hardware_id=core.env.task_name))

    def destroy_node(self) -> None:
        """Free the renderer on its own thread, then the node."""
        core = getattr(self, "core", None)
        try:
            if core is not None and self._worker is not None:
                self._on_sim(core.close)
        finally:
            if self._worker is not None:
                self._worker.shutdown(wait=True)
                self._worker = None
            super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Run ``wmil_sim`` until shut down or, with ``episodes`` > 0, until they are done."""
    try:
        with rclpy.init(args=args):
            try:
                node = SimNode()
            except ValueError as exc:
                rclpy.logging.get_logger("wmil_sim").fatal(str(exc))
                return 1
            executor = SingleThreadedExecutor()  # every callback is short; env work is on
            executor.add_node(node)  # the node's own simulation thread
            try:
                while rclpy.ok() and not node.done:
                    executor.spin_once(timeout_sec=0.1)
            finally:
                executor.shutdown()
                node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    return 0


