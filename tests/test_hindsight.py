"""Hindsight goals for demonstrations (wmil_core.hindsight, --hindsight-goals)."""

import mujoco
import numpy as np
import pytest

from wmil_core.buffer import EpisodeBuffer
from wmil_core.experts.base import make_expert
from wmil_core.hindsight import HindsightGoals, hindsight_of
from wmil_core.tasks import make_env
from wmil_core.tasks.spec import TaskSpec

# features: goal (0, 1), hand (2, 3), goal - hand (4, 5)
GOALS = dict(target=(0, 2), achieved=(2, 2), derived=((4, 2, 0, 2),))
SPEC = {"features": {"shape": [6], "dtype": "float32"}}


def _line_episode(goal: tuple[float, float], steps: int, hand_y: float = 0.0) -> dict:
    """A hand moving 1 per step along x at height ``hand_y``, its goal fixed at ``goal``."""
    x = np.arange(steps + 1, dtype=np.float32)
    hand = np.stack([x, np.full_like(x, hand_y)], axis=1)
    target = np.broadcast_to(np.asarray(goal, np.float32), hand.shape)
    return {"features": np.concatenate([target, hand, target - hand], axis=1)}


def _buffer() -> EpisodeBuffer:
    buf = EpisodeBuffer(SPEC, 1, 64, horizon=2)
    buf.add_episode(_line_episode((20.0, 0.0), 10), np.zeros((10, 1), np.float32))
    buf.add_episode(_line_episode((-5.0, 7.0), 10, hand_y=100.0), np.zeros((10, 1), np.float32))
    return buf


def test_a_relabelled_goal_is_a_later_hand_position_of_the_same_episode_far_enough_ahead():
    buf = _buffer()
    relabel = HindsightGoals(**GOALS, min_distance=3.0, fraction=1.0)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(30):
        batch = buf.sample(64, rng, relabel=relabel)
        f = batch.obs["features"].numpy()  # (3, 64, 6)
        hand, goal = f[..., 2:4], f[..., 0:2]
        np.testing.assert_array_equal(f[..., 4:6], goal - hand)  # derived feature follows
        assert (goal == goal[:1]).all()  # one goal per sub-trajectory
        for b in range(64):
            start = hand[0, b, 0]
            if hand[0, b, 1] == 100.0:  # the second episode: its goal is never on its path
                continue
            gx, gy = goal[0, b]
            if start + 2 + 3 <= 10:  # a point 3 ahead of the window's end exists: moved
                assert gy == 0.0 and gx == int(gx) and start + 2 + 3 <= gx <= 10
                seen.add(gx - start)
            else:  # near the end: the demo's own goal stays
                assert (gx, gy) == (20.0, 0.0)
    f = buf.sample(200, rng, relabel=relabel).obs["features"].numpy()[0]
    second = f[f[:, 3] == 100.0]  # windows of the second episode: goals from its own path only
    assert set(np.unique(second[:, 1])) == {7.0, 100.0}
    on_path = second[second[:, 1] == 100.0]
    assert (on_path[:, 0] >= on_path[:, 2] + 5).all()
    assert seen == {5.0, 6.0, 7.0, 8.0, 9.0, 10.0}  # uniform over every qualifying point


def test_fraction_zero_relabels_nothing_and_fraction_half_about_half():
    buf = _buffer()
    rng = np.random.default_rng(1)
    state = rng.bit_generator.state
    plain = buf.sample(400, rng)
    rng.bit_generator.state = state
    none = buf.sample(400, rng, relabel=HindsightGoals(**GOALS, min_distance=0.0, fraction=0.0))
    assert (none.obs["features"] == plain.obs["features"]).all()
    half = buf.sample(400, rng, relabel=HindsightGoals(**GOALS, min_distance=0.0,
                                                       fraction=0.5)).obs["features"]
    goal_x = half[0, :, 0].numpy()
    moved = np.isin(goal_x, (20.0, -5.0), invert=True).mean()
    assert 0.4 < moved < 0.6
    with pytest.raises(ValueError, match="hindsight_goals: must be in"):
        HindsightGoals(**GOALS, min_distance=0.0, fraction=1.5)


def test_the_jaco_task_declares_its_goal_and_other_tasks_are_refused():
    env = make_env("jaco/reach-site", "state", seed=0)
    h = hindsight_of(env, 0.5)
    assert (h.target, h.achieved, h.derived) == ((0, 3), (3, 3), ((6, 3, 0, 3),))
    assert h.min_distance == 0.08 and h.fraction == 0.5
    with pytest.raises(ValueError, match="reacher-easy declares no goal"):
        hindsight_of(make_env("dmc/reacher-easy", "state", seed=0), 0.5)
    with pytest.raises(ValueError, match="needs the features observation"):
        hindsight_of(make_env("jaco/reach-site", "pixels", seed=0), 0.5)
    with pytest.raises(ValueError, match="goal must be"):
        TaskSpec(name="x/y", family="dmc", env_id="y",
                 goal={"target": "a", "achieved": "a", "min_distance": 0.1})


def test_the_jaco_expert_acts_for_a_point_on_its_path_as_it_did_for_its_target():
    """The premise of relabelling: from each state of a demo, the expert's action toward a
    point its hand reached later, at least min_distance away, is the action it took."""
    env = make_env("jaco/reach-site", "state", seed=3)
    expert = make_expert("jaco/reach-site")
    obs, _ = env.reset(seed=3)
    expert.reset(env)
    model, data = env.backend.model, env.backend.data
    h = hindsight_of(env, 1.0)
    a0, n = h.achieved
    states, actions, hands = [], [], []
    for _ in range(60):
        states.append((data.qpos.copy(), data.qvel.copy()))
        actions.append(expert.act(obs))
        hands.append(obs["features"][a0:a0 + n].astype(np.float64))
        obs = env.step(actions[-1])[0]
    cosines = []
    for t in range(0, 45, 3):
        for later in range(t + 1, 60, 4):
            if np.linalg.norm(hands[later] - hands[t]) < h.min_distance:
                continue
            data.qpos[:], data.qvel[:] = states[t]
            mujoco.mj_forward(model, data)
            expert.target = lambda obs=None, g=hands[later]: g.copy()  # noqa: B023
            a = expert.act({})
            del expert.target
            cosines.append(a @ actions[t] / (np.linalg.norm(a) * np.linalg.norm(actions[t])))
    assert len(cosines) > 30
    assert np.min(cosines) > 0.99
    # and without the distance floor the premise fails: the expert slows for a near goal
    data.qpos[:], data.qvel[:] = states[0]
    mujoco.mj_forward(model, data)
    near = hands[1]
    expert.target = lambda obs=None: near.copy()
    slow = expert.act({})
    del expert.target
    assert np.abs(slow).max() < 0.5 * np.abs(actions[0]).max()


def test_training_relabels_expert_batches_when_asked(tmp_path):
    import torch

    from wmil_core.cli import build_parser
    from wmil_core.collect import collect_demos
    from wmil_core.train import TrainConfig, Trainer

    demos = tmp_path / "jaco.h5"
    collect_demos("jaco/reach-site", 1, "state", demos, seed=1, progress=False)  # a 26 cm reach
    cfg = TrainConfig(task="jaco/reach-site", demos=str(demos), method="bc", steps=0,
                      hindsight_goals=1.0, threads=1, agent={"batch_size": 64})
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    state = trainer.rng.bit_generator.state
    got = trainer._expert_batch()
    trainer.rng.bit_generator.state = state
    plain = trainer.expert.sample(64, trainer.rng)
    assert torch.equal(got.action, plain.action)
    assert torch.equal(got.obs["features"][..., 3:6], plain.obs["features"][..., 3:6])  # hand
    moved = (got.obs["features"][0, :, :3] != plain.obs["features"][0, :, :3]).any(-1)
    assert 0 < int(moved.sum()) < 64  # the reach windows move; the final hold has no goal ahead
    args = build_parser().parse_args(["train", "--config", "x.yaml", "--hindsight-goals", "0.5"])
    assert args.hindsight_goals == 0.5
    with pytest.raises(ValueError, match="hindsight_goals: must be in"):
        TrainConfig(hindsight_goals=2.0)
