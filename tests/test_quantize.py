"""int8 bundles (``wmil quantize``): the Gemm rewrite, the quantised graphs, the manifest, the
refusals, and that the runtime plans with them."""

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from agent_harness import tiny_agent
from onnx import TensorProto, helper, numpy_helper

from wmil_core.cli_export import add_commands
from wmil_core.export import export_agent
from wmil_core.machine import int8_saturates
from wmil_core.quantize import INT8_OPS, gemm_to_matmul, quantize_bundle
from wmil_core.runtime import Planner, load_bundle
from wmil_core.runtime import bundle as bundle_module

META = {"task": "dmc/reacher-easy", "joint_names": ["shoulder", "wrist"],
        "action_low": [-1.0, -1.0], "action_high": [1.0, 1.0]}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("quantize")
    agent = tiny_agent("state")
    export_agent(agent, root / "float", META, batch_check=4)
    quantize_bundle(root / "float", root / "int8", batch_check=16)
    return root / "float", root / "int8"


def run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})


def test_gemm_to_matmul_computes_the_same_and_transposes_a_shared_weight_once():
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((5, 4)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "b")
    v = numpy_helper.from_array(rng.standard_normal((5, 3)).astype(np.float32), "v")
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["h"], name="g1", transB=1),
             helper.make_node("Gemm", ["x", "w"], ["h2"], name="g2", transB=1),
             helper.make_node("Add", ["h", "h2"], ["s"]),
             helper.make_node("Gemm", ["s", "v"], ["y"], name="g3")]  # B not transposed
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 3])], [w, b, v])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    x = rng.standard_normal((7, 4)).astype(np.float32)
    before = run(model, x)[0]
    assert gemm_to_matmul(model) == 3
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node]
    assert "Gemm" not in ops and ops.count("MatMul") == 3 and ops.count("Add") == 2
    assert sorted(t.name for t in model.graph.initializer) == ["b", "v", "w__t"]
    np.testing.assert_allclose(run(model, x)[0], before, rtol=1e-5, atol=1e-5)


def test_the_int8_bundle_quantises_the_planning_graphs_and_records_how(bundles):
    src, out = bundles
    b = load_bundle(out)  # hashes and spec check out
    assert b.precision == "int8" and load_bundle(src).precision == "float32"
    q = b.manifest["quantization"]
    assert set(q["weight_bits"]) == set(q["graphs"])
    assert q["graphs"] and set(q["graphs"]) <= {"dynamics", "q", "pi", "value"}
    assert "value" in q["graphs"] and "encoder" not in q["graphs"]
    assert (out / "encoder.onnx").read_bytes() == (src / "encoder.onnx").read_bytes()
    for graph in ("dynamics", "q", "pi", "value"):
        model = onnx.load(out / f"{graph}.onnx")
        counted = sum(n.op_type in INT8_OPS for n in model.graph.node)
        assert counted == q["int8_products"].get(graph, 0), graph
        if graph not in q["graphs"]:  # left float: byte for byte the source's
            assert (out / f"{graph}.onnx").read_bytes() == (src / f"{graph}.onnx").read_bytes()
        else:
            assert "Gemm" not in {n.op_type for n in model.graph.node}, graph
    for graph, diffs in q["check"]["max_diff"].items():
        assert set(diffs) == {"1", "16"}
        # int8 moves the outputs, a little: neither the float graph nor a broken one
        assert 0 < max(diffs.values()) < 0.2, (graph, diffs)
    assert q["source"]["manifest_sha256"] == load_bundle(src).manifest_sha256


def test_the_runtime_plans_with_an_int8_bundle_close_to_the_float_one(bundles):
    src, out = bundles
    rng = np.random.default_rng(0)
    planners = [Planner(load_bundle(p), threads=1, seed=3) for p in (src, out)]
    gaps = []
    for step in range(6):
        obs = {"joints": rng.standard_normal(4, dtype=np.float32),
               "features": rng.standard_normal(6, dtype=np.float32)}
        noise = planners[0].sample_noise()
        acts = [p.act(obs, t0=step == 0, noise=noise) for p in planners]
        assert all(np.isfinite(a).all() and a.shape == (2,) for a in acts)
        gaps.append(float(np.abs(acts[0] - acts[1]).max()))
    assert np.median(gaps) < 0.1, gaps  # the same plans, give or take the rounding
    from wmil.model import model_info

    assert model_info(load_bundle(out).manifest).precision == "int8"  # the ROS nodes' view


def test_the_shipped_model_quantises_and_evaluates_in_simulation(tmp_path):
    from wmil_core.bundle_eval import evaluate_bundle
    from wmil_core.paths import models_dir

    out = quantize_bundle(models_dir() / "reacher-easy", tmp_path / "int8")
    diffs = load_bundle(out).manifest["quantization"]["check"]["max_diff"]
    assert max(max(d.values()) for d in diffs.values()) < 0.1, diffs
    r = evaluate_bundle(out, episodes=1, episode_length=5)
    assert r["precision"] == "int8" and np.isfinite(r["return_mean"])


def test_quantize_refuses_bad_requests_and_keeps_what_exists(bundles, tmp_path):
    src, out = bundles
    with pytest.raises(ValueError, match="precision is 'int8'"):
        quantize_bundle(out, tmp_path / "twice")
    with pytest.raises(ValueError, match="is the source bundle"):
        quantize_bundle(src, src, overwrite=True)
    before = (out / "manifest.json").read_bytes()
    with pytest.raises(ValueError, match="exists already"):
        quantize_bundle(src, out)
    assert (out / "manifest.json").read_bytes() == before
    assert not list(out.parent.glob(".*partial"))
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in src.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    m = json.loads((bad / "manifest.json").read_text())
    m["precision"] = "int4"
    (bad / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ValueError, match="precision must be one of float32, int8"):
        load_bundle(bad)


def test_wmil_quantize_command_writes_beside_the_source(bundles, tmp_path, capsys):
    src, _ = bundles
    parser = argparse.ArgumentParser(prog="wmil")
    sub = parser.add_subparsers(dest="command", required=True)
    add_commands(sub, sub.add_parser("bench").add_subparsers(dest="bench_command"))
    dst = tmp_path / "cli-int8"
    args = parser.parse_args(["quantize", str(src), "--out", str(dst), "--batch-check", "8"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "value.onnx" in printed and str(dst) in printed
    assert load_bundle(dst).precision == "int8"
    # no --out: beside the source, named after it (also when given its manifest)
    copy = tmp_path / "float"
    copy.mkdir()
    for f in src.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    args = parser.parse_args(["quantize", str(copy / "manifest.json"), "--batch-check", "4"])
    assert args.func(args) == 0
    assert load_bundle(tmp_path / "float-int8").precision == "int8"


def test_per_channel_scales_are_recorded_and_stay_close(bundles, tmp_path):
    src, out = bundles
    pc = quantize_bundle(src, tmp_path / "pc", per_channel=True, batch_check=16)
    q, q_tensor = (load_bundle(p).manifest["quantization"] for p in (pc, out))
    assert q["per_channel"] is True and q_tensor["per_channel"] is False
    assert "per output channel" in q["method"] and q["graphs"] == q_tensor["graphs"]
    # other weights: other graphs, not byte copies of the per-tensor ones
    assert (pc / "value.onnx").read_bytes() != (out / "value.onnx").read_bytes()
    for graph, diffs in q["check"]["max_diff"].items():
        assert 0 < max(diffs.values()) < 0.2, (graph, diffs)


def _max_diff(bundle: Path, graph: str | None = None) -> float:
    diffs = load_bundle(bundle).manifest["quantization"]["check"]["max_diff"]
    return max(max(d.values()) for g, d in diffs.items() if graph in (None, g))


def test_weight_bits_are_chosen_per_graph_recorded_and_warned_of(bundles, tmp_path,
                                                                 monkeypatch):
    src, out = bundles
    parser = argparse.ArgumentParser(prog="wmil")
    sub = parser.add_subparsers(dest="command", required=True)
    add_commands(sub, sub.add_parser("bench").add_subparsers(dest="bench_command"))
    b8, b7 = tmp_path / "b8", tmp_path / "b7"
    for path, bits in ((b8, "8"), (b7, "7")):
        args = parser.parse_args(["quantize", str(src), "--out", str(path), "--weight-bits",
                                  bits, "--batch-check", "16"])
        assert args.func(args) == 0
    q8, q7, qa = (load_bundle(p).manifest["quantization"] for p in (b8, b7, out))
    assert set(q8["weight_bits"].values()) == {8} and set(q7["weight_bits"].values()) == {7}
    assert (b8 / "value.onnx").read_bytes() != (b7 / "value.onnx").read_bytes()
    assert qa["weight_bits_requested"] == "auto"
    assert qa["quantized_on"]["int8_saturates"] is int8_saturates()
    for graph in qa["graphs"]:  # auto: the closer of the two where products can saturate
        if int8_saturates():
            assert _max_diff(out, graph) == min(_max_diff(b8, graph), _max_diff(b7, graph))
        else:
            assert qa["weight_bits"][graph] == 8
            assert (out / f"{graph}.onnx").read_bytes() == (b8 / f"{graph}.onnx").read_bytes()
    with pytest.raises(ValueError, match="weight_bits: must be auto, 7 or 8"):
        quantize_bundle(src, tmp_path / "b6", weight_bits=6)
    # full-range weights chosen on a CPU with VNNI, loaded on one without: a warning
    m = json.loads((b8 / "manifest.json").read_text())
    m["quantization"]["quantized_on"]["int8_saturates"] = False
    vnni = tmp_path / "vnni"
    vnni.mkdir()
    for f in b8.iterdir():
        (vnni / f.name).write_bytes(f.read_bytes())
    (vnni / "manifest.json").write_text(json.dumps(m))
    monkeypatch.setattr(bundle_module, "int8_saturates", lambda: True)
    with pytest.warns(RuntimeWarning, match="dynamics, pi, value carry full-range int8"):
        load_bundle(vnni)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_bundle(b7)  # 7-bit weights cannot saturate
        m["quantization"]["quantized_on"]["int8_saturates"] = True
        (vnni / "manifest.json").write_text(json.dumps(m))
        load_bundle(vnni)  # chosen on a CPU like this one: its check saw any saturation
        monkeypatch.setattr(bundle_module, "int8_saturates", lambda: False)
        load_bundle(b8)  # a VNNI CPU: the full range is safe


@pytest.mark.skipif(not int8_saturates(), reason="this CPU has VNNI: products do not saturate")
def test_on_a_cpu_without_vnni_auto_avoids_the_saturating_graph(bundles, tmp_path):
    """The tiny agent's value graph saturates with 8-bit weights on an AVX2 CPU (0.25 apart)."""
    src, out = bundles
    full = quantize_bundle(src, tmp_path / "full", batch_check=16, weight_bits=8)
    assert _max_diff(out) < 0.5 * _max_diff(full), (_max_diff(out), _max_diff(full))


@pytest.mark.parametrize("flags,saturates", [
    ({"sse4_2", "avx", "avx2", "fma"}, True),  # AVX2 (the AMD EPYC of session 21)
    ({"sse4_2", "avx2", "avx512f", "avx512bw"}, True),  # AVX-512 without VNNI
    ({"sse4_2", "avx2", "avx512f", "avx512_vnni"}, False),
    ({"sse4_2", "avx2", "avx_vnni"}, False),
    ({"fp", "asimd", "asimddp"}, False),  # ARM: no u8 x s8 pair sums in 16 bits
    (set(), False),  # unknown
])
def test_int8_saturates_on_x86_without_vnni(flags, saturates):
    assert int8_saturates(frozenset(flags)) is saturates
