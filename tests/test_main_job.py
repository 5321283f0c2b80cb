"""The main job (`wmil demo`) end to end on a small budget, over real DDS."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wmil.main_job import DemoJob, run_demo
from wmil_core.bundle_eval import evaluate_bundle, record_evaluation, write_gif
from wmil_core.runtime import load_bundle

EPISODE = 40  # agent steps per episode in these tests


def test_write_gif_is_atomic_and_complete(tmp_path: Path):
    frames = [np.full((8, 8, 3), i * 20, dtype=np.uint8) for i in range(5)]
    path = write_gif(frames, tmp_path / "a.gif")
    im = Image.open(path)
    assert im.n_frames == 5 and im.size == (8, 8)
    assert [p.name for p in tmp_path.iterdir()] == ["a.gif"]  # no temp file left behind
    with pytest.raises(ValueError, match="no frames"):
        write_gif([], tmp_path / "b.gif")


def test_main_job_small_budget(tmp_path: Path):
    job = DemoJob(demos=2, offline_steps=30, steps=2 * EPISODE, seed_steps=EPISODE, bc_steps=30,
                  episodes=2, out=str(tmp_path / "demo"), shipped="", episode_length=EPISODE)
    s = run_demo(job)
    out = Path(job.out)
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(s))
    expert = s["expert"]["return_mean"]
    assert expert > 0
    for key in ("bc", "iqmpc_inprocess", "iqmpc_ros"):
        r = s[key]
        assert r["normalized_score"] == pytest.approx(r["return_mean"] / expert)
    # the exported bundle loads (hashes, spec) and the ROS 2 loop ran every episode on it
    bundle = load_bundle(out / "model")
    assert bundle.obs_spec and len(s["iqmpc_ros"]["returns"]) == 2
    # same bundle, same seeds, same planner seed: the closed loop over DDS reproduces the
    # in-process returns (lockstep; a dropped or stale observation would change them)
    assert s["iqmpc_ros"]["returns"] == pytest.approx(s["iqmpc_inprocess"]["returns"], abs=1e-6)
    lat = s["iqmpc_ros"]["latency_ms"]
    assert 0 < lat["plan_p50_ms"] <= lat["plan_p99_ms"] and lat["command_p50_ms"] > 0
    assert Image.open(out / "camera.gif").n_frames == EPISODE
    assert (out / "iqmpc" / "plots" / "learning_curve.png").is_file()


def test_record_evaluation_keeps_the_bundle_valid(tmp_path: Path):
    from wmil_core.export import export_agent

    meta = {"name": "t", "task": "dmc/reacher-easy", "obs_mode": "state",
            "joint_names": ["shoulder", "wrist"], "action_low": [-1.0, -1.0],
            "action_high": [1.0, 1.0], "training": {"step": 0}}
    model = export_agent(_reacher_agent(), tmp_path / "m", meta)
    ev = evaluate_bundle(model, episodes=1, episode_length=10)
    assert ev["episodes"] == 1 and len(ev["returns"]) == 1 and ev["plan_p50_ms"] > 0
    record_evaluation(model, ev)
    assert load_bundle(model).manifest["evaluation"]["returns"] == ev["returns"]


def _reacher_agent():
    import torch
    from agent_harness import TINY

    from wmil_core.agents.iqmpc import IQMPC, IQMPCConfig
    from wmil_core.config import from_dict

    torch.manual_seed(0)
    return IQMPC({"joints": (4,), "features": (2,)}, 2, 500, from_dict(IQMPCConfig, TINY))


def test_cli_eval_of_a_bundle_records_in_the_manifest(tmp_path: Path, capsys):
    from wmil_core.cli import main
    from wmil_core.export import export_agent

    meta = {"name": "t", "task": "dmc/reacher-easy", "obs_mode": "state",
            "joint_names": ["shoulder", "wrist"], "action_low": [-1.0, -1.0],
            "action_high": [1.0, 1.0], "training": {"step": 0, "expert_return": 900.0}}
    model = export_agent(_reacher_agent(), tmp_path / "m", meta)
    assert main(["eval", str(model), "--episodes", "1", "--samples", "16", "--record",
                 "--out", str(tmp_path / "e.json")]) == 0
    assert "normalized score" in capsys.readouterr().out
    ev = json.loads((tmp_path / "e.json").read_text())
    assert ev["normalized_score"] == pytest.approx(ev["return_mean"] / 900.0)
    assert load_bundle(model).manifest["evaluation"] == ev
    # sample shards on parallel sessions plan the same actions: the same episode return
    assert main(["eval", str(model), "--episodes", "1", "--samples", "16", "--shards", "2",
                 "--out", str(tmp_path / "s.json")]) == 0
    sharded = json.loads((tmp_path / "s.json").read_text())
    assert sharded["return_mean"] == pytest.approx(ev["return_mean"], abs=1e-6)
    for flag, msg in (("--prior", "--prior: applies to runs"), ("--online", "--online: applies")):
        assert main(["eval", str(model), "--episodes", "1", flag]) == 2
        err = capsys.readouterr().err.strip()
        assert msg in err and "\n" not in err, err


@pytest.mark.slow
def test_shipped_model_closed_loop_matches_in_process():
    """The shipped bundle over DDS (sim + planner, lockstep) scores within 10% of the same
    bundle evaluated in-process on the same seeds."""
    from wmil.stack import DEFAULT_MODEL, PLANNER, SIM, run_stack
    from wmil_core.paths import models_dir

    model = models_dir() / DEFAULT_MODEL
    ref = evaluate_bundle(model, episodes=3, seed=10_000)
    res = run_stack({SIM: {"seed": 10_000}, PLANNER: {"model_dir": str(model)}}, episodes=3,
                    timeout=900.0)
    ros = [float(e["return"]) for e in res.episodes]
    assert abs(np.mean(ros) - ref["return_mean"]) <= 0.1 * ref["return_mean"] + 1e-6
    assert ref["return_mean"] > 0  # the shipped model reaches the target in these episodes
