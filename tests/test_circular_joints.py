"""Unlimited hinges read as sine and cosine (ModelConfig.angle_joints, --circular-joints)."""

import math

import numpy as np
import onnxruntime as ort
import pytest
import torch
from agent_harness import TINY

from wmil_core.agents.iqmpc import IQMPC, IQMPCConfig
from wmil_core.config import from_dict
from wmil_core.export import TOLERANCE, export_agent
from wmil_core.tasks import make_env
from wmil_core.train import TrainConfig, agent_overrides
from wmil_core.world_model import Encoder, ModelConfig, circular

torch.set_num_threads(1)
TURN = 2.0 * math.pi


@pytest.mark.parametrize(("task", "angles"), [
    ("dmc/reacher-easy", [0]),  # shoulder (the wrist is limited)
    ("dmc/cartpole-swingup", [1]),  # the pole's hinge (the cart is a slider)
    ("jaco/reach-site", [0, 3, 4, 5]),  # joints 1, 4, 5, 6; 2, 3 and the fingers are limited
])
def test_unlimited_hinges_are_the_angle_joints(task, angles):
    env = make_env(task, "state", seed=0)
    try:
        assert env.angle_joints() == angles
    finally:
        env.close()


def test_circular_replaces_each_angle_by_its_sine_and_appends_its_cosine():
    j = torch.tensor([[0.5, 2.0, -1.0, 3.0]])
    got = circular(j, torch.tensor([0, 2]), torch.tensor([True, False, True, False]))
    want = [math.sin(0.5), 2.0, math.sin(-1.0), 3.0, math.cos(0.5), math.cos(-1.0)]
    assert got.shape == (1, 6)
    assert torch.allclose(got, torch.tensor([want]), atol=1e-7)


def _encoders(shapes):
    torch.manual_seed(0)
    periodic = Encoder(shapes, ModelConfig(latent_dim=16, enc_dim=32, angle_joints=(0,)))
    torch.manual_seed(0)
    raw = Encoder(shapes, ModelConfig(latent_dim=16, enc_dim=32))
    return periodic.eval(), raw.eval()  # eval: no random shift of images


@pytest.mark.parametrize("shapes", [{"joints": (4,), "features": (2,)},
                                    {"image": (40, 40, 6), "joints": (4,)}])
def test_encoder_reads_an_angle_and_the_same_angle_plus_a_turn_alike(shapes):
    g = torch.Generator().manual_seed(1)
    obs = {k: (torch.randint(0, 256, (5, *s), generator=g, dtype=torch.uint8) if k == "image"
               else torch.randn(5, *s, generator=g)) for k, s in shapes.items()}
    turned = {**obs, "joints": obs["joints"] + torch.tensor([TURN, 0.0, 0.0, 0.0])}
    periodic, raw = _encoders(shapes)
    with torch.no_grad():
        assert (periodic(obs) - periodic(turned)).abs().max() < 1e-5
        assert (raw(obs) - raw(turned)).abs().max() > 1e-3  # raw angles: a different input
        # the wrist (limited, not listed) still reads raw: a turn there is a new pose
        wrist = {**obs, "joints": obs["joints"] + torch.tensor([0.0, TURN, 0.0, 0.0])}
        assert (periodic(obs) - periodic(wrist)).abs().max() > 1e-3


def test_bad_angle_joints_are_refused():
    with pytest.raises(ValueError, match="angle_joints: must be distinct"):
        ModelConfig(angle_joints=(0, 0))
    with pytest.raises(ValueError, match="angle_joints: must be distinct"):
        ModelConfig(angle_joints=(-1,))
    with pytest.raises(ValueError, match="angle_joints: index 2 is not a joint position"):
        Encoder({"joints": (4,)}, ModelConfig(latent_dim=16, angle_joints=(2,)))  # a velocity
    with pytest.raises(ValueError, match="angle_joints: index 0 is not a joint position"):
        Encoder({"image": (40, 40, 6)}, ModelConfig(latent_dim=16, angle_joints=(0,)))


def test_circular_joints_takes_the_tasks_angles_unless_the_agent_config_names_them():
    env = make_env("dmc/reacher-easy", "state", seed=0)
    pixels = make_env("dmc/reacher-easy", "pixels", seed=0)
    try:
        base = {"batch_size": 8, "model": {"latent_dim": 16}}
        on = TrainConfig(agent=base, circular_joints=True)
        assert agent_overrides(on, env) == {"batch_size": 8,
                                            "model": {"latent_dim": 16, "angle_joints": [0]}}
        assert base == {"batch_size": 8, "model": {"latent_dim": 16}}  # not modified
        assert agent_overrides(TrainConfig(agent=base), env) == base  # off by default
        named = TrainConfig(agent={"model": {"angle_joints": []}}, circular_joints=True)
        assert agent_overrides(named, env) == {"model": {"angle_joints": []}}
        assert agent_overrides(on, pixels) == base  # no joints observed: nothing to encode
    finally:
        env.close()
        pixels.close()


def test_exported_encoder_is_periodic_and_matches_torch(tmp_path):
    torch.manual_seed(0)
    cfg = from_dict(IQMPCConfig, {**TINY, "model": {**TINY["model"], "angle_joints": [0]}})
    agent = IQMPC({"joints": (4,), "features": (6,)}, 2, 50, cfg)
    out = export_agent(agent, tmp_path / "b", {
        "task": "dmc/reacher-easy", "joint_names": ["shoulder", "wrist"],
        "action_low": [-1.0, -1.0], "action_high": [1.0, 1.0]})
    sess = ort.InferenceSession(str(out / "encoder.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    obs = {"joints": rng.normal(size=(3, 4)).astype(np.float32),
           "features": rng.normal(size=(3, 6)).astype(np.float32)}
    turned = {**obs, "joints": obs["joints"] + np.float32([TURN, 0, 0, 0])}
    z, z_turned = sess.run(None, obs)[0], sess.run(None, turned)[0]
    with torch.no_grad():
        ref = agent.model.encode({k: torch.from_numpy(v) for k, v in obs.items()}).numpy()
    assert np.abs(z - ref).max() <= TOLERANCE
    assert np.abs(z - z_turned).max() < 1e-5
