"""Demo augmentation by a task's declared symmetry (wmil_core.symmetry)."""

import math

import numpy as np
import pytest
import torch

from wmil_core.buffer import Batch
from wmil_core.collect import collect_demos
from wmil_core.symmetry import PlanarRotation, symmetry_of
from wmil_core.tasks import make_env
from wmil_core.tasks.spec import TaskSpec
from wmil_core.train import TrainConfig, Trainer

TINY_AGENT = {"model": {"latent_dim": 16, "mlp_dim": 32, "enc_dim": 32}, "batch_size": 8,
              "planner": {"num_samples": 16, "num_pi_trajs": 2, "num_elites": 4,
                          "iterations": 1}}


def _tiny_reacher(demos, steps: int, episode_length: int, **kw) -> TrainConfig:
    """A reacher run of ``steps`` steps small enough for a test, its first 20 at random."""
    return TrainConfig(task="dmc/reacher-easy", demos=str(demos), offline_steps=2, steps=steps,
                       seed_steps=20, eval_every=max(steps, 1), eval_episodes=1,
                       checkpoint_every=max(steps, 1), episode_length=episode_length,
                       buffer_size=200, threads=1, agent=TINY_AGENT, **kw)


def _as_batch(joints: list, feats: list, actions: list) -> Batch:
    """One sub-trajectory (T+1 observations, T actions) as a batch of one."""
    obs = {"joints": torch.tensor(np.array(joints))[:, None],
           "features": torch.tensor(np.array(feats))[:, None]}
    act = torch.tensor(np.array(actions))[:, None]
    return Batch(obs, act, torch.zeros(act.shape[0], 1, 1))


def _random_batch(n: int) -> Batch:
    """``n`` random sub-trajectories of 3 steps: 4 joint values, 3 features, 2 actions."""
    g = torch.Generator().manual_seed(0)
    obs = {"joints": torch.randn(4, n, 4, generator=g),
           "features": torch.randn(4, n, 3, generator=g)}
    return Batch(obs, torch.randn(3, n, 2, generator=g), torch.zeros(3, n, 1))


def _play_both(env, turned, steps: int, sign: float = 1.0):
    """Play the same random actions in ``env`` and ``turned`` (there times ``sign``): (batch
    of the original, its features, the turned episode's joints and features)."""
    rng = np.random.default_rng(0)
    a_dim = env.action_space.shape[0]
    joints, feats, actions, turned_joints, turned_feats = [], [], [], [], []
    for _ in range(steps):
        a = rng.uniform(-1, 1, a_dim).astype(np.float32)
        obs, *_ = env.step(a)
        o2, *_ = turned.step(sign * a)
        joints.append(obs["joints"])
        feats.append(obs["features"])
        actions.append(a)
        turned_joints.append(o2["joints"])
        turned_feats.append(o2["features"])
    return _as_batch(joints, feats, actions[:-1]), feats, turned_joints, turned_feats


def test_a_turned_reacher_episode_is_the_turned_observations_of_the_original():
    """The declared rotation is an exact symmetry of reacher's dynamics: turning the start
    state and the target by theta, then playing the same actions, observes what
    PlanarRotation.rotate makes of the original observations."""
    theta = 2.1
    env, turned = make_env("dmc/reacher-easy", seed=3), make_env("dmc/reacher-easy", seed=3)
    sym = symmetry_of(env)
    # shoulder (axis up, anchored at the origin); to_target's x, y
    assert sym == PlanarRotation(joint=0, vectors=(0,), center=(0.0, 0.0), direction=1.0)
    obs, _ = env.reset(seed=3)
    turned.reset(seed=3)
    phys = turned.backend.env.physics
    phys.named.data.qpos["shoulder"] += theta
    c, s = math.cos(theta), math.sin(theta)
    x, y = phys.named.model.geom_pos["target"][:2].copy()
    phys.named.model.geom_pos["target"][:2] = [c * x - s * y, s * x + c * y]
    phys.forward()
    batch, feats, turned_joints, turned_feats = _play_both(env, turned, 12)
    rotated = sym.rotate(batch, torch.tensor([theta]))
    np.testing.assert_allclose(rotated.obs["joints"][:, 0].numpy(), np.array(turned_joints),
                               atol=1e-5)
    np.testing.assert_allclose(rotated.obs["features"][:, 0].numpy(), np.array(turned_feats),
                               atol=1e-5)
    assert torch.equal(rotated.action, batch.action)
    # and the turn changed something: the test is not comparing an episode with itself
    assert np.abs(np.array(turned_feats) - np.array(feats)).max() > 0.05


def test_a_turned_jaco_episode_is_the_turned_observations_of_the_original():
    """The Jaco's declared rotation is exact too: its first joint's axis points down (so the
    joint turns by -theta for a scene turned by +theta) and is anchored at (0, 0.4), not at the
    origin; target and pinch positions turn about the anchor, their difference about 0."""
    theta = -2.3
    env, turned = make_env("jaco/reach-site", seed=3), make_env("jaco/reach-site", seed=3)
    sym = symmetry_of(env)
    assert sym.direction == -1.0 and sym.center == pytest.approx((0.0, 0.4))
    assert (sym.joint, sym.vectors, sym.points) == (0, (6,), (0, 3))
    assert sym.max_angle == 0.3  # declared: the targets lie in front of the arm
    assert symmetry_of(env, max_angle=1.5).max_angle == 1.5  # TrainConfig.symmetry_max_angle
    env.reset(seed=3)
    turned.reset(seed=3)
    phys = turned.backend.env.physics
    phys.named.data.qpos["jaco_arm/joint_1"] -= theta
    c, s = math.cos(theta), math.sin(theta)
    x, y = phys.named.model.site_pos["target_site"][:2].copy()
    y -= 0.4
    phys.named.model.site_pos["target_site"][:2] = [c * x - s * y, s * x + c * y + 0.4]
    phys.forward()
    batch, feats, turned_joints, turned_feats = _play_both(env, turned, 10)
    rotated = sym.rotate(batch, torch.tensor([theta]))
    np.testing.assert_allclose(rotated.obs["joints"][:, 0].numpy(), np.array(turned_joints),
                               atol=1e-4)
    np.testing.assert_allclose(rotated.obs["features"][:, 0].numpy(), np.array(turned_feats),
                               atol=1e-4)
    assert np.abs(np.array(turned_feats) - np.array(feats)).max() > 0.1


def test_a_mirrored_reacher_episode_is_the_mirrored_observations_of_the_original():
    """The declared mirror is an exact symmetry of reacher's dynamics: reflecting the start
    state and the target in the plane of the shoulder's zero direction (world x), then playing
    the negated actions, observes what PlanarRotation.reflect makes of the original's
    observations and actions; the turn and the reflection compose as augment applies them."""
    env, mirrored = make_env("dmc/reacher-easy", seed=4), make_env("dmc/reacher-easy", seed=4)
    sym = symmetry_of(env, mirror=True)
    assert (sym.mirror_joints, sym.mirror_actions) == ((0, 1, 2, 3), (0, 1))
    assert sym.mirror_angle == pytest.approx(0.0)
    assert symmetry_of(env).mirror_joints == ()  # only when asked
    env.reset(seed=4)
    mirrored.reset(seed=4)
    phys = mirrored.backend.env.physics
    phys.named.data.qpos[["shoulder", "wrist"]] *= -1.0
    phys.named.data.qvel[["shoulder", "wrist"]] *= -1.0
    phys.named.model.geom_pos["target"][1] *= -1.0
    phys.forward()
    batch, feats, got_joints, got_feats = _play_both(env, mirrored, 12, sign=-1.0)
    out = sym.reflect(batch, torch.tensor([True]))
    np.testing.assert_allclose(out.obs["joints"][:, 0].numpy(), np.array(got_joints), atol=1e-5)
    np.testing.assert_allclose(out.obs["features"][:, 0].numpy(), np.array(got_feats), atol=1e-5)
    assert torch.equal(out.action, -batch.action)
    assert np.abs(np.array(got_feats) - np.array(feats)).max() > 0.05  # not the same episode
    assert np.abs(np.array(got_joints)[:, 2:]).max() > 0.1  # the arm moved: velocities tested
    kept = sym.reflect(batch, torch.tensor([False]))
    assert all(torch.equal(kept.obs[k], batch.obs[k]) for k in batch.obs)
    assert torch.equal(kept.action, batch.action)
    with pytest.raises(ValueError, match="declares no mirror"):
        symmetry_of(make_env("jaco/reach-site"), mirror=True)
    with pytest.raises(ValueError, match="declares no mirror"):
        symmetry_of(env).reflect(batch, torch.tensor([True]))


def test_reflection_is_about_the_mirror_plane_and_points_about_the_anchor():
    """Hand-computed: the mirror plane at 45 degrees through (1, 2) takes the point (2, 2, 5)
    to (1, 3, 5) and the vector (1, 0, 5) to (0, 1, 5); its own direction stays."""
    sym = PlanarRotation(joint=0, vectors=(3, 6), points=(0,), center=(1.0, 2.0),
                         mirror_joints=(0, 2), mirror_actions=(1,), mirror_angle=math.pi / 4)
    batch = _as_batch([np.float32([0.5, 0.25, -1.0, 2.0])] * 2,
                      [np.float32([2, 2, 5, 1, 0, 5, 1, 1])] * 2, [np.float32([0.3, -0.7])])
    out = sym.reflect(batch, torch.tensor([True]))
    want = torch.tensor([1.0, 3.0, 5.0, 0.0, 1.0, 5.0, 1.0, 1.0])
    assert torch.allclose(out.obs["features"][:, 0], want.expand(2, 8), atol=1e-6)
    assert torch.allclose(out.obs["joints"][:, 0], torch.tensor([-0.5, 0.25, 1.0, 2.0]))
    assert torch.allclose(out.action[0, 0], torch.tensor([0.3, 0.7]))
    twice = sym.reflect(out, torch.tensor([True]))  # an involution
    assert torch.allclose(twice.obs["features"], batch.obs["features"], atol=1e-6)


def test_augment_reflects_about_half_the_subtrajectories_before_turning_them():
    sym = PlanarRotation(joint=0, vectors=(1,), mirror_joints=(0, 1, 2, 3),
                         mirror_actions=(0, 1), mirror_angle=0.3)
    batch = _random_batch(400)
    obs = batch.obs
    out = sym.augment(batch, np.random.default_rng(1))
    flip = out.action[0, :, 0] < 0
    flip = torch.where(batch.action[0, :, 0] < 0, ~flip, flip)  # where the action's sign moved
    assert 150 < int(flip.sum()) < 250
    assert torch.equal(out.action, torch.where(flip[None, :, None], -batch.action, batch.action))
    sign = torch.where(flip, -1.0, 1.0)
    theta = out.obs["joints"][0, :, 0] - sign * obs["joints"][0, :, 0]
    want = sym.rotate(sym.reflect(batch, flip), theta)
    assert torch.allclose(out.obs["joints"], want.obs["joints"], atol=1e-5)
    assert torch.allclose(out.obs["features"], want.obs["features"], atol=1e-5)
    assert torch.allclose(out.obs["features"][..., 1:].norm(dim=-1),
                          obs["features"][..., 1:].norm(dim=-1), atol=1e-5)


def test_augment_turns_each_subtrajectory_by_one_random_angle():
    sym = PlanarRotation(joint=0, vectors=(1,))
    batch = _random_batch(400)
    obs = batch.obs
    out = sym.augment(batch, np.random.default_rng(1))
    theta = out.obs["joints"][..., 0] - obs["joints"][..., 0]  # (T+1, B)
    assert torch.allclose(theta, theta[:1].expand_as(theta), atol=1e-5)  # one per sub-trajectory
    assert torch.equal(out.obs["joints"][..., 1:], obs["joints"][..., 1:])  # wrist, velocities
    assert torch.equal(out.obs["features"][..., 0], obs["features"][..., 0])  # not a vector
    assert torch.equal(out.action, batch.action)
    v, w = obs["features"][..., 1:], out.obs["features"][..., 1:]
    assert torch.allclose(v.norm(dim=-1), w.norm(dim=-1), atol=1e-5)
    turned = torch.atan2(w[..., 1], w[..., 0]) - torch.atan2(v[..., 1], v[..., 0])
    assert torch.allclose(torch.cos(turned - theta), torch.ones_like(theta), atol=1e-4)
    t0 = theta[0]
    assert t0.min() >= 0 and t0.max() < 2 * math.pi
    assert abs(float(torch.cos(t0).mean())) < 0.1 and abs(float(torch.sin(t0).mean())) < 0.1
    assert torch.equal(obs["joints"], batch.obs["joints"])  # the input is left alone


def test_symmetry_declarations_and_their_errors():
    with pytest.raises(ValueError, match="declares no symmetry"):
        symmetry_of(make_env("dmc/cartpole-swingup"))
    with pytest.raises(ValueError, match="needs state observations"):
        symmetry_of(make_env("dmc/reacher-easy", "pixels", image_size=16))
    with pytest.raises(ValueError, match="symmetry must be"):
        TaskSpec(name="dmc/x", family="dmc", env_id="reacher:easy",
                 symmetry={"rotation": {"joint": "shoulder"}})
    bad = TaskSpec(name="dmc/reacher-easy", family="dmc", env_id="reacher:easy",
                   joints=("shoulder", "wrist"), features=("to_target",),
                   symmetry={"rotation": {"joint": "elbow", "vectors": ["to_target"]}})
    with pytest.raises(ValueError, match="symmetry joint 'elbow' is not among"):
        symmetry_of(make_env(bad))
    three = TaskSpec(name="dmc/reacher-easy", family="dmc", env_id="reacher:easy",
                     joints=("shoulder", "wrist"), features=("to_target", "position"),
                     symmetry={"rotation": {"joint": "shoulder", "vectors": ["position"]}})
    assert symmetry_of(make_env(three)) == PlanarRotation(joint=0, vectors=(2,))  # after x, y
    pole = dict(name="dmc/cartpole-swingup", family="dmc", env_id="cartpole:swingup",
                joints=("slider", "hinge_1"), features=("position",))
    with pytest.raises(ValueError, match="'slider' is not an unlimited hinge"):
        symmetry_of(make_env(TaskSpec(**pole, symmetry={"rotation": {
            "joint": "slider", "vectors": ["position"]}})))
    with pytest.raises(ValueError, match="'hinge_1' turns about .* not the vertical axis"):
        symmetry_of(make_env(TaskSpec(**pole, symmetry={"rotation": {
            "joint": "hinge_1", "points": ["position"]}})))
    with pytest.raises(ValueError, match="symmetry must be"):
        TaskSpec(name="dmc/x", family="dmc", env_id="reacher:easy",
                 symmetry={"rotation": {"joint": "shoulder", "centre": [0, 0]}})
    for angle in (0, -1.0, "wide"):
        with pytest.raises(ValueError, match="max_angle: <radians > 0>"):
            TaskSpec(name="dmc/x", family="dmc", env_id="reacher:easy", symmetry={"rotation": {
                "joint": "shoulder", "vectors": ["to_target"], "max_angle": angle}})
    with pytest.raises(ValueError, match="symmetry_max_angle: must be > 0"):
        TrainConfig(symmetry_max_angle=0.0)
    for mirror in ({"joints": []}, {"joints": "shoulder"}, {"hinges": ["shoulder"]}, []):
        with pytest.raises(ValueError, match="symmetry mirror must be"):
            TaskSpec(name="dmc/x", family="dmc", env_id="reacher:easy", symmetry={
                "rotation": {"joint": "shoulder", "vectors": ["to_target"]}, "mirror": mirror})
    reacher = dict(name="dmc/reacher-easy", family="dmc", env_id="reacher:easy",
                   joints=("shoulder", "wrist"), features=("to_target",))
    rot = {"joint": "shoulder", "vectors": ["to_target"]}
    for joints, match in ((["wrist"], "must include the rotation joint 'shoulder'"),
                          (["shoulder", "elbow"], "mirror joint 'elbow' is not among")):
        env = make_env(TaskSpec(**reacher, symmetry={"rotation": rot,
                                                     "mirror": {"joints": joints}}))
        with pytest.raises(ValueError, match=match):
            symmetry_of(env, mirror=True)
    with pytest.raises(ValueError, match="symmetry_mirror: needs demo_symmetry"):
        TrainConfig(symmetry_mirror=True)


def test_turns_stay_within_max_angle():
    sym = PlanarRotation(joint=0, vectors=(0,), max_angle=0.3)
    n = 2000
    obs = {"joints": torch.zeros(2, n, 2), "features": torch.zeros(2, n, 2)}
    out = sym.augment(Batch(obs, torch.zeros(1, n, 1), torch.zeros(1, n, 1)),
                      np.random.default_rng(0))
    theta = out.obs["joints"][0, :, 0]
    assert float(theta.abs().max()) <= 0.3 + 1e-6
    assert float(theta.min()) < -0.25 and float(theta.max()) > 0.25  # both ways, the range


def test_points_turn_about_the_hinge_anchor_and_vectors_about_the_origin():
    """Hand-computed: a quarter turn about (1, 2) takes the point (2, 2, 5) to (1, 3, 5) and
    the vector (1, 0, 5) to (0, 1, 5); a hinge whose axis points down moves by -pi/2."""
    sym = PlanarRotation(joint=1, vectors=(3,), points=(0,), center=(1.0, 2.0), direction=-1.0)
    batch = _as_batch([np.float32([0.5, 0.25])], [np.float32([2, 2, 5, 1, 0, 5])], [])
    out = sym.rotate(batch, torch.tensor([math.pi / 2]))
    assert torch.allclose(out.obs["features"][0, 0], torch.tensor([1.0, 3.0, 5.0, 0.0, 1.0, 5.0]),
                          atol=1e-6)
    assert torch.allclose(out.obs["joints"][0, 0], torch.tensor([0.5, 0.25 - math.pi / 2]))


def test_training_turns_expert_batches_only(tmp_path):
    demos = tmp_path / "d.h5"
    collect_demos("dmc/reacher-easy", 2, "state", demos, seed=0, progress=False)
    cfg = _tiny_reacher(demos, 40, 20, demo_symmetry=True)
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    state = trainer.rng.bit_generator.state
    turned = trainer._expert_batch()
    trainer.rng.bit_generator.state = state
    plain = trainer.expert.sample(8, trainer.rng)
    assert torch.equal(turned.action, plain.action)
    assert not torch.allclose(turned.obs["features"], plain.obs["features"])
    assert torch.allclose(turned.obs["features"].norm(dim=-1), plain.obs["features"].norm(dim=-1),
                          atol=1e-5)
    result = trainer.train()
    assert np.isfinite(result["return_mean"])
    cartpole = tmp_path / "c.h5"
    collect_demos("dmc/cartpole-swingup", 1, "state", cartpole, seed=0, progress=False)
    with pytest.raises(ValueError, match="cartpole-swingup declares no symmetry"):
        Trainer(TrainConfig(task="dmc/cartpole-swingup", demos=str(cartpole),
                            demo_symmetry=True), tmp_path / "cp", progress=False)


def test_behaviour_symmetry_turns_behaviour_batches_alone_when_asked(tmp_path):
    from wmil_core.cli import build_parser

    demos = tmp_path / "d.h5"
    collect_demos("dmc/reacher-easy", 1, "state", demos, seed=0, progress=False)
    cfg = _tiny_reacher(demos, 30, 15, behaviour_symmetry=True)
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    trainer.train()
    for draw, plain_draw, turns in (
            (trainer._behaviour_batch, lambda: trainer.behaviour.sample(8, trainer.rng), True),
            (trainer._expert_batch, lambda: trainer.expert.sample(8, trainer.rng), False)):
        state = trainer.rng.bit_generator.state
        got = draw()
        trainer.rng.bit_generator.state = state
        plain = plain_draw()
        assert torch.equal(got.action, plain.action)
        assert torch.allclose(got.obs["features"].norm(dim=-1),
                              plain.obs["features"].norm(dim=-1), atol=1e-5)
        assert torch.equal(got.obs["features"], plain.obs["features"]) != turns
    args = build_parser().parse_args(["train", "--config", "x.yaml", "--behaviour-symmetry",
                                      "--symmetry-max-angle", "0.4"])
    assert args.behaviour_symmetry is True and args.symmetry_max_angle == 0.4
    narrow = Trainer(_tiny_reacher(demos, 0, 15, demo_symmetry=True, symmetry_max_angle=0.4),
                     tmp_path / "narrow", progress=False)
    assert narrow.symmetry.max_angle == 0.4  # reacher declares the whole circle
    assert trainer.behaviour_symmetry.max_angle is None
    assert trainer.behaviour_symmetry.mirror_joints == ()
    args = build_parser().parse_args(["train", "--config", "x.yaml", "--symmetry-mirror"])
    assert args.symmetry_mirror is True
    both = Trainer(_tiny_reacher(demos, 0, 15, demo_symmetry=True, behaviour_symmetry=True,
                                 symmetry_mirror=True), tmp_path / "mirror", progress=False)
    assert both.symmetry is both.behaviour_symmetry
    assert (both.symmetry.mirror_joints, both.symmetry.mirror_actions) == ((0, 1, 2, 3), (0, 1))
    state = both.rng.bit_generator.state
    got = both._expert_batch()
    both.rng.bit_generator.state = state
    plain = both.expert.sample(8, both.rng)
    assert not torch.equal(got.action, plain.action)  # some of the 8 reflected
    assert torch.equal(got.action.abs(), plain.action.abs())


def test_the_online_learner_turns_batches_as_training_did(tmp_path):
    from wmil_core.online import OnlineLearner

    demos = tmp_path / "d.h5"
    collect_demos("dmc/reacher-easy", 2, "state", demos, seed=0, progress=False)
    cfg = _tiny_reacher(demos, 0, 20, demo_symmetry=True, behaviour_symmetry=True)
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    sym = trainer.symmetry
    assert sym is not None and trainer.behaviour_symmetry == sym
    first = []  # each learner's first (expert, behaviour) batches
    for expert_sym, behaviour_sym in ((sym, None), (None, sym), (None, None)):
        learner = OnlineLearner(trainer.agent, demos, "dmc/reacher-easy", ["shoulder", "wrist"],
                                np.full(2, -1.0), np.full(2, 1.0), tmp_path / "online",
                                export_every=1000, seed=5, symmetry=expert_sym,
                                behaviour_symmetry=behaviour_sym)
        rng = np.random.default_rng(0)
        learner.add_episode({"joints": rng.standard_normal((9, 4)).astype(np.float32),
                             "features": rng.standard_normal((9, 2)).astype(np.float32)},
                            rng.uniform(-1, 1, (8, 2)).astype(np.float32))
        seen = []
        learner.agent.update = lambda e, b, seen=seen: seen.append((e, b))
        learner.step()
        first.append(seen[0])
    plain = first[2]  # same seed: the same sub-trajectories, turned or not
    for k, (got, want_turned) in enumerate(((first[0][0], True), (first[0][1], False),
                                            (first[1][0], False), (first[1][1], True))):
        ref = plain[k % 2]
        assert torch.equal(got.action, ref.action)
        assert torch.equal(got.obs["features"], ref.obs["features"]) != want_turned, k
        assert torch.allclose(got.obs["features"].norm(dim=-1), ref.obs["features"].norm(dim=-1),
                              atol=1e-5)
