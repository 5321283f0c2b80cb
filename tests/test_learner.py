"""Online learner: transitions from a live stream, and the learner-to-planner hot swap."""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import pytest

from wmil_core.online import TransitionAssembler


def test_assembler_pairs_commands_with_the_latest_observation():
    asm = TransitionAssembler(("joints", "features"))
    asm.observe("joints", np.array([1.0], np.float32))
    asm.command(np.array([0.1], np.float32))  # no features yet: dropped
    assert asm.dropped == 1
    for t in range(3):
        asm.observe("features", np.array([10.0 + t], np.float32))
        asm.observe("joints", np.array([float(t)], np.float32))
        asm.command(np.array([0.5 * t], np.float32))
    obs, actions = asm.end_episode()
    assert obs["joints"].ravel().tolist() == [0.0, 1.0, 2.0]
    assert obs["features"].ravel().tolist() == [10.0, 11.0, 12.0]
    assert actions.ravel().tolist() == [0.0, 0.5]  # the last command has no next observation
    assert asm.end_episode() is None  # nothing left


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 30-step reacher-easy training run and its exported bundle (``model/``) in one folder."""
    import torch

    from wmil_core.collect import collect_demos
    from wmil_core.export import export_bundle
    from wmil_core.train import TrainConfig, Trainer

    torch.set_num_threads(1)
    tmp_path = tmp_path_factory.mktemp("learner")
    demos = tmp_path / "demos.h5"
    collect_demos("dmc/reacher-easy", 2, "state", demos, seed=0, progress=False)
    tiny = {"model": {"latent_dim": 16, "mlp_dim": 32, "enc_dim": 32, "num_q": 2},
            "batch_size": 8,
            "planner": {"num_samples": 32, "num_pi_trajs": 4, "num_elites": 4, "iterations": 2}}
    cfg = TrainConfig(task="dmc/reacher-easy", demos=str(demos), agent=tiny, steps=30,
                      seed_steps=30, eval_every=30, eval_episodes=1, checkpoint_every=30,
                      episode_length=30, buffer_size=200)
    Trainer(cfg, tmp_path / "run", progress=False).train()
    export_bundle(tmp_path / "run", tmp_path / "model")
    return tmp_path


def test_learner_reads_the_robots_joint_names_and_refuses_a_wrong_count(tiny_run: Path):
    pytest.importorskip("rclpy")
    from rclpy.parameter import Parameter
    from ros_harness import ros_context

    from wmil.learner_node import LearnerNode
    from wmil.ros_io import joint_state_msg

    def params(**kw):
        values = {"run": str(tiny_run / "run"), "out_dir": str(tiny_run / "unused"), **kw}
        return [Parameter(k, value=v) for k, v in values.items()]

    with ros_context() as ctx:
        with pytest.raises(ValueError, match=r"joint_names: the model has 2 joints .*got 1"):
            LearnerNode(context=ctx, parameter_overrides=params(joint_names=["arm"]))
        node = LearnerNode(context=ctx, parameter_overrides=params(joint_names=["j1", "j2"]))
        try:
            assert node.names == ["shoulder", "wrist"]  # bundles keep the model's names
            # the robot publishes j2, an extra joint and j1: positions then velocities
            node._on_joints(joint_state_msg(["j2", "gripper", "j1"],
                                            np.float32([0.2, 9.0, 0.1, 2.0, 9.0, 1.0]), 0.0))
            assert node.assembler.latest["joints"].tolist() == pytest.approx([0.1, 0.2, 1.0, 2.0])
            node.assembler.latest.clear()
            node._on_joints(joint_state_msg(["shoulder", "wrist"], np.zeros(4, np.float32), 0.0))
            assert "joints" not in node.assembler.latest  # the model's names are not the robot's
        finally:
            node.destroy_node()


def test_learner_exports_and_the_planner_swaps_while_control_runs(tiny_run: Path):
    pytest.importorskip("rclpy")
    from rclpy.parameter import Parameter

    from wmil.learner_node import LearnerNode
    from wmil.stack import run_stack

    tmp_path = tiny_run
    model = tmp_path / "model"
    learners: list[LearnerNode] = []

    def make_learner(**kw):
        node = LearnerNode(parameter_overrides=[
            Parameter("run", value=str(tmp_path / "run")),
            Parameter("export_every", value=20),
            Parameter("out_dir", value=str(tmp_path / "online"))], **kw)
        learners.append(node)
        return node

    def wait_for_an_export(stats):
        # on a loaded machine the learner's first export (20 updates, then ONNX export and
        # its self-check, in the learner's own thread) can take longer than the eight
        # episodes; hold the loop after the second episode until it exists, so that the
        # planner has six episodes left to receive it and swap
        if len(seen_episodes) == 1:
            deadline = time.monotonic() + 180.0
            while not learners[0].exports and time.monotonic() < deadline:
                time.sleep(0.1)
        seen_episodes.append(stats)

    seen_episodes: list = []
    result = run_stack({"sim": {"episode_length": 30, "seed": 5},
                        "planner": {"model_dir": str(model)}},
                       episodes=8, timeout=600.0, domain_id=random.randint(110, 190),
                       extra_nodes=[make_learner], on_episode=wait_for_an_export)
    learner = learners[0]
    assert learner.error is None
    assert [e["steps"] for e in result.episodes] == [30] * 8  # control never stopped
    assert learner.learner.updates >= 29  # one update per transition of each finished episode
    assert learner.exports, "no bundle exported"
    first = Path(learner.exports[0]["path"])
    assert (first / "manifest.json").is_file() and first.name == "v0001"
    assert result.swaps >= 1
