"""Cartesian velocity control of the Jaco (controller: cartesian, wmil_core.tasks.cartesian)."""

import dataclasses

import numpy as np
import pytest

from wmil_core.experts.base import make_expert
from wmil_core.symmetry import symmetry_of
from wmil_core.tasks import WmilEnv, make_env
from wmil_core.tasks.cartesian import VMAX
from wmil_core.tasks.spec import TaskSpec, get_task

TASK = "jaco/reach-site-cartesian"


def test_actions_are_the_pinch_sites_velocity_and_the_hand_keeps_its_orientation():
    env = make_env(TASK, "state", seed=2)
    assert env.action_space.shape == (3,)
    np.testing.assert_array_equal(env.action_low, [-VMAX] * 3)
    np.testing.assert_array_equal(env.action_high, [VMAX] * 3)
    env.reset(seed=2)
    ctl = env.controller
    start_rot = ctl.data.site_xmat[ctl.tcp].reshape(3, 3).copy()
    for action in ([0.5, 0.0, 0.0], [0.0, -0.5, 0.0], [0.0, 0.0, 0.5]):
        a = np.asarray(action, np.float32)
        for _ in range(3):  # the velocity actuators settle
            env.step(a)
        before = env.controller.tcp_position.copy()
        for _ in range(5):
            env.step(a)
        moved = (env.controller.tcp_position - before) / (5 * 0.04)  # m/s over 0.2 s
        want = a * VMAX  # 0.15 m/s along one axis
        assert np.linalg.norm(moved - want) < 0.3 * np.linalg.norm(want), (action, moved)
    rot = ctl.data.site_xmat[ctl.tcp].reshape(3, 3)
    angle = np.arccos(np.clip((np.trace(start_rot.T @ rot) - 1) / 2, -1, 1))
    assert angle < 0.1  # radians, after 24 steps of motion
    with pytest.raises(ValueError, match="action has shape"):
        env.step(np.zeros(6, np.float32))


def test_the_expert_reaches_through_either_interface_and_they_agree():
    """At the same state the joint task's expert action is the Cartesian expert's velocity put
    through the controller: one expert, two interfaces; both reach the target."""
    joint, cart = make_env("jaco/reach-site", "state", seed=7), make_env(TASK, "state", seed=7)
    ej, ec = make_expert("jaco/reach-site"), make_expert(TASK)
    oj, _ = joint.reset(seed=7)
    oc, _ = cart.reset(seed=7)
    ej.reset(joint)
    ec.reset(cart)
    for t in range(120):
        aj, ac = ej.act(oj), ec.act(oc)
        assert ac.shape == (3,) and np.abs(ac).max() <= 1.0 + 1e-9
        if t < 40:  # the same physics so far: the same decision through both interfaces
            qd = cart.controller.joint_velocities(ac * VMAX)
            low, high = joint.action_low, joint.action_high
            np.testing.assert_allclose(aj, 2.0 * (qd - low) / (high - low) - 1.0, atol=1e-6)
        oj, oc = joint.step(aj)[0], cart.step(ac)[0]
    for obs in (oj, oc):
        assert np.linalg.norm(obs["features"][6:9]) < 0.05  # within the success radius


def test_cartesian_control_is_refused_where_it_cannot_work():
    with pytest.raises(ValueError, match="controller must be joint or cartesian"):
        TaskSpec(name="jaco/x", family="jaco", env_id="x", controller="torque")
    with pytest.raises(ValueError, match="controller cartesian drives a Jaco arm"):
        TaskSpec(name="dmc/x", family="dmc", env_id="x", controller="cartesian")
    with pytest.raises(ValueError, match="reach-site-cartesian declares no symmetry"):
        symmetry_of(make_env(TASK, "state", seed=0), option="canonical_frame")
    turned = dataclasses.replace(get_task(TASK), symmetry=get_task("jaco/reach-site").symmetry)
    with pytest.raises(ValueError, match="actions are cartesian velocities"):
        symmetry_of(WmilEnv(turned, seed=0), option="canonical_frame")
