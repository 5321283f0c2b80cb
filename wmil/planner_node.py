"""``wmil_planner``: a model bundle's MPPI planner as a ROS 2 controller.

Sensor callbacks keep the latest sample of every input the model needs (camera image, joint
states, task features) with its receive time; they never wait for planning, which runs on the
node's own control thread (:class:`ControlThread`), not on the executor. (rclpy's
MultiThreadedExecutor was measured here yielding each ready subscription about 35 times per
message and, once its queue backed up, starving a 20 Hz timer to 2-7 Hz; the executor that
spins this node can be the single-threaded one.) Each tick either plans
(``Planner.act``) and publishes the action in actuator units, clipped to
``command_low``/``command_high``, or, when an input is missing, stale, unusable or not
finite, publishes the safe command (zeros or the last command) and says why (see
:mod:`wmil.watchdog`).

Ticks come from a steady-clock deadline loop at ``rate`` (``trigger: timer``, real robots) or from
every complete new observation set (``trigger: observation``; lockstep simulation, where sim
time only advances on commands). An observation set is new when each input has arrived again
and the stamped ones (image, joints) carry a newer stamp than the last set planned on.

Model updates (``/wmil/model_updates``, JSON ``{path, version, sha256}``) are loaded and
dry-run on a worker thread, then swapped in between two ticks; a bad bundle is refused and
the running one continues.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray, String

from wmil.model import (
    ModelInfo,
    PlannerFactory,
    PlannerLike,
    make_planner,
    manifest_sha256,
    model_info,
)
from wmil.planner_params import PARAMETERS, check_bounds, check_parameter, robot_joint_names
from wmil.ros_io import (
    OK,
    RELIABLE_QOS,
    SENSOR_QOS,
    WARN,
    array_msg,
    camera_frame,
    camera_subscription,
    declare,
    diagnostics,
    from_stamp,
    steady_clock,
)
from wmil.watchdog import (
    InputSample,
    LatencyWindow,
    Watchdog,
    input_problem,
    missed_ticks,
    safe_command,
)
from wmil_core.messages import (
    FrameStack,
    action_to_command,
    joint_state_to_array,
    multiarray_to_array,
)

STAMPED = ("image", "joints")  # inputs whose messages carry a header stamp
NO_FRAME = "no camera frame of the current episode yet"


@dataclasses.dataclass(frozen=True)
class ActiveModel:
    """The model the node plans with; replaced as a whole by a hot swap."""

    planner: PlannerLike
    info: ModelInfo
    path: str


class ControlThread:
    """Calls ``tick(now)`` on its own thread: at fixed-rate deadlines (``period``: a function
    returning seconds, read at every deadline so rate changes apply at once) or, with
    ``period`` None, each time ``wake`` is set.

    Deadlines are kept on the steady clock; after an overrun the missed deadlines are skipped,
    not bunched. An exception from ``tick`` goes to ``on_error`` and the loop goes on.
    """

    def __init__(self, tick: Callable[[], None], period: Callable[[], float] | None = None,
                 wake: threading.Event | None = None,
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        if (period is None) == (wake is None):
            raise ValueError("ControlThread: give exactly one of period and wake")
        self._tick = tick
        self._period = period
        self._wake = wake
        self._on_error = on_error
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wmil_control", daemon=True)

    def start(self) -> None:
        """Start ticking."""
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the tick in progress, if any."""
        self._stop.set()
        if self._wake is not None:
            self._wake.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _call(self) -> None:
        try:
            self._tick()
        except Exception as exc:  # noqa: BLE001 - a failed tick must not end control
            if self._on_error is not None:
                self._on_error(exc)

    def _run(self) -> None:
        if self._wake is not None:
            while True:
                self._wake.wait()
                if self._stop.is_set():
                    return
                self._wake.clear()
                self._call()
        deadline = time.monotonic()
        while True:
            period = self._period()
            deadline += period
            now = time.monotonic()
            if deadline < now - period:  # overran by more than a period: skip, do not bunch
                deadline = now
            if self._stop.wait(max(0.0, deadline - now)):
                return
            self._call()


class PlannerNode(Node):
    """The planner node.

    Args:
        planner_factory: ``(model_dir, providers, threads, settings) -> (planner, manifest)``;
            :func:`wmil.model.make_planner` by default, a fake in tests.
        **node_kwargs: passed to ``rclpy.node.Node`` (context, parameter_overrides, cli_args).
    """

    def __init__(self, planner_factory: PlannerFactory = make_planner, **node_kwargs: Any
                 ) -> None:
        super().__init__("wmil_planner", **node_kwargs)
        self._factory = planner_factory
        self._swapper: concurrent.futures.ThreadPoolExecutor | None = None
        try:
            self._setup()
        except BaseException:
            super().destroy_node()
            raise

    def _setup(self) -> None:
        p = declare(self, PARAMETERS)
        for name, value in p.items():
            why = check_parameter(name, value)
            if why is not None:
                raise ValueError(f"{name}: {why}")
        if not p["model_dir"]:
            raise ValueError("model_dir: set the model bundle directory")
        self.params = p
        planner, manifest = self._factory(p["model_dir"], self._providers(), p["threads"] or None,
                                          self._settings())
        info = model_info(manifest)
        self._names = robot_joint_names(p["joint_names"], info.joint_names,
                                        "joints" in info.obs_spec)
        self._model = ActiveModel(planner, info, str(p["model_dir"]))
        low, high = self._bounds()
        why = check_bounds(low, high, info.action_dim)
        if why is not None:
            raise ValueError(why)

        self._lock = threading.Lock()  # inputs
        self._model_lock = threading.Lock()  # held for a whole tick: swaps fall between ticks
        self._samples: dict[str, InputSample] = {}
        self._new: set[str] = set()  # inputs received since the last observation-triggered plan
        self._planned_stamp: float | None = None
        self._stack = FrameStack(info.frames or 1) if "image" in info.obs_spec else None
        self._t0 = True
        self._last_command: np.ndarray | None = None
        self._last_tick: float | None = None
        self.watchdog = Watchdog(period=1.0)
        self.plan_latency = LatencyWindow(1000)  # s, planner.act
        self.command_latency = LatencyWindow(100_000)  # s, newest input receive -> publish
        self.ticks = 0  # commands published (planned or safe)
        self.ticks_missed = 0
        self.overruns = 0
        self.swaps = 0
        self.swap_failures = 0
        self.last_swap_error: str | None = None

        # sensor callbacks are short and lock-protected: any executor may run them concurrently
        sensors = ReentrantCallbackGroup()
        misc = MutuallyExclusiveCallbackGroup()
        self._pub_cmd = self.create_publisher(Float64MultiArray, p["command_topic"], RELIABLE_QOS)
        self._pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", RELIABLE_QOS)
        if "image" in info.obs_spec:
            kind, topic = camera_subscription(p["image_topic"], p["compressed_image"])
            self.create_subscription(kind, topic, self._on_image, SENSOR_QOS,
                                     callback_group=sensors)
        if "joints" in info.obs_spec:
            self.create_subscription(JointState, p["joint_topic"], self._on_joints, RELIABLE_QOS,
                                     callback_group=sensors)
        if "features" in info.obs_spec:
            self.create_subscription(Float64MultiArray, p["features_topic"], self._on_features,
                                     RELIABLE_QOS, callback_group=sensors)
        self.create_subscription(String, p["episode_topic"], self._on_episode, RELIABLE_QOS,
                                 callback_group=sensors)
        self.create_subscription(String, p["model_update_topic"], self._on_model_update,
                                 RELIABLE_QOS, callback_group=misc)
        self._swapper = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="wmil_swap")
        self._timer = p["trigger"] == "timer"
        self._guard = None if self._timer else threading.Event()  # set: a new observation set
        self.create_timer(1.0, self._on_diagnostics, callback_group=misc, clock=steady_clock())
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._after_set_parameters)
        self.get_logger().info(
            f"model {p['model_dir']} (task {info.task or '?'}, version {info.version}): inputs "
            f"{', '.join(info.keys)}, {info.action_dim} actuators, trigger {p['trigger']}")
        self._control = ControlThread(
            self._on_timer if self._timer else self._on_observation,
            period=(lambda: 1.0 / self.params["rate"]) if self._timer else None,
            wake=self._guard, on_error=self._on_control_error)
        self._control.start()

    def _on_control_error(self, exc: BaseException) -> None:
        self.get_logger().error(f"control tick failed: {type(exc).__name__}: {exc}")

    # -- model -------------------------------------------------------------------------------
    @property
    def model(self) -> ActiveModel:
        """The model planning now."""
        return self._model

    def _providers(self) -> list[str] | None:
        return list(self.params["providers"] or []) or None

    def _settings(self) -> dict[str, int]:
        return {k: int(self.params[k]) for k in ("samples", "iterations", "horizon", "shards")
                if self.params[k]}

    def _bounds(self) -> tuple[list[float], list[float]]:
        info = self._model.info
        low = self.params["command_low"]
        high = self.params["command_high"]
        return (list(info.action_low) if low is None else list(low),
                list(info.action_high) if high is None else list(high))

    # -- inputs ------------------------------------------------------------------------------
    def _store(self, key: str, sample: InputSample) -> None:
        with self._lock:
            old = self._samples.get(key)
            if old is not None and old.received > sample.received:
                return  # a newer sample of this input was stored by a concurrent callback
            self._samples[key] = sample
            self._new.add(key)
            ready = self._guard is not None and self._set_ready()
        if ready:
            self._guard.set()

    def _set_ready(self) -> bool:
        """Whether a complete new observation set has arrived (call with the lock held).

        A complete set that is not newer than the last planned one (a resent observation) is
        dropped, so its unstamped parts (features) cannot pair with the next observation's
        stamped ones: the next plan waits for all of its own inputs.
        """
        keys = self._model.info.keys
        if not set(keys) <= self._new:
            return False
        stamps = [self._samples[k].stamp for k in keys if k in STAMPED]
        stamps = [s for s in stamps if s is not None]
        if not stamps or self._planned_stamp is None or max(stamps) > self._planned_stamp:
            return True
        self._new.clear()
        return False

    def _on_image(self, msg: Image | CompressedImage) -> None:
        now = time.monotonic()
        stamp = from_stamp(msg.header.stamp)
        info = self._model.info
        try:
            frame = camera_frame(msg, info.image_size)
        except ValueError as exc:
            self._store("image", InputSample(None, now, stamp, str(exc)))
            return
        with self._lock:
            self._stack.push(frame, stamp)
            stacked = self._stack.stacked()
        error = None if stacked is not None else NO_FRAME
        self._store("image", InputSample(stacked, now, stamp, error))

    def _on_joints(self, msg: JointState) -> None:
        now = time.monotonic()
        stamp = from_stamp(msg.header.stamp)
        try:
            sample = InputSample(joint_state_to_array(msg, self._names), now, stamp)
        except ValueError as exc:
            sample = InputSample(None, now, stamp, str(exc))
        self._store("joints", sample)

    def _on_features(self, msg: Float64MultiArray) -> None:
        now = time.monotonic()
        try:
            value = multiarray_to_array(msg, self._model.info.features_dim, "features")
            sample = InputSample(value.astype(np.float32), now)
        except ValueError as exc:
            sample = InputSample(None, now, None, str(exc))
        self._store("features", sample)

    def _on_episode(self, msg: String) -> None:
        """An episode ended: the next one starts at ``next_stamp`` (frame stack, warm start)."""
        try:
            data = json.loads(msg.data)
            start = data.get("next_stamp")
            start = None if start is None else float(start)
        except (ValueError, TypeError, AttributeError):
            self.get_logger().warning(f"ignoring a malformed episode message: {msg.data[:80]!r}")
            return
        with self._lock:
            if self._planned_stamp is None or start is None or self._planned_stamp < start:
                self._t0 = True
            if self._stack is not None and start is not None:
                self._stack.restart(start)
                old = self._samples.get("image")
                if old is not None and old.error in (None, NO_FRAME):
                    stacked = self._stack.stacked()
                    self._samples["image"] = dataclasses.replace(
                        old, value=stacked, error=None if stacked is not None else NO_FRAME)

    # -- planning ----------------------------------------------------------------------------
    def _on_timer(self) -> None:
        now = time.monotonic()
        self.ticks_missed += missed_ticks(1.0 / self.params["rate"], self._last_tick, now)
        self._last_tick = now
        self._tick(now)

    def _on_observation(self) -> None:
        with self._lock:
            ready = self._set_ready()
        if ready:
            self._tick(time.monotonic())

    def _tick(self, start: float) -> None:
        with self._model_lock:
            model = self._model
            info = model.info
            with self._lock:
                samples = dict(self._samples)
                t0, self._t0 = self._t0, False  # consumed here; an episode start may set it
                if self._guard is not None:
                    self._new.clear()
                    stamps = [s.stamp for k in info.keys if k in STAMPED
                              and (s := samples.get(k)) is not None and s.stamp is not None]
                    if stamps:
                        self._planned_stamp = max(stamps)
            reason = input_problem(samples, info.keys, start, self.params["stale_timeout"])
            action = None
            if reason is None:
                obs = {k: samples[k].value for k in info.keys}
                t = time.perf_counter()
                try:
                    action = np.asarray(model.planner.act(obs, t0=t0), dtype=np.float64)
                except Exception as exc:  # noqa: BLE001 - any planner failure -> safe command
                    reason = f"planner failed: {type(exc).__name__}: {exc}"
                else:
                    self.plan_latency.add(time.perf_counter() - t)
                    if action.shape != (info.action_dim,) or not np.all(np.isfinite(action)):
                        reason = f"planner returned an unusable action {action.tolist()}"
            if reason is None:
                low, high = self._bounds()
                command = np.clip(action_to_command(action, info.action_low, info.action_high),
                                  low, high)
                self._last_command = command
            else:
                command = safe_command(self.params["safe_command"], self._last_command,
                                       info.action_dim)
                with self._lock:
                    self._t0 = True  # a warm start from before the outage is stale
            line = self.watchdog.update(reason, start)
            self._pub_cmd.publish(array_msg(command))
            published = time.monotonic()
        received = [s.received for k, s in samples.items() if k in info.keys]
        if received:
            self.command_latency.add(published - max(received))
        self.ticks += 1
        if self._timer and published - start > 1.0 / self.params["rate"]:
            self.overruns += 1
        if line is not None and reason is not None:
            self.get_logger().warning(line)
        elif line is not None:
            self.get_logger().info(line)

    # -- hot swap ----------------------------------------------------------------------------
    def _on_model_update(self, msg: String) -> None:
        self._swapper.submit(self.swap_model, msg.data)

    def swap_model(self, request: str) -> bool:
        """Load, check and dry-run the bundle of a model update, then swap it in.

        ``request`` is the update's JSON ``{path, version, sha256}`` (``sha256``: of the
        bundle's manifest.json, optional). Runs off the control thread; returns whether the
        new model runs now. A refused update is logged and the running model continues.
        """
        try:
            data = json.loads(request)
            if not isinstance(data, dict) or not isinstance(data.get("path"), str):
                raise ValueError("expected JSON {path, version, sha256}")
            path = data["path"]
            version = data.get("version")
            digest = data.get("sha256")
            if digest and manifest_sha256(path) != digest:
                raise ValueError(f"{path}: manifest sha256 does not match the update's")
            planner, manifest = self._factory(path, self._providers(),
                                              self.params["threads"] or None, self._settings())
            info = model_info(manifest, None if version is None else str(version))
            why = self._model.info.same_interface(info)
            if why is not None:
                raise ValueError(why)
            obs = self._current_observation(info)
            action = np.asarray(planner.act(obs, t0=True), dtype=np.float64)
            if action.shape != (info.action_dim,) or not np.all(np.isfinite(action)):
                raise ValueError(f"dry run returned an unusable action {action.tolist()}")
        except Exception as exc:  # noqa: BLE001 - a bad update must never stop control
            self.swap_failures += 1
            self.last_swap_error = f"{type(exc).__name__}: {exc}"
            self.get_logger().error(f"model update refused, the running model continues: "
                                    f"{self.last_swap_error}")
            return False
        with self._model_lock:  # between two ticks
            self._model = ActiveModel(planner, info, path)
            with self._lock:
                self._t0 = True
            self.swaps += 1
        self.get_logger().info(f"model swapped: {path} (version {info.version})")
        return True

    def _current_observation(self, info: ModelInfo) -> dict[str, np.ndarray]:
        """The latest usable observation, else zeros of the model's spec (for a dry run)."""
        with self._lock:
            samples = dict(self._samples)
        if input_problem(samples, info.keys, time.monotonic(), math.inf) is None:
            return {k: samples[k].value for k in info.keys}
        return info.zero_observation()

    # -- parameters --------------------------------------------------------------------------
    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        low, high = self._bounds()
        info = self._model.info
        for prm in params:
            why = check_parameter(prm.name, prm.value)
            if why is not None:
                return SetParametersResult(successful=False, reason=f"{prm.name}: {why}")
            if prm.name == "command_low":
                low = list(info.action_low) if prm.value is None else list(prm.value)
            elif prm.name == "command_high":
                high = list(info.action_high) if prm.value is None else list(prm.value)
        why = check_bounds(low, high, info.action_dim)
        if why is not None:
            return SetParametersResult(successful=False, reason=why)
        return SetParametersResult(successful=True)

    def _after_set_parameters(self, params: list[Parameter]) -> None:
        for prm in params:
            self.params[prm.name] = prm.value
            # the control thread reads ``rate`` at every deadline

    # -- diagnostics -------------------------------------------------------------------------
    def input_ages(self) -> dict[str, float | None]:
        """Seconds since each needed input last arrived (None: never)."""
        now = time.monotonic()
        with self._lock:
            return {k: (now - self._samples[k].received) if k in self._samples else None
                    for k in self._model.info.keys}

    def latency_summary(self) -> dict[str, float]:
        """Planning and end-to-end (input receive -> command publish) latency p50/p99, ms."""
        return {
            "plan_p50_ms": 1e3 * self.plan_latency.percentile(50),
            "plan_p99_ms": 1e3 * self.plan_latency.percentile(99),
            "command_p50_ms": 1e3 * self.command_latency.percentile(50),
            "command_p99_ms": 1e3 * self.command_latency.percentile(99),
            "commands": float(self.command_latency.count),
        }

    def _on_diagnostics(self) -> None:
        info = self._model.info
        level, message = OK, "planning"
        if self.watchdog.tripped:
            level, message = WARN, f"safe command: {self.watchdog.reason}"
        if self.last_swap_error is not None and self.swap_failures and not self.watchdog.tripped:
            message = f"planning; last model update refused: {self.last_swap_error}"
        values: dict[str, Any] = {"model": self._model.path, "model_version": info.version,
                                  "model_precision": info.precision}
        values.update(self.latency_summary())
        for k, age in self.input_ages().items():
            values[f"age_{k}_ms"] = "never" if age is None else 1e3 * age
        values.update({
            "ticks": self.ticks, "ticks_missed": self.ticks_missed,
            "deadline_overruns": self.overruns, "watchdog": self.watchdog.reason or "ok",
            "watchdog_trips": self.watchdog.trips, "swaps": self.swaps,
            "swap_failures": self.swap_failures,
        })
        if not self._samples:
            level, message = WARN, "waiting for the first inputs"
        self._pub_diag.publish(diagnostics(self, "wmil_planner: planner", level, message,
                                           values, hardware_id=info.task))

    def destroy_node(self) -> None:
        """Stop the control thread and the swap worker, then the node."""
        control = getattr(self, "_control", None)
        if control is not None:
            control.stop()
        if self._swapper is not None:
            self._swapper.shutdown(wait=True, cancel_futures=True)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Run ``wmil_planner`` until shut down."""
    try:
        with rclpy.init(args=args):
            try:
                node = PlannerNode()
            except ValueError as exc:
                rclpy.logging.get_logger("wmil_planner").fatal(str(exc))
                return 1
            executor = SingleThreadedExecutor()  # planning runs on the node's control thread
            executor.add_node(node)
            try:
                executor.spin()
            finally:
                executor.shutdown()
                node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    return 0
