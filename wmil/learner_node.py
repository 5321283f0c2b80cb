"""wmil_learner: learns IQ-MPC online from the topics the planner sees and hot-swaps it in.

It starts from a training run (``run``), builds behaviour episodes from the observation and
command topics (each command paired with the latest observation before it; episodes end on
``/wmil/episode``), trains in a background thread, and every ``export_every`` updates writes a
new versioned bundle (atomically) and announces it on ``/wmil/model_updates``. A crash in
training is logged; the node, and the planner, keep running.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray, String

from wmil.model import manifest_sha256
from wmil.planner_params import robot_joint_names
from wmil.ros_io import (
    RELIABLE_QOS,
    SENSOR_QOS,
    ParamSpec,
    camera_frame,
    camera_subscription,
    declare,
    from_stamp,
)
from wmil_core.messages import (
    FrameStack,
    command_to_action,
    joint_state_to_array,
    multiarray_to_array,
)

PARAMETERS = (
    ParamSpec("run", "", "training run directory (or checkpoint) to continue from",
              read_only=True),
    ParamSpec("demos", "", "demo file for the expert buffer (default: the run's)",
              read_only=True),
    ParamSpec("out_dir", "", "where versioned bundles go (default: <run>/online)",
              read_only=True),
    ParamSpec("export_every", 500, "updates between exported bundles", read_only=True,
              int_range=(1, 10_000_000)),
    ParamSpec("updates_per_step", 1, "updates per received transition", read_only=True,
              int_range=(1, 1000)),
    ParamSpec("image_topic", "/camera/image_raw", "camera topic", read_only=True),
    ParamSpec("compressed_image", False, "subscribe sensor_msgs/CompressedImage (jpeg, png) on "
              "<image_topic>/compressed, as the planner does", read_only=True),
    ParamSpec("joint_topic", "/joint_states", "joint state topic", read_only=True),
    ParamSpec("joint_names", Parameter.Type.STRING_ARRAY, "the robot's names of the model's "
              "joints, in the model's order, as the planner's (default: the model's)",
              read_only=True),
    ParamSpec("features_topic", "/wmil/features", "task feature topic", read_only=True),
    ParamSpec("command_topic", "/wmil/commands", "the planner's command topic", read_only=True),
    ParamSpec("episode_topic", "/wmil/episode", "episode ends (JSON)", read_only=True),
    ParamSpec("model_update_topic", "/wmil/model_updates", "where new bundles are announced",
              read_only=True),
)


class LearnerNode(Node):
    """Behaviour episodes in, versioned bundles and hot-swap requests out."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__("wmil_learner", **node_kwargs)
        from wmil_core.export import load_trained
        from wmil_core.online import OnlineLearner, TransitionAssembler

        p = declare(self, PARAMETERS)
        if not p["run"]:
            raise ValueError("run: set the training run directory to continue from")
        trainer, paths = load_trained(p["run"])
        env = trainer.env
        self.keys = tuple(k for k in ("joints", "features", "image") if k in env.obs_keys)
        self.names = list(env.joint_names)  # the model's (written into bundles)
        self.robot_names = robot_joint_names(p["joint_names"], self.names,
                                             "joints" in self.keys)  # read from /joint_states
        self.low, self.high = env.action_low, env.action_high
        self.image_size, self.frames = env.image_size, env.frames
        self.features_dim = int(env.observation_space["features"].shape[0]) \
            if "features" in env.obs_keys else 0
        run = paths["run"] or Path(p["run"]).parent
        out = Path(p["out_dir"] or Path(run) / "online")
        self.learner = OnlineLearner(trainer.agent, p["demos"] or trainer.cfg.demos,
                                     trainer.cfg.task, self.names, self.low, self.high, out,
                                     export_every=p["export_every"], seed=trainer.cfg.seed,
                                     symmetry=trainer.symmetry,  # as the run trained
                                     recent_fraction=trainer.cfg.recent_fraction,
                                     recent_episodes=trainer.cfg.recent_episodes,
                                     behaviour_symmetry=trainer.behaviour_symmetry,
                                     hindsight=trainer.hindsight)
        self.assembler = TransitionAssembler(self.keys)
        self.stack = FrameStack(self.frames) if "image" in self.keys else None
        self.updates_per_step = int(p["updates_per_step"])
        self.lock = threading.Lock()  # assembler and frame stack
        self.exports: list[dict[str, Any]] = []
        self.error: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        group = MutuallyExclusiveCallbackGroup()
        self._pub = self.create_publisher(String, p["model_update_topic"], RELIABLE_QOS)
        if "image" in self.keys:
            kind, topic = camera_subscription(p["image_topic"], p["compressed_image"])
            self.create_subscription(kind, topic, self._on_image, SENSOR_QOS,
                                     callback_group=group)
        if "joints" in self.keys:
            self.create_subscription(JointState, p["joint_topic"], self._on_joints,
                                     RELIABLE_QOS, callback_group=group)
        if "features" in self.keys:
            self.create_subscription(Float64MultiArray, p["features_topic"], self._on_features,
                                     RELIABLE_QOS, callback_group=group)
        self.create_subscription(Float64MultiArray, p["command_topic"], self._on_command,
                                 RELIABLE_QOS, callback_group=group)
        self.create_subscription(String, p["episode_topic"], self._on_episode, RELIABLE_QOS,
                                 callback_group=group)
        self._thread = threading.Thread(target=self._train_loop, name="wmil_learn", daemon=True)
        self._thread.start()
        self.get_logger().info(f"learning from {self.keys} of {trainer.cfg.task}; bundles -> {out}")

    # -- intake (the planner's conversions) -------------------------------------------------
    def _on_image(self, msg: Image | CompressedImage) -> None:
        try:
            frame = camera_frame(msg, self.image_size)
        except ValueError as exc:
            self.get_logger().warning(f"image ignored: {exc}", throttle_duration_sec=1.0)
            return
        with self.lock:
            self.stack.push(frame, from_stamp(msg.header.stamp))
            stacked = self.stack.stacked()
            if stacked is not None:
                self.assembler.observe("image", stacked)

    def _on_joints(self, msg: JointState) -> None:
        try:
            value = joint_state_to_array(msg, self.robot_names)
        except ValueError as exc:
            self.get_logger().warning(f"joint state ignored: {exc}", throttle_duration_sec=1.0)
            return
        with self.lock:
            self.assembler.observe("joints", value)

    def _on_features(self, msg: Float64MultiArray) -> None:
        try:
            value = multiarray_to_array(msg, self.features_dim, "features").astype(np.float32)
        except ValueError as exc:
            self.get_logger().warning(f"features ignored: {exc}", throttle_duration_sec=1.0)
            return
        with self.lock:
            self.assembler.observe("features", value)

    def _on_command(self, msg: Float64MultiArray) -> None:
        u = np.asarray(msg.data, dtype=np.float64)
        if u.shape != self.low.shape or not np.all(np.isfinite(u)):
            self.get_logger().warning(
                f"command ignored: needs {self.low.size} finite values, got {u.size}"
                f"{'' if np.all(np.isfinite(u)) else ' with non-finite ones'}",
                throttle_duration_sec=1.0)
            return
        with self.lock:
            self.assembler.command(command_to_action(u, self.low, self.high))

    def _on_episode(self, msg: String) -> None:
        try:
            start = json.loads(msg.data).get("next_stamp")
        except (ValueError, AttributeError):
            start = None
        with self.lock:
            episode = self.assembler.end_episode()
            self.assembler.latest.clear()  # the next episode starts from fresh samples
            if self.stack is not None and start is not None:
                self.stack.restart(float(start))
        if episode is not None:
            self.learner.add_episode(*episode)
            self._wake.set()

    # -- training ----------------------------------------------------------------------------
    def _train_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.2)
            self._wake.clear()
            if self._stop.is_set() or not self.learner.ready():
                continue
            try:
                exported = self.learner.step(self.updates_per_step)
            except Exception as exc:  # noqa: BLE001 - a training crash must not stop control
                self.error = f"{type(exc).__name__}: {exc}"
                self.get_logger().error(f"training stopped, the planner continues: {self.error}")
                return
            if exported is not None:
                exported["sha256"] = manifest_sha256(exported["path"])
                self.exports.append(exported)
                self._pub.publish(String(data=json.dumps(exported)))
                self.get_logger().info(f"new model {exported['path']} "
                                       f"(version {exported['version']})")

    def destroy_node(self) -> None:
        """Stop the training thread, then the node."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Run the learner node until shutdown."""
    try:
        with rclpy.init(args=args):
            node = LearnerNode()
            executor = SingleThreadedExecutor()  # training has its own thread
            executor.add_node(node)
            try:
                executor.spin()
            finally:
                node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    return 0
