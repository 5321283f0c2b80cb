"""Time onnxruntime's kernels for the value graph's non-product work, one thread.

Each variant is a chain of eight identical blocks on a 512 x 256 float32 input (MPPI's 512
samples at the `cpu` preset's width 256); the chains alternate call by call and the median per
block is printed and written to JSON. LayerNorm forms: onnxruntime's LayerNormalization, the
same written as ReduceMean / Sub / Mul / Sqrt / Div, contrib SkipLayerNormalization, and two
RMS forms of what a LayerNorm whose centring were folded into the preceding Gemm would leave.
Mish forms: the graphs' x n / (n + 2), n = e^x (e^x + 2); x - x / (1 + e^x (1 + e^x / 2));
opset 18's Mish; Softplus and Tanh. Timing only: chained blocks change the values, so only
the first block's output is meaningful and no accuracy is compared here (the export's
self-check covers the graphs' own form). torch's layer_norm on the same input, for reference.

    python bench/epyc-avx512/ort_kernels.py --out bench/epyc-avx512/ort-kernels.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

from wmil_core.config import atomic_write
from wmil_core.machine import machine_info, torch_cpu_features

N, D, BLOCKS = 512, 256, 8
Block = Callable[[str, str, int], list]


def _const(value: float | np.ndarray, name: str):
    return numpy_helper.from_array(np.asarray(value, np.float32), name)


def _chain(block: Block, inits: list, opset: int = 17, contrib: bool = False) -> bytes:
    nodes, prev = [], "x"
    for k in range(BLOCKS):
        out = "y" if k == BLOCKS - 1 else f"t{k}"
        nodes += block(prev, out, k)
        prev = out
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [N, D]) for n in ("x", "y")]
    graph = helper.make_graph(nodes, "chain", [io[0]], [io[1]], inits)
    opsets = [helper.make_opsetid("", opset)]
    if contrib:
        opsets.append(helper.make_opsetid("com.microsoft", 1))
    return helper.make_model(graph, opset_imports=opsets, ir_version=8).SerializeToString()


def _node(op: str, ins: list[str], out: str, **attrs) -> object:
    return helper.make_node(op, ins, [out], **attrs)


def variants() -> dict[str, dict[str, bytes]]:
    """The LayerNorm and Mish chains, by family and name."""
    rng = np.random.default_rng(0)
    gamma, beta = rng.uniform(0.5, 1.5, D), rng.normal(0, 0.1, D)
    norm_inits = [_const(gamma, "g"), _const(beta, "b"), _const(1e-5, "eps"),
                  _const(1e-5 * D, "eps_d"), _const(gamma * np.sqrt(D), "g_d"),
                  _const(np.zeros((N, D)), "zero")]

    def ln(i, o, k):
        return [_node("LayerNormalization", [i, "g", "b"], o, axis=-1, epsilon=1e-5)]

    def ln_ops(i, o, k):
        return [_node("ReduceMean", [i], f"m{k}", axes=[-1], keepdims=1),
                _node("Sub", [i, f"m{k}"], f"c{k}"),
                _node("Mul", [f"c{k}", f"c{k}"], f"s{k}"),
                _node("ReduceMean", [f"s{k}"], f"v{k}", axes=[-1], keepdims=1),
                _node("Add", [f"v{k}", "eps"], f"ve{k}"),
                _node("Sqrt", [f"ve{k}"], f"sd{k}"),
                _node("Div", [f"c{k}", f"sd{k}"], f"n{k}"),
                _node("Mul", [f"n{k}", "g"], f"ng{k}"),
                _node("Add", [f"ng{k}", "b"], o)]

    def skip_ln(i, o, k):
        return [_node("SkipLayerNormalization", [i, "zero", "g", "b"], o,
                      domain="com.microsoft", epsilon=1e-5)]

    def rms_contrib(i, o, k):
        return [_node("SimplifiedLayerNormalization", [i, "g"], f"r{k}", axis=-1, epsilon=1e-5),
                _node("Add", [f"r{k}", "b"], o)]

    def rms_ops(i, o, k):
        return [_node("ReduceSumSquare", [i], f"s{k}", axes=[-1], keepdims=1),
                _node("Add", [f"s{k}", "eps_d"], f"v{k}"),
                _node("Sqrt", [f"v{k}"], f"sd{k}"),
                _node("Div", [i, f"sd{k}"], f"n{k}"),
                _node("Mul", [f"n{k}", "g_d"], f"ng{k}"),
                _node("Add", [f"ng{k}", "b"], o)]

    mish_inits = [_const(20.0, "hi"), _const(2.0, "two"), _const(0.5, "half"), _const(1.0, "one")]

    def mish_graphs(i, o, k):
        return [_node("Clip", [i, "", "hi"], f"c{k}"), _node("Exp", [f"c{k}"], f"e{k}"),
                _node("Add", [f"e{k}", "two"], f"e2{k}"),
                _node("Mul", [f"e{k}", f"e2{k}"], f"n{k}"),
                _node("Add", [f"n{k}", "two"], f"d{k}"), _node("Div", [f"n{k}", f"d{k}"], f"r{k}"),
                _node("Mul", [i, f"r{k}"], o)]

    def mish_noclamp(i, o, k):
        return [_node("Exp", [i], f"e{k}"), _node("Mul", [f"e{k}", "half"], f"h{k}"),
                _node("Add", [f"h{k}", "one"], f"a{k}"), _node("Mul", [f"e{k}", f"a{k}"], f"m{k}"),
                _node("Add", [f"m{k}", "one"], f"d{k}"), _node("Div", [i, f"d{k}"], f"q{k}"),
                _node("Sub", [i, f"q{k}"], o)]

    def mish_op(i, o, k):
        return [_node("Mish", [i], o)]

    def mish_softplus(i, o, k):
        return [_node("Softplus", [i], f"s{k}"), _node("Tanh", [f"s{k}"], f"t_{k}"),
                _node("Mul", [i, f"t_{k}"], o)]

    return {
        "layernorm": {
            "LayerNormalization": _chain(ln, norm_inits),
            "ReduceMean/Sub/Mul/Sqrt/Div": _chain(ln_ops, norm_inits, opset=13),
            "SkipLayerNormalization (contrib)": _chain(skip_ln, norm_inits, contrib=True),
            "SimplifiedLayerNormalization + Add (contrib)": _chain(rms_contrib, norm_inits,
                                                                    contrib=True),
            "ReduceSumSquare/Sqrt/Div": _chain(rms_ops, norm_inits, opset=13),
        },
        "mish": {
            "x n/(n+2) (the graphs')": _chain(mish_graphs, mish_inits),
            "x - x/(1+e(1+e/2))": _chain(mish_noclamp, mish_inits),
            "Mish (opset 18)": _chain(mish_op, [], opset=18),
            "Softplus, Tanh": _chain(mish_softplus, []),
        },
    }


def main() -> None:
    """Time every variant, print medians per block and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=150)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    x = np.random.default_rng(1).normal(0, 3, (N, D)).astype(np.float32)
    result: dict = {"onnxruntime": ort.__version__, "shape": [N, D], "blocks": BLOCKS,
                    "calls": args.calls, "median_ms_per_block": {}}
    for family, graphs in variants().items():
        sessions = {name: ort.InferenceSession(g, options, providers=["CPUExecutionProvider"])
                    for name, g in graphs.items()}
        times: dict[str, list[float]] = {name: [] for name in sessions}
        for _ in range(args.calls):
            for name, sess in sessions.items():
                start = time.perf_counter()
                sess.run(None, {"x": x})
                times[name].append(time.perf_counter() - start)
        medians = {name: float(np.median(t)) * 1e3 / BLOCKS for name, t in times.items()}
        result["median_ms_per_block"][family] = medians
        print(f"{family} ({N} x {D}, one thread, median of {args.calls} calls):")
        for name, ms in medians.items():
            print(f"  {name:46s} {ms:.3f} ms")
    torch.set_num_threads(1)
    xt, gt, bt = torch.from_numpy(x), torch.ones(D), torch.zeros(D)
    ts = []
    for _ in range(args.calls * BLOCKS):
        start = time.perf_counter()
        torch.nn.functional.layer_norm(xt, (D,), gt, bt)
        ts.append(time.perf_counter() - start)
    result["torch_layer_norm_ms"] = float(np.median(ts)) * 1e3
    print(f"torch layer_norm, same input: {result['torch_layer_norm_ms']:.3f} ms")
    result.update(machine_info())
    result.update(torch_cpu_features())
    if args.out:
        atomic_write(args.out, json.dumps(result, indent=1))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
