"""Shared by the ROS node tests: an isolated rclpy context, a probe node, fake planners."""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

CARTPOLE = "dmc/cartpole-swingup"  # joints [slider, hinge_1], 3 features, 1 actuator in [-1, 1]
W = np.array([0.3, -0.7, 0.2, 0.1, 0.5, -0.4, 0.25])


@contextlib.contextmanager
def ros_context() -> Iterator[rclpy.Context]:
    """An rclpy context on a random ROS domain of its own (no cross-talk between modules)."""
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=random.randint(110, 190))
    try:
        yield context
    finally:
        rclpy.shutdown(context=context)


@contextlib.contextmanager
def spinning(context: rclpy.Context, *nodes: Node) -> Iterator[SingleThreadedExecutor]:
    """Spin ``nodes`` on one executor thread in the background; destroy them after."""
    executor = SingleThreadedExecutor(context=context)
    for n in nodes:
        executor.add_node(n)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        yield executor
    finally:
        executor.shutdown()
        thread.join(timeout=5)
        for n in reversed(nodes):
            n.destroy_node()


def wait_for(pred: Callable[[], Any], timeout: float = 5.0, period: float = 0.01) -> Any:
    """Poll ``pred`` until it is truthy (returned) or ``timeout`` s pass (AssertionError)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        time.sleep(period)
    raise AssertionError(f"condition not met within {timeout} s")


class Probe(Node):
    """A test node: records messages (with receive times) and publishes on any topic."""

    def __init__(self, context: rclpy.Context) -> None:
        super().__init__(f"probe_{random.randint(0, 10**6)}", context=context)
        self.received: dict[str, list[tuple[float, Any]]] = {}
        self._pubs: dict[str, Any] = {}
        self._lock = threading.Lock()

    def listen(self, topic: str, kind: type, qos: Any = 10) -> None:
        """Record every message of ``topic``."""
        self.received[topic] = []

        def cb(msg: Any) -> None:
            with self._lock:
                self.received[topic].append((time.monotonic(), msg))

        self.create_subscription(kind, topic, cb, qos)

    def messages(self, topic: str) -> list[Any]:
        """The messages of ``topic`` received so far."""
        with self._lock:
            return [m for _, m in self.received[topic]]

    def times(self, topic: str) -> list[float]:
        """Their receive times (monotonic s)."""
        with self._lock:
            return [t for t, _ in self.received[topic]]

    def publisher(self, topic: str, kind: type, qos: Any = 10) -> Any:
        """A (cached) publisher of ``topic``."""
        if topic not in self._pubs:
            self._pubs[topic] = self.create_publisher(kind, topic, qos)
        return self._pubs[topic]


# -- fake planners -----------------------------------------------------------------------------
def state_manifest(task: str = CARTPOLE, joint_names: Sequence[str] = ("slider", "hinge_1"),
                   features: int = 3, version: Any = 1) -> dict[str, Any]:
    """A manifest (runtime bundle layout) of a state model with joints and features."""
    return {
        "task": task, "obs_mode": "state", "training": {"step": version},
        "observation": {
            "spec": {"joints": {"shape": [2 * len(joint_names)], "dtype": "float32"},
                     "features": {"shape": [features], "dtype": "float32"}},
            "joint_names": list(joint_names)},
        "action": {"dim": 1, "low": [-1.0], "high": [1.0]},
    }


def pixel_manifest(size: int = 16, frames: int = 3) -> dict[str, Any]:
    """A manifest of a pixels+joints model with 2 actuators in [-2, 2]."""
    return {
        "task": "dmc/reacher-easy", "obs_mode": "pixels+joints",
        "observation": {
            "spec": {"image": {"shape": [size, size, 3 * frames], "dtype": "uint8"},
                     "joints": {"shape": [4], "dtype": "float32"}},
            "joint_names": ["shoulder", "wrist"], "image": {"size": size, "frames": frames}},
        "action": {"dim": 2, "low": [-2.0, -2.0], "high": [2.0, 2.0]},
    }


class FakePlanner:
    """A deterministic numpy policy of the observation: a = round(8 tanh(w.x + offset)) / 8.

    Actions are multiples of 1/8, exact through every float64/float32 conversion on the way
    to the simulator. ``delay`` makes each act slow; ``calls`` records what it saw.
    """

    def __init__(self, offset: float = 0.0, delay: float = 0.0, dim: int = 1) -> None:
        self.offset = offset
        self.delay = delay
        self.dim = dim
        self.calls: list[tuple[dict[str, np.ndarray], bool]] = []

    def act(self, obs: Mapping[str, np.ndarray], t0: bool = False) -> np.ndarray:
        self.calls.append((dict(obs), t0))
        if self.delay:
            time.sleep(self.delay)
        if "features" in obs:
            x = np.concatenate([obs["joints"], obs["features"]]).astype(np.float64)
            s = float(W[: x.size] @ x)
        else:
            s = float(obs["joints"].astype(np.float64).sum())
        a = np.round(8 * np.tanh(np.full(self.dim, s + self.offset))) / 8
        return np.clip(a, -1, 1).astype(np.float32)


def factory(models: Mapping[str, tuple[Callable[[], FakePlanner], dict[str, Any]]],
            load_delay: Mapping[str, float] | None = None) -> Callable[..., Any]:
    """A planner factory serving fake models by path; unknown paths raise ValueError."""
    def make(path: str, providers: Any = None, threads: Any = None, settings: Any = None
             ) -> tuple[FakePlanner, dict[str, Any]]:
        if path not in models:
            raise ValueError(f"{path}: not a model bundle (corrupt)")
        time.sleep((load_delay or {}).get(path, 0.0))
        build, manifest = models[path]
        return build(), manifest

    return make
