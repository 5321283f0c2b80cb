"""wmil_planner over real DDS with fake planners: rate, watchdog, parameters, hot swap, inputs."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from ros_harness import (
    FakePlanner,
    Probe,
    factory,
    pixel_manifest,
    ros_context,
    spinning,
    state_manifest,
    wait_for,
)
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray, String

from wmil.planner_node import ControlThread, PlannerNode
from wmil.planner_params import check_bounds, check_parameter
from wmil.ros_io import SENSOR_QOS, array_msg, joint_state_msg, to_stamp

CMD = "/wmil/commands"
JOINTS = np.float32([0.5, 0.2, 0.0, 0.0])
FEATURES = np.float32([1.0, 0.0, 0.0])
PLANNED = 0.5  # FakePlanner(offset=0) on JOINTS, FEATURES (cartpole bounds are [-1, 1])
PLANNED_B = -0.5  # FakePlanner(offset=-1)
RATE = 20.0


@pytest.fixture(scope="module")
def ctx():
    with ros_context() as c:
        yield c


def make_node(ctx, models=None, load_delay=None, **params) -> PlannerNode:
    values = {"model_dir": "A", "rate": RATE, "stale_timeout": 0.3, **params}
    models = models or {"A": (FakePlanner, state_manifest())}
    return PlannerNode(planner_factory=factory(models, load_delay), context=ctx,
                       parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])


class Feeder:
    """Publishes joint states and features at 50 Hz from a thread; values can change live."""

    def __init__(self, probe: Probe) -> None:
        self.names = ["slider", "hinge_1"]
        self.joints = JOINTS
        self.features = FEATURES
        self.paused = threading.Event()
        self._stop = threading.Event()
        self._js = probe.publisher("/joint_states", JointState)
        self._ft = probe.publisher("/wmil/features", Float64MultiArray)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            if not self.paused.is_set():
                self._js.publish(joint_state_msg(self.names, self.joints, time.monotonic()))
                self._ft.publish(array_msg(self.features))

    @contextlib.contextmanager
    def running(self) -> Iterator[Feeder]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=2)


def last_command(probe: Probe) -> float | None:
    msgs = probe.messages(CMD)
    return msgs[-1].data[0] if msgs else None


def commands_become(probe: Probe, value: float, timeout: float = 5.0) -> None:
    wait_for(lambda: last_command(probe) == value, timeout)


def test_parameter_checks_are_pure():
    assert check_parameter("rate", 10.0) is None
    assert "> 0" in check_parameter("rate", 0.0)
    assert "timer, observation" in check_parameter("trigger", "sometimes")
    assert "zeros, hold" in check_parameter("safe_command", "brake")
    assert "finite" in check_parameter("command_low", [float("nan")])
    assert check_bounds([-1.0], [1.0], 1) is None
    assert "needs 2 values" in check_bounds([-1.0], [1.0], 2)
    assert "below" in check_bounds([1.0], [1.0], 1)


def test_startup_refuses_bad_parameters(ctx):
    with pytest.raises(ValueError, match="trigger: must be one of timer, observation"):
        make_node(ctx, trigger="sometimes")
    with pytest.raises(ValueError, match="command_low: needs 1 values"):
        make_node(ctx, command_low=[-1.0, -1.0])
    with pytest.raises(ValueError, match="corrupt"):
        make_node(ctx, model_dir="missing")


def test_timer_mode_rate_then_stale_watchdog_and_resume(ctx):
    node = make_node(ctx)
    probe = Probe(ctx)
    probe.listen(CMD, Float64MultiArray)
    probe.listen("/diagnostics", DiagnosticArray)
    with spinning(ctx, node, probe), Feeder(probe).running() as feed:
        commands_become(probe, PLANNED)
        n0 = len(probe.messages(CMD))
        time.sleep(1.0)
        n = len(probe.messages(CMD)) - n0
        assert 0.7 * RATE <= n <= 1.2 * RATE, n  # 20 Hz, jitter tolerated

        trips = node.watchdog.trips  # one already: no input before the feeder started
        feed.paused.set()  # inputs go stale: the safe command (zeros) within stale_timeout
        commands_become(probe, 0.0, timeout=2.0)
        assert node.watchdog.tripped and "stale" in node.watchdog.reason

        def stale_reported():
            for arr in probe.messages("/diagnostics"):
                for st in arr.status:
                    values = {kv.key: kv.value for kv in st.values}
                    if st.name == "wmil_planner: planner" and "stale" in values["watchdog"]:
                        return st
            return None

        status = wait_for(stale_reported, timeout=3.0)
        assert status.level == DiagnosticStatus.WARN
        keys = {kv.key for kv in status.values}
        assert {"plan_p50_ms", "plan_p99_ms", "age_joints_ms", "age_features_ms",
                "model_version", "model_precision", "ticks_missed", "deadline_overruns"} <= keys
        assert {kv.key: kv.value for kv in status.values}["model_precision"] == "float32"

        feed.paused.clear()  # fresh again: planning resumes
        commands_become(probe, PLANNED)
        assert not node.watchdog.tripped and node.watchdog.trips == trips + 1

        node.set_parameters([Parameter("safe_command", value="hold")])
        feed.paused.set()
        wait_for(lambda: node.watchdog.tripped, timeout=2.0)
        time.sleep(0.2)
        assert last_command(probe) == PLANNED  # held, not zeroed
    assert node.command_latency.count > 0 and node.plan_latency.count > 0


def test_non_finite_and_missing_joint_trigger_the_watchdog(ctx):
    node = make_node(ctx)
    probe = Probe(ctx)
    probe.listen(CMD, Float64MultiArray)
    with spinning(ctx, node, probe), Feeder(probe).running() as feed:
        commands_become(probe, PLANNED)
        feed.features = np.float32([1.0, np.nan, 0.0])
        commands_become(probe, 0.0)
        assert node.watchdog.reason == "features: features has a non-finite value"
        feed.features = FEATURES
        commands_become(probe, PLANNED)
        feed.names = ["slider", "elbow"]  # a joint the model needs is missing: no crash
        commands_become(probe, 0.0)
        assert "no joint 'hinge_1'" in node.watchdog.reason
        feed.names = ["extra", "hinge_1", "slider"]  # extra joints are fine, order is by name
        feed.joints = np.float32([7.0, 0.2, 0.5, 0.0, 0.0, 0.0])
        commands_become(probe, PLANNED)


def test_joint_names_map_the_robots_joints_to_the_models(ctx):
    with pytest.raises(ValueError, match=r"joint_names: the model has 2 joints .*got 3"):
        make_node(ctx, joint_names=["a", "b", "c"])
    node = make_node(ctx, joint_names=["rail", "pole"])  # robot names of slider, hinge_1
    probe = Probe(ctx)
    probe.listen(CMD, Float64MultiArray)
    with spinning(ctx, node, probe), Feeder(probe).running() as feed:
        feed.names = ["pole", "gripper", "rail"]  # the robot's order, one joint more
        feed.joints = np.float32([0.2, 7.0, 0.5, 0.0, 0.0, 0.0])
        commands_become(probe, PLANNED)  # the model saw (slider, hinge_1) = (0.5, 0.2)
        assert node.model.planner.calls[-1][0]["joints"].tolist() == pytest.approx(
            JOINTS.tolist())
        feed.names = ["slider", "gripper", "hinge_1"]  # the model's names are not the robot's
        commands_become(probe, 0.0)
        assert "no joint 'rail'" in node.watchdog.reason


def test_parameter_updates_are_validated_with_a_reason(ctx):
    node = make_node(ctx)
    probe = Probe(ctx)
    with spinning(ctx, node, probe):
        client = AsyncParameterClient(probe, "wmil_planner")
        assert client.wait_for_services(timeout_sec=5.0)

        def set_remote(**values):
            future = client.set_parameters([Parameter(k, value=v) for k, v in values.items()])
            return wait_for(lambda: future.done() and future.result()).results[0]

        res = set_remote(rate=-1.0)
        assert not res.successful and "rate" in res.reason
        res = set_remote(safe_command="brake")
        assert not res.successful and res.reason == \
            "safe_command: must be one of zeros, hold, got 'brake'"
        res = set_remote(command_low=[-1.0, 0.0])
        assert not res.successful and "needs 1 values" in res.reason
        res = set_remote(command_high=[-2.0])
        assert not res.successful and "below" in res.reason
        res = set_remote(model_dir="B")
        assert not res.successful and "read-only" in res.reason
        assert node.params["rate"] == RATE
        res = set_remote(rate=50.0)
        assert res.successful and node.params["rate"] == 50.0
        n0, t0 = node.ticks, time.monotonic()  # the control loop runs at the new rate at once
        time.sleep(1.0)
        rate = (node.ticks - n0) / (time.monotonic() - t0)
        assert 35.0 < rate < 55.0, rate  # was 20 Hz


def test_control_thread_keeps_its_rate_skips_overruns_and_survives_errors():
    calls: list[float] = []

    def tick() -> None:
        calls.append(time.monotonic())
        if len(calls) == 3:
            time.sleep(0.25)  # an overrun of 5 periods: the missed deadlines are skipped
        if len(calls) == 5:
            raise RuntimeError("boom")

    errors: list[BaseException] = []
    loop = ControlThread(tick, period=lambda: 0.05, on_error=errors.append)
    loop.start()
    time.sleep(1.0)
    loop.stop()
    n = len(calls)
    gaps = np.diff(calls)
    assert 12 <= n <= 17, n  # 1 s at 20 Hz less the 0.25 s overrun
    assert gaps[2] >= 0.25 and np.all(np.delete(gaps, 2) > 0.02)  # no burst after the overrun
    assert len(errors) == 1 and n > 5  # the error was reported and ticking went on
    time.sleep(0.15)
    assert len(calls) == n  # stopped

    wake = threading.Event()
    seen: list[int] = []
    loop = ControlThread(lambda: seen.append(1), wake=wake)
    loop.start()
    for i in range(3):
        wake.set()
        wait_for(lambda n=i + 1: len(seen) >= n, timeout=2.0)
    loop.stop()
    assert len(seen) == 3
    with pytest.raises(ValueError, match="exactly one"):
        ControlThread(tick)


def test_command_clipping(ctx):
    node = make_node(ctx, command_high=[0.25])
    probe = Probe(ctx)
    probe.listen(CMD, Float64MultiArray)
    with spinning(ctx, node, probe), Feeder(probe).running():
        commands_become(probe, 0.25)


def test_hot_swap_without_missed_ticks_and_bad_updates_refused(ctx, tmp_path: Path):
    slow_b = 1.0  # a long load: control must go on at its rate while it runs
    models = {
        "A": (FakePlanner, state_manifest(version=1)),
        "B": (lambda: FakePlanner(offset=-1.0, delay=0.005), state_manifest(version=2)),
        "other-joints": (FakePlanner, state_manifest(joint_names=("x", "y"))),
    }
    node = make_node(ctx, models=models, load_delay={"B": slow_b})
    probe = Probe(ctx)
    probe.listen(CMD, Float64MultiArray)
    update = probe.publisher("/wmil/model_updates", String)
    with spinning(ctx, node, probe), Feeder(probe).running():
        commands_become(probe, PLANNED)
        start = len(probe.messages(CMD))
        sent = time.monotonic()
        update.publish(String(data=json.dumps({"path": "B", "version": "7"})))
        commands_become(probe, PLANNED_B, timeout=5.0)
        time.sleep(0.2)
        times = np.array(probe.times(CMD)[start:])
        # Loading blocks nothing: commands keep coming during the whole load (a blocking load
        # would leave a gap of at least slow_b). Tolerances absorb a shared machine's hiccups.
        during = times[(times > sent) & (times < sent + slow_b)]
        assert len(during) >= 0.5 * slow_b * RATE, len(during)
        assert np.diff(times).max() < 0.5 * slow_b, np.diff(times).max()
        assert node.swaps == 1 and node.model.info.version == "7" and node.model.path == "B"

        bad = [json.dumps({"path": "corrupt", "version": "8"}), "not json",
               json.dumps({"path": "other-joints"})]
        (tmp_path / "manifest.json").write_text("{}")
        bad.append(json.dumps({"path": str(tmp_path), "sha256": "0" * 64}))
        for req in bad:
            update.publish(String(data=req))
        wait_for(lambda: node.swap_failures == len(bad), timeout=5.0)
        # each refusal for its own reason (the same requests, one at a time, called directly)
        reasons = ["corrupt", "JSONDecodeError", "joint names", "manifest sha256 does not match"]
        for req, reason in zip(bad, reasons):
            assert node.swap_model(req) is False
            assert reason in node.last_swap_error, (reason, node.last_swap_error)
        assert node.swap_failures == 2 * len(bad)
        n = len(probe.messages(CMD))
        time.sleep(0.3)
        assert len(probe.messages(CMD)) > n and last_command(probe) == PLANNED_B
        assert node.model.path == "B" and node.swaps == 1
    # a matching sha256 of manifest.json is accepted
    digest = hashlib.sha256((tmp_path / "manifest.json").read_bytes()).hexdigest()
    node2 = make_node(ctx, models={**models, str(tmp_path): models["A"]})
    try:
        assert node2.swap_model(json.dumps({"path": str(tmp_path), "sha256": digest}))
    finally:
        node2.destroy_node()


def test_observation_trigger_plans_once_per_new_observation(ctx):
    node = make_node(ctx, trigger="observation")
    probe = Probe(ctx)
    probe.listen(CMD, Float64MultiArray)
    js = probe.publisher("/joint_states", JointState)
    ft = probe.publisher("/wmil/features", Float64MultiArray)
    with spinning(ctx, node, probe):
        wait_for(lambda: js.get_subscription_count() and ft.get_subscription_count())

        def send(stamp: float) -> None:
            js.publish(joint_state_msg(["slider", "hinge_1"], JOINTS, stamp))
            ft.publish(array_msg(FEATURES))

        send(1.0)
        wait_for(lambda: len(probe.messages(CMD)) == 1)
        send(1.0)  # a resent observation (same stamp) is not planned on again
        time.sleep(0.4)  # longer than stale_timeout: the resent features are stale now
        assert len(probe.messages(CMD)) == 1
        # the next observation waits for its own features: pairing the new joints with the
        # resent (now stale) features would publish the safe command
        js.publish(joint_state_msg(["slider", "hinge_1"], JOINTS, 1.04))
        wait_for(lambda: node._samples["joints"].stamp == 1.04)
        time.sleep(0.1)
        assert len(probe.messages(CMD)) == 1
        ft.publish(array_msg(FEATURES))
        wait_for(lambda: len(probe.messages(CMD)) == 2)
        assert [m.data[0] for m in probe.messages(CMD)] == [PLANNED, PLANNED]
        time.sleep(0.5)  # no timer: nothing more, even after stale_timeout
        assert len(probe.messages(CMD)) == 2


def test_images_are_converted_resized_and_stacked(ctx):
    planner = FakePlanner(dim=2)
    node = make_node(ctx, models={"P": (lambda: planner, pixel_manifest(size=16, frames=3))},
                     model_dir="P", trigger="observation")
    probe = Probe(ctx)
    probe.listen(CMD, Float64MultiArray)
    img = probe.publisher("/camera/image_raw", Image, SENSOR_QOS)
    js = probe.publisher("/joint_states", JointState)
    episode = probe.publisher("/wmil/episode", String)
    frames = [np.full((32, 24, 3), v, np.uint8) for v in (10, 20, 30)]
    with spinning(ctx, node, probe):
        wait_for(lambda: img.get_subscription_count() and js.get_subscription_count()
                 and episode.get_subscription_count())
        for i, frame in enumerate(frames):
            stamp = 1.0 + i
            if i == 2:  # a new episode starts at stamp 3.0: its first frame fills the stack
                episode.publish(String(data=json.dumps({"episode": 0, "next_stamp": stamp})))
                wait_for(lambda: node._t0)
            bgr = frame[..., ::-1]  # bgr8 with 5 bytes of row padding
            rows = np.concatenate([bgr.reshape(32, 72), np.zeros((32, 5), np.uint8)], axis=1)
            msg = Image(height=32, width=24, encoding="bgr8", step=77, data=rows.tobytes())
            msg.header.stamp = to_stamp(stamp)
            img.publish(msg)
            js.publish(joint_state_msg(["shoulder", "wrist"], np.zeros(4, np.float32), stamp))
            wait_for(lambda n=i + 1: len(probe.messages(CMD)) == n)
    (first, t0_first), (second, t0_second), (third, t0_third) = planner.calls
    assert second["image"].shape == (16, 16, 9) and second["image"].dtype == np.uint8
    np.testing.assert_array_equal(first["image"][0, 0], [10] * 9)
    np.testing.assert_array_equal(second["image"][0, 0], [10, 10, 10, 10, 10, 10, 20, 20, 20])
    np.testing.assert_array_equal(third["image"][0, 0], [30] * 9)
    assert [t0_first, t0_second, t0_third] == [True, False, True]  # no warm start across episodes
