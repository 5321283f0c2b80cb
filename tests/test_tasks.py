"""Every task family builds, resets and steps in each observation mode; seeded runs repeat."""

import numpy as np
import pytest

from wmil_core.tasks import get_task, make_env, registry
from wmil_core.tasks.spec import TaskSpec

FAMILY_TASKS = [
    "dmc/cartpole-swingup",
    "dmc/reacher-easy",
    "dmc/walker-walk",
    "jaco/reach-site",
    "jaco/reach-duplo",
    "jaco/lift-brick",
    "myo/key-turn",
    "myo/obj-hold",
    "myo/pen-twirl",
]

REQUIRED = [
    *(f"dmc/{t}" for t in ["cartpole-swingup", "reacher-easy", "reacher-hard", "walker-walk",
                           "walker-run", "cheetah-run", "hopper-hop", "humanoid-walk", "dog-walk"]),
    "jaco/reach-site", "jaco/reach-duplo", "jaco/lift-brick",
    "myo/key-turn", "myo/obj-hold", "myo/pen-twirl",
]


def test_registry_names():
    names = registry()
    for name in REQUIRED:
        assert name in names
    from dm_control import suite

    dmc = [n for n in names if n.startswith("dmc/")]
    assert len(dmc) == len(suite.ALL_TASKS)
    assert get_task("dmc/cartpole-swingup").env_id == "cartpole:swingup"
    assert get_task("dmc/ball-in-cup-catch").env_id == "ball_in_cup:catch"
    assert get_task("dmc/reacher-easy").action_repeat == 2
    assert get_task("jaco/reach-site").action_repeat == 1


def test_unknown_task_suggests():
    with pytest.raises(ValueError, match="did you mean dmc/cartpole-swingup"):
        get_task("dmc/cartpole-swingpu")


def test_spec_validation():
    with pytest.raises(ValueError, match="action_repeat"):
        TaskSpec(name="x", family="dmc", env_id="a:b", action_repeat=0)
    with pytest.raises(ValueError, match="observation mode"):
        TaskSpec(name="x", family="dmc", env_id="a:b", modes=("video",))


@pytest.mark.parametrize("task", FAMILY_TASKS)
@pytest.mark.parametrize("mode", ["state", "pixels", "pixels+joints"])
def test_construct_reset_step(task, mode):
    env = make_env(task, mode, seed=0)
    obs, info = env.reset()
    want = {"state": {"joints", "features"}, "pixels": {"image"},
            "pixels+joints": {"image", "joints"}}[mode]
    assert set(obs) == want
    assert env.observation_space.contains(obs)
    a = env.action_space.sample()
    obs2, reward, terminated, truncated, info = env.step(a)
    assert reward == 0.0  # reward-free: the learner never sees the simulator's reward
    assert np.isfinite(info["reward"])
    assert env.observation_space.contains(obs2)
    if "joints" in obs:
        assert obs["joints"].shape == (2 * len(env.joint_names),)
    if "image" in obs:
        assert obs["image"].shape == (64, 64, 9) and obs["image"].dtype == np.uint8
    env.close()


@pytest.mark.parametrize("task", ["dmc/cartpole-swingup", "jaco/reach-site", "myo/key-turn"])
def test_pixels_vary_and_follow_state(task):
    env = make_env(task, "pixels", seed=1)
    obs, _ = env.reset()
    img0 = obs["image"]
    assert img0.std() > 5.0, "frame is (nearly) constant"
    # the stack starts as copies of the first frame, then shifts in new frames
    assert np.array_equal(img0[..., :3], img0[..., 6:])
    for _ in range(25):  # push hard one way: the robot must visibly move
        obs, *_ = env.step(np.ones(env.action_space.shape))
    img = obs["image"]
    assert np.abs(img[..., 6:].astype(int) - img0[..., 6:].astype(int)).mean() > 0.5
    # same state -> same frame: reset with the same seed reproduces the first image
    again, _ = env.reset(seed=1)
    first, _ = make_env(task, "pixels", seed=1).reset()
    assert np.array_equal(again["image"], first["image"])
    env.close()


# MyoSuite's *Fixed-v0 tasks start every episode from the same state: seeds cannot differ
@pytest.mark.parametrize("task, seeds_differ",
                         [("dmc/reacher-easy", True), ("jaco/reach-duplo", True),
                          ("myo/obj-hold", False)])
def test_seeded_runs_repeat_exactly(task, seeds_differ):
    def run(seed):
        env = make_env(task, "state", seed=seed)
        rng = np.random.default_rng(7)
        obs, _ = env.reset()
        out = [obs["joints"], obs["features"]]
        for _ in range(20):
            obs, _, _, _, info = env.step(rng.uniform(-1, 1, env.action_space.shape))
            out += [obs["joints"], obs["features"], np.array([info["reward"]])]
        return np.concatenate(out)

    a, b, c = run(3), run(3), run(4)
    assert np.array_equal(a, b)
    assert np.array_equal(a, c) != seeds_differ


def test_episode_length_and_truncation():
    env = make_env("dmc/cartpole-swingup", "state", seed=0)
    assert env.episode_length == 500
    env.reset()
    steps, total = 0, 0.0
    while True:
        _, _, term, trunc, info = env.step(np.zeros(1))
        steps += 1
        total += info["reward"]
        if term or trunc:
            break
    assert steps == 500 and trunc and not term
    assert total > 0 and info["episode_return"] == pytest.approx(total)
    env.reset()  # the running return starts again
    _, _, _, _, info = env.step(np.zeros(1))
    assert info["episode_return"] == pytest.approx(info["reward"])


def test_bad_action_is_refused():
    env = make_env("dmc/reacher-easy", "state", seed=0)
    env.reset()
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3))
    with pytest.raises(ValueError, match="non-finite"):
        env.step(np.array([np.nan, 0.0]))


def test_actions_map_to_actuator_range():
    env = make_env("jaco/lift-brick", "state", seed=0)
    env.reset()
    env.step(np.ones(9))
    ctrl = env.backend.data.ctrl
    assert np.allclose(ctrl, env.action_high)
    env.step(-np.ones(9))
    assert np.allclose(env.backend.data.ctrl, env.action_low)


def test_held_actuators_stay_at_their_command():
    """jaco/reach-site holds the fingers (hold_actions): six actions drive the arm, the
    fingers' velocity actuators stay at 0 whatever the agent does, and ``joints`` reads the
    six arm joints only."""
    import mujoco

    env = make_env("jaco/reach-site", "state", seed=0)
    try:
        obs, _ = env.reset()
        assert env.action_space.shape == (6,)
        assert list(env.actuators) == [0, 1, 2, 3, 4, 5]
        assert np.array_equal(env.action_high, env.backend.action_high[:6])
        assert env.joint_names == [f"jaco_arm/joint_{i}" for i in range(1, 7)]
        assert obs["joints"].shape == (12,)
        m, d = env.backend.model, env.backend.data
        fingers = [m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT,
                                                   f"jaco_arm/jaco_hand/finger_{i}")]
                   for i in (1, 2, 3)]
        fingers0, arm0 = d.qpos[fingers].copy(), obs["joints"][:6].copy()
        for sign in (1.0, -1.0):
            obs, *_ = env.step(sign * np.ones(6))
            if sign > 0:
                assert np.abs(obs["joints"][:6] - arm0).min() > 0.001  # every arm joint moved
            ctrl = env.backend.data.ctrl
            assert np.allclose(ctrl[:6], env.backend.action_high[:6] if sign > 0
                               else env.backend.action_low[:6])
            assert np.allclose(ctrl[6:], 0.0)  # action 0 of a symmetric range
        assert np.abs(d.qpos[fingers] - fingers0).max() < 1e-4  # (driven: ~0.01 in 2 steps)
        with pytest.raises(ValueError, match="shape"):
            env.step(np.zeros(9))
    finally:
        env.close()
    with pytest.raises(ValueError, match="hold_actions must map"):
        TaskSpec(name="x", family="jaco", env_id="reach_site_features",
                 hold_actions={"jaco_arm/joint_1": 2.0})
    bad = TaskSpec(name="jaco/x", family="jaco", env_id="reach_site_features",
                   hold_actions={"jaco_arm/no_such_finger": 0.0})
    with pytest.raises(ValueError, match="no actuator named 'jaco_arm/no_such_finger'"):
        make_env(bad, "state", seed=0)


@pytest.mark.slow
def test_every_dmc_task_builds():
    for name in [n for n in registry() if n.startswith("dmc/")]:
        env = make_env(name, "state", seed=0)
        obs, _ = env.reset()
        env.step(env.action_space.sample())
        assert obs, name


def test_action_repeat_matches_stepping_dm_control_directly():
    from dm_control import suite

    env = make_env("dmc/cartpole-swingup", "state", seed=5)
    ref = suite.load("cartpole", "swingup", task_kwargs={"random": 5})
    obs, _ = env.reset()
    ts = ref.reset()
    rng = np.random.default_rng(0)
    for _ in range(30):
        a = rng.uniform(-1, 1, 1)
        obs, _, _, _, info = env.step(a)
        r = ref.step(a).reward + (ts := ref.step(a)).reward
        assert info["reward"] == pytest.approx(r, abs=1e-12)
        assert np.array_equal(obs["features"], ts.observation["position"].astype(np.float32))


def test_difference_features_read_two_observations():
    """jaco/reach-site publishes the target relative to the pinch site ("a - b" in its YAML)."""
    env = make_env("jaco/reach-site", "state", seed=0)
    try:
        layout = env.backend.feature_layout()
        rel = "target_position - jaco_arm/jaco_hand/pinch_site_pos"
        assert list(layout.values()) == [(0, 3), (3, 3), (6, 3)] and rel in layout
        for seed in (0, 1):
            obs, _ = env.reset(seed=seed)
            for _ in range(5):
                f = obs["features"]
                assert np.allclose(f[6:9], f[0:3] - f[3:6], atol=1e-6)
                obs, *_ = env.step(env.action_space.sample())
        assert np.linalg.norm(f[6:9]) > 0.01  # the hand is not on the target at random
    finally:
        env.close()
    from wmil_core.tasks.backends import DmcBackend

    bad = TaskSpec(name="dmc/x", family="dmc", env_id="cartpole:swingup",
                   features=("position - velocity",))  # (3,) and (2,)
    with pytest.raises(ValueError, match="subtracts shapes"):
        DmcBackend(bad, seed=0)
    bad = TaskSpec(name="dmc/x", family="dmc", env_id="reacher:easy",
                   features=("to_target - nowhere",))
    with pytest.raises(ValueError, match="no observation 'nowhere'"):
        DmcBackend(bad, seed=0)
