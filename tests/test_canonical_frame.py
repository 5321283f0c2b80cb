"""The state read in the arm's own frame (ModelConfig.frame_*, --canonical-frame)."""

import math

import numpy as np
import onnxruntime as ort
import pytest
import torch
from agent_harness import TINY

from wmil_core.agents.iqmpc import IQMPC, IQMPCConfig
from wmil_core.buffer import Batch
from wmil_core.config import from_dict
from wmil_core.export import TOLERANCE, export_agent
from wmil_core.symmetry import PlanarRotation, symmetry_of
from wmil_core.tasks import make_env
from wmil_core.train import TrainConfig, agent_overrides
from wmil_core.world_model import Encoder, ModelConfig, to_frame

torch.set_num_threads(1)
# joints: 2 positions then 2 velocities; features: a vector (0, 1) and a point (2, 3, 4)
FRAME = {"frame_joint": 0, "frame_vectors": (0,), "frame_points": (2,),
         "frame_center": (0.5, -1.0), "frame_direction": -1.0}
SHAPES = {"joints": (4,), "features": (5,)}


def test_to_frame_turns_vectors_about_the_origin_and_points_about_the_anchor():
    cfg = ModelConfig(**FRAME)
    # hinge at -pi/2 with its axis down: the scene is turned by -pi/2 to bring it to 0
    joints = torch.tensor([[-math.pi / 2, 0.3, 0.7, -0.2]])
    feats = torch.tensor([[1.0, 0.0, 1.5, -1.0, 2.0]])  # vector (1, 0); point anchor + (1, 0)
    j, f = to_frame(joints, feats, cfg)
    assert torch.allclose(j, torch.tensor([[0.0, 0.3, 0.7, -0.2]]))  # velocities stay
    assert torch.allclose(f, torch.tensor([[0.0, -1.0, 0.5, -2.0, 2.0]]), atol=1e-6)


def test_a_turned_jaco_episode_reads_the_same_in_the_arms_frame():
    """Turn the whole scene (arm about its first joint, target about that joint's anchor) and
    play the same actions: world-frame features differ, the arm's-frame ones do not."""
    theta = 1.9
    env, turned = make_env("jaco/reach-site", seed=4), make_env("jaco/reach-site", seed=4)
    try:
        sym = symmetry_of(env, option="canonical_frame")
        cfg = ModelConfig(frame_joint=sym.joint, frame_vectors=sym.vectors,
                          frame_points=sym.points, frame_center=sym.center,
                          frame_direction=sym.direction)
        env.reset(seed=4)
        turned.reset(seed=4)
        phys = turned.backend.env.physics
        phys.named.data.qpos["jaco_arm/joint_1"] -= theta  # the axis points down
        c, s = math.cos(theta), math.sin(theta)
        cx, cy = sym.center
        x, y = phys.named.model.site_pos["target_site"][:2] - np.array([cx, cy])
        phys.named.model.site_pos["target_site"][:2] = [c * x - s * y + cx, s * x + c * y + cy]
        phys.forward()
        rng = np.random.default_rng(0)
        world, frame = [], []
        for _ in range(8):
            a = rng.uniform(-1, 1, env.action_space.shape[0]).astype(np.float32)
            o1, o2 = env.step(a)[0], turned.step(a)[0]
            world.append(np.abs(o1["features"] - o2["features"]).max())
            (j1, f1), (j2, f2) = (to_frame(torch.from_numpy(o["joints"][None]),
                                           torch.from_numpy(o["features"][None]), cfg)
                                  for o in (o1, o2))
            frame.append(max((j1 - j2).abs().max().item(), (f1 - f2).abs().max().item()))
        assert min(world) > 0.1
        assert max(frame) < 1e-4
    finally:
        env.close()
        turned.close()


def _encoders():
    torch.manual_seed(0)
    framed = Encoder(SHAPES, ModelConfig(latent_dim=16, enc_dim=32, **FRAME))
    torch.manual_seed(0)
    raw = Encoder(SHAPES, ModelConfig(latent_dim=16, enc_dim=32))
    return framed.eval(), raw.eval()


def test_the_encoder_in_the_arms_frame_cannot_tell_turned_scenes_apart():
    g = torch.Generator().manual_seed(1)
    obs = {k: torch.randn(3, 6, *s, generator=g) for k, s in SHAPES.items()}  # (T, B, .)
    sym = PlanarRotation(joint=0, vectors=(0,), points=(2,), center=(0.5, -1.0), direction=-1.0)
    batch = sym.rotate(_batch(obs), torch.rand(6, generator=g) * 6.0)
    framed, raw = _encoders()
    with torch.no_grad():
        assert (framed(obs) - framed(batch.obs)).abs().max() < 1e-5
        assert (raw(obs) - raw(batch.obs)).abs().max() > 1e-3
        # a turn of the arm alone (the target left where it was) is a new scene
        moved = {**obs, "joints": obs["joints"] + torch.tensor([0.5, 0.0, 0.0, 0.0])}
        assert (framed(obs) - framed(moved)).abs().max() > 1e-3


def _batch(obs):
    t, b = obs["joints"].shape[:2]
    return Batch(obs, torch.zeros(t - 1, b, 2), torch.zeros(t - 1, b, 1))


def test_bad_frames_are_refused():
    with pytest.raises(ValueError, match="frame_direction: must be 1 or -1"):
        ModelConfig(**{**FRAME, "frame_direction": 0.5})
    with pytest.raises(ValueError, match="frame_joint, frame_vectors, frame_points"):
        ModelConfig(**{**FRAME, "frame_points": (-1,)})
    with pytest.raises(ValueError, match="frame_joint: index 2 is not a joint position"):
        Encoder(SHAPES, ModelConfig(latent_dim=16, **{**FRAME, "frame_joint": 2}))
    with pytest.raises(ValueError, match="frame_vectors, frame_points: index 4 has no x, y"):
        Encoder(SHAPES, ModelConfig(latent_dim=16, **{**FRAME, "frame_points": (4,)}))
    with pytest.raises(ValueError, match="needs state observations"):
        Encoder({"image": (40, 40, 6), "joints": (4,)}, ModelConfig(latent_dim=16, **FRAME))


def test_canonical_frame_takes_the_tasks_symmetry_unless_the_agent_config_names_it():
    jaco = make_env("jaco/reach-site", "state", seed=0)
    cartpole = make_env("dmc/cartpole-swingup", "state", seed=0)
    pixels = make_env("jaco/reach-site", "pixels", seed=0)
    try:
        base = {"model": {"latent_dim": 16}}
        got = agent_overrides(TrainConfig(agent=base, canonical_frame=True), jaco)["model"]
        assert got["frame_joint"] == 0 and got["frame_direction"] == -1.0
        assert (got["frame_vectors"], got["frame_points"]) == ([6], [0, 3])
        assert got["frame_center"] == pytest.approx([0.0, 0.4])
        assert base == {"model": {"latent_dim": 16}}  # not modified
        assert agent_overrides(TrainConfig(agent=base), jaco) == base  # off by default
        named = {"model": {"frame_joint": -1}}
        assert agent_overrides(TrainConfig(agent=named, canonical_frame=True), jaco) == named
        with pytest.raises(ValueError, match="canonical_frame: task dmc/cartpole-swingup "
                                             "declares no symmetry"):
            agent_overrides(TrainConfig(canonical_frame=True), cartpole)
        with pytest.raises(ValueError, match="canonical_frame: needs state observations"):
            agent_overrides(TrainConfig(canonical_frame=True), pixels)
    finally:
        for e in (jaco, cartpole, pixels):
            e.close()


def test_exported_encoder_reads_the_arms_frame_and_matches_torch(tmp_path):
    torch.manual_seed(0)
    cfg = from_dict(IQMPCConfig, {**TINY, "model": {**TINY["model"], **FRAME}})
    agent = IQMPC(SHAPES, 2, 50, cfg)
    out = export_agent(agent, tmp_path / "b", {
        "task": "dmc/reacher-easy", "joint_names": ["shoulder", "wrist"],
        "action_low": [-1.0, -1.0], "action_high": [1.0, 1.0]})
    sess = ort.InferenceSession(str(out / "encoder.onnx"), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(2)
    obs = {k: torch.randn(1, 4, *s, generator=g) for k, s in SHAPES.items()}
    sym = PlanarRotation(joint=0, vectors=(0,), points=(2,), center=(0.5, -1.0), direction=-1.0)
    turned = sym.rotate(_batch(obs), torch.rand(4, generator=g) * 6.0).obs
    z = sess.run(None, {k: v[0].numpy() for k, v in obs.items()})[0]
    z_turned = sess.run(None, {k: v[0].numpy() for k, v in turned.items()})[0]
    with torch.no_grad():
        ref = agent.model.encode({k: v[0] for k, v in obs.items()}).numpy()
    assert np.abs(z - ref).max() <= TOLERANCE
    assert np.abs(z - z_turned).max() < 1e-5
