"""Exporting agents as ONNX bundles: checked graphs, manifest, atomicity, the CLI commands."""

import argparse
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from agent_harness import MODES, TINY, tiny_agent

from wmil_core.agents.iqmpc import IQMPC
from wmil_core.cli_export import add_commands
from wmil_core.collect import collect_demos
from wmil_core.export import TOLERANCE, export_agent, export_bundle
from wmil_core.planning import PlannerConfig, trajectory_value
from wmil_core.train import TrainConfig, Trainer

torch.set_num_threads(1)

META = {"task": "dmc/reacher-easy", "joint_names": ["shoulder", "wrist"],
        "action_low": [-1.0, -2.0], "action_high": [1.0, 2.0]}
GRAPHS = ["encoder", "dynamics", "q", "pi", "value"]


@pytest.fixture(scope="module", params=list(MODES))
def exported(request, tmp_path_factory):
    agent = tiny_agent(request.param)
    out = tmp_path_factory.mktemp("bundles") / request.param.replace("+", "_")
    export_agent(agent, out, META)
    return agent, out, request.param


@pytest.fixture(scope="module")
def state_agent() -> IQMPC:
    return tiny_agent("state")


def manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def test_graphs_pass_the_checker_and_the_self_check(exported):
    _, out, _ = exported
    m = manifest(out)
    for name in GRAPHS:
        graph = onnx.load(out / f"{name}.onnx")
        onnx.checker.check_model(graph, full_check=True)
        assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
    check = m["export"]["check"]
    assert check["passed"] and check["batches"] == [1, 64]
    for name in GRAPHS:
        diffs = check["max_abs_diff"][name]
        assert diffs["1"] <= TOLERANCE and diffs["64"] <= TOLERANCE, (name, diffs)


def _session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def test_graphs_match_torch_on_fresh_inputs(exported):
    """Independent of the self-check: other batch sizes, head orders and inputs."""
    agent, out, mode = exported
    m = agent.model
    g = torch.Generator().manual_seed(123)
    for b in (1, 7):
        obs = {k: (torch.randint(0, 256, (b, *s), generator=g, dtype=torch.uint8) if k == "image"
                   else torch.randn(b, *s, generator=g)) for k, s in MODES[mode].items()}
        with torch.no_grad():
            z = m.encode(obs)
            a = torch.rand(b, 2, generator=g) * 2 - 1
            heads = torch.tensor([1, 0])
            ref_q = m.Q_heads(z, a, heads)
            ref_next = m.next(z, a)
        got_z = _session(out / "encoder.onnx").run(None, {k: v.numpy() for k, v in obs.items()})
        assert np.abs(got_z[0] - z.numpy()).max() <= TOLERANCE
        got_q = _session(out / "q.onnx").run(None, {"z": z.numpy(), "a": a.numpy(),
                                                    "heads": heads.numpy()})[0]
        assert got_q.shape == (2, b, 1)
        assert np.abs(got_q - ref_q.numpy()).max() <= TOLERANCE
        got_next = _session(out / "dynamics.onnx").run(None, {"z": z.numpy(), "a": a.numpy()})
        assert np.abs(got_next[0] - ref_next.numpy()).max() <= TOLERANCE
    # the fused value graph at a third candidate count, against planning.trajectory_value
    # from N copies of its one start row (the manifest says the start is shared)
    n, h = 5, 3
    z0 = m.encode({k: (torch.randint(0, 256, (1, *s), generator=g, dtype=torch.uint8)
                       if k == "image" else torch.randn(1, *s, generator=g))
                   for k, s in MODES[mode].items()}).detach()
    acts = torch.rand(h, n, 2, generator=g) * 2 - 1
    eps = torch.randn(h + 1, n, 2, generator=g)
    heads = torch.tensor([[0, 1], [1, 0], [0, 1], [1, 0]])
    with torch.no_grad():
        ref = trajectory_value(m, z0.expand(n, -1), acts, agent.gamma, agent.cfg.beta, eps,
                               heads)
    got = _session(out / "value.onnx").run(None, {"z0": z0.numpy(), "actions": acts.numpy(),
                                                  "value_eps": eps.numpy(),
                                                  "heads": heads.numpy()})[0]
    assert got.shape == (n, 1) and np.abs(got - ref.numpy()).max() <= TOLERANCE
    assert ref.std() > 1e-3  # the values are not all alike: the comparison means something
    assert json.loads((out / "manifest.json").read_text())["graphs"]["value"]["start"] == "shared"


def test_manifest_describes_the_bundle(exported):
    agent, out, mode = exported
    m = manifest(out)
    assert m["format_version"] == 1 and m["task"] == "dmc/reacher-easy"
    shapes = MODES[mode]
    assert m["obs_mode"] == mode
    spec = m["observation"]["spec"]
    assert {k: tuple(v["shape"]) for k, v in spec.items()} == shapes
    assert spec["joints"]["dtype"] == "float32"
    assert m["observation"]["joint_names"] == ["shoulder", "wrist"]
    if "image" in shapes:
        assert spec["image"]["dtype"] == "uint8"
        assert m["observation"]["image"] == {"size": 40, "frames": 2}
    assert m["action"] == {"dim": 2, "low": [-1.0, -2.0], "high": [1.0, 2.0]}
    assert set(m["planner"]) == {f.name for f in PlannerConfig.__dataclass_fields__.values()}
    assert m["planner"]["num_samples"] == 32 and m["graphs"]["value"]["horizon"] == 3
    assert m["gamma"] == pytest.approx(agent.gamma) and m["beta"] == agent.cfg.beta
    assert m["num_q"] == 2 and m["latent_dim"] == 16
    files = sorted(p.name for p in out.iterdir() if p.name != "manifest.json")
    assert sorted(m["files"]) == files == sorted(f"{g}.onnx" for g in GRAPHS)
    for name, digest in m["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest


def test_export_leaves_the_agent_alone(tmp_path):
    agent = tiny_agent("pixels+joints", seed=1)
    before = {k: v.clone() for k, v in agent.model.state_dict().items()}
    rng = torch.get_rng_state()
    export_agent(agent, tmp_path / "b", META, batch_check=8)
    assert not agent.model.training and not agent.model._encoder.conv.aug.training
    assert all(torch.equal(before[k], v) for k, v in agent.model.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state())


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


def test_existing_bundle_is_refused_unless_overwrite(state_agent, tmp_path):
    agent = state_agent
    out = tmp_path / "b"
    export_agent(agent, out, META, batch_check=4)
    first = manifest(out)["export"]["created"]
    with pytest.raises(ValueError, match="exists already"):
        export_agent(agent, out, META, batch_check=4)
    export_agent(agent, out, {**META, "name": "second"}, batch_check=4, overwrite=True)
    assert manifest(out)["name"] == "second" and first
    assert _leftovers(tmp_path) == ["b"]


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_interrupted_export_leaves_nothing(state_agent, tmp_path, monkeypatch, error):
    import wmil_core.export as ex

    agent = state_agent
    calls = []
    real = ex.check_graph

    def failing(*args, **kw):
        calls.append(1)
        if len(calls) == 3:  # midway: two graphs written and checked
            raise error("interrupted")
        return real(*args, **kw)

    monkeypatch.setattr(ex, "check_graph", failing)
    with pytest.raises(error):
        export_agent(agent, tmp_path / "b", META, batch_check=4)
    assert _leftovers(tmp_path) == []
    # an interrupted overwrite keeps the old bundle as it was
    monkeypatch.setattr(ex, "check_graph", real)
    export_agent(agent, tmp_path / "b", META, batch_check=4)
    old = manifest(tmp_path / "b")
    calls.clear()
    monkeypatch.setattr(ex, "check_graph", failing)
    with pytest.raises(error):
        export_agent(agent, tmp_path / "b", META, batch_check=4, overwrite=True)
    assert _leftovers(tmp_path) == ["b"] and manifest(tmp_path / "b") == old


def test_failed_self_check_refuses_the_export(state_agent, tmp_path, monkeypatch):
    import wmil_core.export as ex

    agent = state_agent
    monkeypatch.setattr(ex, "TOLERANCE", 0.0)  # no float32 graph matches torch bit for bit
    with pytest.raises(ValueError, match=r"export check failed: \w+\.onnx differs from torch"):
        export_agent(agent, tmp_path / "b", META, batch_check=4)
    assert _leftovers(tmp_path) == []


def test_bad_meta_is_refused(state_agent, tmp_path):
    agent = state_agent
    with pytest.raises(ValueError, match="meta: missing key 'task'"):
        export_agent(agent, tmp_path / "b", {k: v for k, v in META.items() if k != "task"})
    with pytest.raises(ValueError, match="action_low/action_high must have 2 values"):
        export_agent(agent, tmp_path / "b", {**META, "action_low": [-1.0]})
    with pytest.raises(ValueError, match="meta: unknown key 'tsak'"):
        export_agent(agent, tmp_path / "b", {**META, "tsak": "x"})
    assert _leftovers(tmp_path) == []


# -- from a (tiny) training run, and the commands ----------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("run")
    demos = root / "reacher.h5"
    collect_demos("dmc/reacher-easy", 2, "state", demos, seed=0, progress=False)
    cfg = TrainConfig(task="dmc/reacher-easy", demos=str(demos), agent=TINY, offline_steps=5,
                      steps=30, seed_steps=20, eval_every=30, eval_episodes=1,
                      checkpoint_every=30, episode_length=15, buffer_size=200, threads=1)
    run = root / "tiny"
    trainer = Trainer(cfg, run, progress=False)
    trainer.train()
    trainer.env.close()
    trainer.eval_env.close()
    return run


def test_export_bundle_from_a_run_and_from_its_checkpoint(tiny_run, tmp_path):
    out = export_bundle(tiny_run, tmp_path / "from_run", batch_check=16)
    m = manifest(out)
    assert m["name"] == "tiny" and m["task"] == "dmc/reacher-easy" and m["obs_mode"] == "state"
    assert m["training"]["step"] == 30 and m["training"]["updates"] > 0
    assert m["training"]["evaluation"]["step"] == 30
    assert "normalized_score" in m["training"]["evaluation"]
    assert m["source"]["checkpoint"] == str((tiny_run / "checkpoints" / "latest.pt").resolve())
    assert m["observation"]["joint_names"] == ["shoulder", "wrist"]
    assert m["action"]["low"] == [-1.0, -1.0] and m["action"]["high"] == [1.0, 1.0]
    assert m["export"]["check"]["passed"]
    ckpt = export_bundle(tiny_run / "checkpoints" / "latest.pt", tmp_path / "from_ckpt",
                         name="named", batch_check=4)
    assert manifest(ckpt)["name"] == "named"
    assert manifest(ckpt)["source"]["run"] == str(tiny_run.resolve())
    loose = tmp_path / "elsewhere" / "copy.pt"  # a checkpoint outside its run: its own config
    loose.parent.mkdir()
    loose.write_bytes((tiny_run / "checkpoints" / "latest.pt").read_bytes())
    m = manifest(export_bundle(loose, tmp_path / "loose", batch_check=4))
    assert m["name"] == "loose" and m["source"]["run"] is None
    assert m["training"]["step"] == 30 and m["task"] == "dmc/reacher-easy"
    with pytest.raises(ValueError, match="no such checkpoint"):
        export_bundle(tmp_path, tmp_path / "x")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wmil")
    sub = p.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench").add_subparsers(dest="bench_command", required=True)
    add_commands(sub, bench)
    return p


def test_cli_export_and_bench_planner(tiny_run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = _parser()
    args = p.parse_args(["export", str(tiny_run), "--batch-check", "4"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "models" / "tiny" / "manifest.json").is_file()
    assert "value.onnx" in out and "models/tiny" in out
    with pytest.raises(ValueError, match="exists already"):
        args.func(args)

    args = p.parse_args(["bench", "planner", "models/tiny", "--repeats", "3", "--samples", "16",
                         "--threads", "1"])
    assert args.func(args) == 0
    r = json.loads((tmp_path / "bench" / "planner-tiny.json").read_text())
    assert r["planner"]["num_samples"] == 16 and r["torch"]["n"] == r["runtime"]["n"] == 3
    assert r["max_action_diff"] <= TOLERANCE  # same checkpoint, same noise: same actions
    assert r["steps_within_1e-4"] == 1.0 and r["median_action_diff"] <= r["max_action_diff"]
    assert r["speedup_p50"] > 0 and r["flops_per_plan"]["total"] > 0
    # the eager torch planner (no fused kernels) is timed beside and plans the same
    assert r["torch_eager"]["n"] == 3 and r["speedup_vs_eager_p50"] > 0
    assert r["max_action_diff_eager_vs_torch"] <= TOLERANCE
    assert r["peak_gflops"]["onnxruntime"] > 0 and r["runtime_gflops"] > 0
    # the runtime's FLOPs are its value path's: fewer than torch's with the shared start
    assert r["value_start"] == "shared" and r["value_heads"] == "unrolled"  # two heads: auto
    fewer = r["flops_per_plan"]["total"] < r["torch_flops_per_plan"]["total"]
    assert fewer == (r["value_graph"] == "fused")
    assert "p50" in capsys.readouterr().out

    # the older layout on request, and an A/B of the two value graphs on the same inputs
    args = p.parse_args(["export", str(tiny_run), "--batch-check", "4", "--value-start",
                         "per_sample", "--value-heads", "gathered", "--out", "models/tiny-ps"])
    assert args.func(args) == 0
    m = json.loads((tmp_path / "models" / "tiny-ps" / "manifest.json").read_text())
    assert m["graphs"]["value"]["start"] == "per_sample"
    assert m["graphs"]["value"]["q_heads"] == "gathered"
    capsys.readouterr()
    args = p.parse_args(["bench", "value-graph", "models/tiny", "models/tiny-ps", "--samples",
                         "16", "--repeats", "3", "--out", "vg.json", "--profile", "2"])
    assert args.func(args) == 0
    r = json.loads((tmp_path / "vg.json").read_text())
    assert [b["value_start"] for b in r["bundles"]] == ["shared", "per_sample"]
    assert [b["value_heads"] for b in r["bundles"]] == ["unrolled", "gathered"]
    assert r["bundles"][0]["speedup_vs_first"] == 1.0 and r["bundles"][1]["p50_ms"] > 0
    assert r["bundles"][1]["max_value_diff_vs_first"] <= TOLERANCE * max(1.0, r["value_scale"])
    assert r["value_scale"] > 0
    printed = capsys.readouterr().out
    assert "(start: per_sample, Q heads: gathered)" in printed
    # the profiles: the gathered graph gathers head weights and normalises both heads in one
    # node; the unrolled one gathers none of them and normalises each head in its own node
    shared, gathered = (b["profile"]["ops"] for b in r["bundles"])
    assert "kernel time per call by operator" in printed and "LayerNormalization" in printed
    assert gathered["Gather"]["nodes"] > shared.get("Gather", {"nodes": 0})["nodes"]
    assert gathered["LayerNormalization"]["nodes"] < shared["LayerNormalization"]["nodes"]
    with pytest.raises(ValueError, match="two or more bundles"):
        args.func(p.parse_args(["bench", "value-graph", "models/tiny"]))
    assert not [f for f in os.listdir(tmp_path / "models") if f.startswith(".")]

    args = p.parse_args(["bench", "planner", "models/tiny", "--repeats", "2", "--samples", "16",
                         "--threads", "2", "--shards", "2", "--out", "sharded.json"])
    assert args.func(args) == 0
    r = json.loads((tmp_path / "sharded.json").read_text())
    assert r["shards"] == 2 and r["threads"] == 2 and r["max_action_diff"] <= TOLERANCE
    assert "2 shards" in capsys.readouterr().out
    # more bundles of the model in the same loop: the older layout plans as torch does, its
    # int8 copy close to it
    args = p.parse_args(["quantize", "models/tiny", "--batch-check", "4"])
    assert args.func(args) == 0  # writes models/tiny-int8
    args = p.parse_args(["bench", "planner", "models/tiny", "--repeats", "3", "--samples", "16",
                         "--threads", "1", "--also", "models/tiny-ps", "models/tiny-int8",
                         "--out", "also.json"])
    assert args.func(args) == 0
    r = json.loads((tmp_path / "also.json").read_text())
    assert [(a["bundle"], a["precision"]) for a in r["also"]] == [
        ("models/tiny-ps", "float32"), ("models/tiny-int8", "int8")]
    assert all(a["runtime"]["n"] == 3 and a["speedup_vs_runtime_p50"] > 0 for a in r["also"])
    assert r["also"][0]["max_action_diff"] <= TOLERANCE
    assert 0 < r["also"][1]["max_action_diff"] < 0.5
    # each runtime's rate against the peak of its own arithmetic
    peak = r["peak_gflops"]
    assert r["runtime_fraction_of_peak"] == pytest.approx(r["runtime_gflops"] / peak["onnxruntime"])
    for a, key in zip(r["also"], ("onnxruntime", "onnxruntime_int8")):
        assert a["runtime_fraction_of_peak"] == pytest.approx(a["runtime_gflops"] / peak[key])
    assert "also models/tiny-int8 (int8)" in capsys.readouterr().out
    args = p.parse_args(["bench", "planner", "models/tiny", "--threads", "1", "--shards", "2"])
    with pytest.raises(ValueError, match="shards: must be >= 1 and divide --threads"):
        args.func(args)


def test_check_measure_is_absolute_below_one_and_relative_above():
    from wmil_core.runtime.bundle import scaled_diff

    ref = np.array([400.0, -3.0], dtype=np.float32)
    assert scaled_diff(ref + np.float32(2e-4), ref) <= TOLERANCE  # float32 noise at 400
    assert scaled_diff(ref + np.float32(0.05), ref) > TOLERANCE  # a real error at 400
    small = np.array([0.5, -0.25], dtype=np.float32)
    assert scaled_diff(small + np.float32(2e-4), small) > TOLERANCE  # absolute below 1
    assert scaled_diff(np.zeros(3), np.zeros(2)) == float("inf")  # shape mismatch


def test_matmul_peak_times_numpy_on_the_runtimes_thread_count(monkeypatch):
    """numpy's BLAS would use every core by default; the peak compares like with like."""
    import threadpoolctl

    from wmil_core.cli_export import matmul_peak

    limits = []
    real = threadpoolctl.threadpool_limits

    def spy(limits_=None, **kw):
        limits.append((kw.get("limits", limits_), kw.get("user_api")))
        return real(**kw)

    monkeypatch.setattr(threadpoolctl, "threadpool_limits", spy)
    peak = matmul_peak(1, size=64, repeats=1)
    assert limits == [(1, "blas")]
    assert peak["numpy"] > 0 and peak["onnxruntime"] > 0 and peak["onnxruntime_int8"] > 0
