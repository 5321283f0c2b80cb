"""wmil_sim over real DDS: lockstep stepping, refused commands, episode ends, realtime mode."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from rclpy.parameter import Parameter
from ros_harness import CARTPOLE, Probe, ros_context, spinning, wait_for
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray, String

from wmil.ros_io import SENSOR_QOS, from_stamp
from wmil.sim_node import SimNode
from wmil_core.messages import image_to_array, joint_state_to_array
from wmil_core.tasks import make_env

NAMES = ["slider", "hinge_1"]
DT = 0.02  # cartpole: control_dt 0.01 x action_repeat 2


@pytest.fixture(scope="module")
def ctx():
    with ros_context() as c:
        yield c


def make_sim(ctx, **params) -> SimNode:
    values = {"task": CARTPOLE, "seed": 1, "resend_period": 0.2, **params}
    return SimNode(context=ctx,
                   parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])


def listening(ctx) -> Probe:
    probe = Probe(ctx)
    probe.listen("/joint_states", JointState)
    probe.listen("/wmil/features", Float64MultiArray)
    probe.listen("/camera/image_raw", Image, SENSOR_QOS)
    probe.listen("/clock", Clock)
    probe.listen("/wmil/episode", String)
    return probe


def by_stamp(probe: Probe) -> dict[float, np.ndarray]:
    """Joint observations by stamp (resent copies of one observation must be identical)."""
    out: dict[float, np.ndarray] = {}
    for m in probe.messages("/joint_states"):
        stamp = round(from_stamp(m.header.stamp), 9)
        q = joint_state_to_array(m, NAMES)
        if stamp in out:
            np.testing.assert_array_equal(out[stamp], q)
        out[stamp] = q
    return out


def reference(seed: int, commands: list[float], episode_length: int) -> tuple[list, dict]:
    """The same commands applied in-process: joint observations and the last info."""
    env = make_env(CARTPOLE, "state", seed=seed, episode_length=episode_length)
    obs, _ = env.reset(seed=seed)
    seen, info = [obs["joints"]], {}
    for u in commands:
        obs, _, term, trunc, info = env.step(np.float32([u]))
        seen.append(obs["joints"])
        if term or trunc:
            break
    env.close()
    return seen, info


def test_bad_parameters_are_refused(ctx):
    with pytest.raises(ValueError, match="mode: must be lockstep or realtime"):
        make_sim(ctx, mode="fast")
    with pytest.raises(ValueError, match="task: set a task"):
        make_sim(ctx, task="")


def test_lockstep_one_step_per_command_deterministic_and_refusals(ctx):
    sim = make_sim(ctx, episode_length=50)
    probe = listening(ctx)
    commands = [0.5, -0.25, 1.0, 0.0]
    with spinning(ctx, sim, probe):
        wait_for(lambda: probe.messages("/joint_states"))  # first observation (resent)
        pub = probe.publisher("/wmil/commands", Float64MultiArray)
        wait_for(lambda: pub.get_subscription_count())
        for u in commands:  # a burst: lockstep queues them, one step each
            pub.publish(Float64MultiArray(data=[u]))
        wait_for(lambda: sim.core.total_steps == len(commands))
        pub.publish(Float64MultiArray(data=[0.1, 0.2]))  # wrong length
        pub.publish(Float64MultiArray(data=[float("nan")]))  # non-finite
        wait_for(lambda: sim.refused == 2)
        last = DT * len(commands)
        wait_for(lambda: max(by_stamp(probe)) >= last - 1e-9)
        time.sleep(0.3)  # nothing else happens: exactly N steps for N valid commands
        assert sim.core.total_steps == len(commands)
        seen = by_stamp(probe)
        clocks = [from_stamp(m.clock) for m in probe.messages("/clock")]
        images = probe.messages("/camera/image_raw")
        features = probe.messages("/wmil/features")
    want, _ = reference(1, commands, 50)
    assert sorted(seen) == pytest.approx([DT * i for i in range(len(commands) + 1)])
    for (_, q), w in zip(sorted(seen.items()), want, strict=True):
        np.testing.assert_array_equal(q, w)  # bit-exact against the in-process env
    assert max(clocks) == pytest.approx(last)
    assert images and {round(from_stamp(m.header.stamp), 9) for m in images} <= set(seen)
    assert image_to_array(images[-1]).shape == (64, 64, 3) and images[-1].encoding == "rgb8"
    assert features and len(features[-1].data) == 3


def test_episode_end_json_and_next_episode_seed(ctx):
    sim = make_sim(ctx, episode_length=3, episodes=2, seed=5)
    probe = listening(ctx)
    commands = [0.75, -0.5, 0.25]
    with spinning(ctx, sim, probe):
        wait_for(lambda: probe.messages("/joint_states"))
        pub = probe.publisher("/wmil/commands", Float64MultiArray)
        wait_for(lambda: pub.get_subscription_count())
        for u in commands:
            pub.publish(Float64MultiArray(data=[u]))
        wait_for(lambda: probe.messages("/wmil/episode"))
        first = json.loads(probe.messages("/wmil/episode")[0].data)
        start = first["next_stamp"]
        wait_for(lambda: any(abs(s - start) < 1e-9 for s in by_stamp(probe)))
        for u in commands:
            pub.publish(Float64MultiArray(data=[u]))
        wait_for(lambda: len(probe.messages("/wmil/episode")) == 2)
        second = json.loads(probe.messages("/wmil/episode")[1].data)
        seen = by_stamp(probe)
        assert sim.done
    _, info = reference(5, commands, 3)
    assert first == {"episode": 0, "seed": 5, "steps": 3, "return": info["episode_return"],
                     "success": None, "terminated": False, "next_stamp": pytest.approx(3 * DT)}
    assert second["episode"] == 1 and second["seed"] == 6 and second["next_stamp"] is None
    next_first, _ = reference(6, [], 3)
    np.testing.assert_array_equal(seen[round(start, 9)], next_first[0])  # reset with seed + 1
    # the final observation of an episode is never published (nobody acts on it)
    assert sorted(seen) == pytest.approx([0.0, DT, 2 * DT, 3 * DT, 4 * DT, 5 * DT])


def test_realtime_steps_on_a_wall_clock_timer(ctx):
    sim = make_sim(ctx, mode="realtime", rate=50.0, publish_image=False,
                   hold_last_command=True)
    probe = Probe(ctx)
    with spinning(ctx, sim, probe):
        pub = probe.publisher("/wmil/commands", Float64MultiArray)
        wait_for(lambda: pub.get_subscription_count())
        pub.publish(Float64MultiArray(data=[0.5]))
        wait_for(lambda: sim.core.total_steps > 0)
        n0, t0 = sim.core.total_steps, time.monotonic()
        time.sleep(0.6)
        rate = (sim.core.total_steps - n0) / (time.monotonic() - t0)
        assert 30 <= rate <= 60, rate
        np.testing.assert_array_equal(sim._last_command, [0.5])  # held without new commands
