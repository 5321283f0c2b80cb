"""``wmil quantize``: an int8 copy of a model bundle for faster planning on CPUs.

The planning graphs (dynamics, Q heads, policy prior and the fused value graph) get int8
weights and dynamically quantised uint8 activations (onnxruntime's dynamic quantisation: the
products run as integer matrix multiplies, everything else stays float32). The encoder, run
once per control step, stays float32. The exporter writes each ``nn.Linear`` as a ``Gemm``,
whose shape inference onnxruntime's quantiser breaks; :func:`gemm_to_matmul` first rewrites
every such node as ``MatMul`` (+ ``Add`` of the bias), which computes the same.

The float bundle was checked against torch at export (1e-4); the quantised one cannot meet
that, so it is checked against the float graphs instead, on random inputs of the planner's
shapes, and the differences go into its manifest (``quantization.check``). What the
quantisation costs in score is for ``wmil eval`` to measure; what it buys, for
``wmil bench planner`` and ``wmil bench value-graph``.

Does not import torch.
"""

from __future__ import annotations

import copy
import datetime
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from onnx import helper, numpy_helper

from wmil_core.config import atomic_write, staging_dir
from wmil_core.machine import cpu_model, int8_saturates
from wmil_core.runtime.bundle import load_bundle, scaled_diff, seal_bundle

QUANTIZED_GRAPHS = ("dynamics", "q", "pi", "value")
WeightBits = Literal["auto", 7, 8]  # quantize_bundle's weight_bits


def gemm_to_matmul(model: onnx.ModelProto) -> int:
    """Rewrite, in place, every ``Gemm`` with a constant weight (alpha = beta = 1, A not
    transposed) as ``MatMul`` by the (transposed) weight, plus ``Add`` of the bias when it has
    one; returns how many nodes were rewritten. A weight shared by several nodes is transposed
    once; initialisers nothing reads any more are dropped."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    nodes: list[onnx.NodeProto] = []
    rewritten = 0
    for node in g.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if (node.op_type != "Gemm" or node.input[1] not in inits or attrs.get("transA", 0)
                or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0):
            nodes.append(node)
            continue
        weight = node.input[1]
        if attrs.get("transB", 0):
            name = f"{weight}__t"
            if name not in inits:
                inits[name] = numpy_helper.from_array(
                    np.ascontiguousarray(numpy_helper.to_array(inits[weight]).T), name)
                g.initializer.append(inits[name])
            weight = name
        out = node.output[0]
        has_bias = len(node.input) > 2 and node.input[2] != ""
        product = f"{out}__matmul" if has_bias else out
        nodes.append(helper.make_node("MatMul", [node.input[0], weight], [product],
                                      name=f"{node.name}__matmul"))
        if has_bias:
            nodes.append(helper.make_node("Add", [product, node.input[2]], [out],
                                          name=f"{node.name}__bias"))
        rewritten += 1
    del g.node[:]
    g.node.extend(nodes)
    read = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    kept = [t for t in g.initializer if t.name in read]
    del g.initializer[:]
    g.initializer.extend(kept)
    return rewritten


INT8_OPS = ("MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
            "QLinearMatMul")


def int8_products(data: bytes) -> int:
    """How many integer matrix multiplies an ONNX graph holds."""
    return sum(n.op_type in INT8_OPS for n in onnx.load_from_string(data).graph.node)


def quantize_graph(data: bytes, per_channel: bool = False, weight_bits: int = 8) -> bytes:
    """An ONNX graph with int8 weights and dynamically quantised activations in its matrix
    multiplies by constant weights (after :func:`gemm_to_matmul`); products by weights the
    graph gathers at run time (the Q heads a ``heads`` input picks) stay float32.

    ``weight_bits`` 7: onnxruntime's reduced range, which keeps the uint8 x int8 products of
    x86 CPUs without VNNI (AVX2, AVX-512F) from saturating their 16-bit pair sums, at half
    the weights' resolution."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load_from_string(data)
    gemm_to_matmul(model)
    onnx.checker.check_model(model)
    with tempfile.TemporaryDirectory(prefix="wmil-quantize-") as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, src)
        # the quantiser logs a pre-processing hint on the root logger on every call; the
        # graphs need none (their shapes are static but for the batch axis)
        logging.disable(logging.WARNING)
        try:
            quantize_dynamic(src, dst, op_types_to_quantize=["MatMul"],
                             per_channel=per_channel, reduce_range=weight_bits == 7,
                             weight_type=QuantType.QInt8)
        finally:
            logging.disable(logging.NOTSET)
        out = onnx.load(dst)
    onnx.checker.check_model(out, full_check=True)
    return out.SerializeToString()


def _inputs(model: onnx.ModelProto, batch: int, latent: int, group: int, num_q: int,
            rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random feeds of the planner's kind for a planning graph, its symbolic axes at ``batch``:
    SimNorm latents for ``z``/``z0``, actions in [-1, 1], standard normal noise, distinct Q
    heads per row."""
    feeds: dict[str, np.ndarray] = {}
    for inp in model.graph.input:
        shape = [d.dim_value if d.HasField("dim_value") else batch
                 for d in inp.type.tensor_type.shape.dim]
        if inp.name in ("z", "z0"):
            logits = rng.standard_normal((*shape[:-1], latent // group, group)) * 2
            e = np.exp(logits - logits.max(-1, keepdims=True))
            feeds[inp.name] = (e / e.sum(-1, keepdims=True)).reshape(shape).astype(np.float32)
        elif inp.name in ("a", "actions"):
            feeds[inp.name] = rng.uniform(-1, 1, shape).astype(np.float32)
        elif inp.name in ("eps", "value_eps"):
            feeds[inp.name] = rng.standard_normal(shape, dtype=np.float32)
        elif inp.name == "heads":  # its symbolic axis is the number of heads: the planner's 2
            shape = [d.dim_value if d.HasField("dim_value") else min(2, num_q)
                     for d in inp.type.tensor_type.shape.dim]
            rows = int(np.prod(shape[:-1]))
            picks = [rng.permutation(num_q)[: shape[-1]] for _ in range(rows)]
            feeds[inp.name] = np.asarray(picks, dtype=np.int64).reshape(shape)
        else:
            raise ValueError(f"{inp.name}: an input this quantiser does not know how to feed")
    return feeds


def compare_graphs(float_graph: bytes, int8_graph: bytes, latent: int, group: int, num_q: int,
                   batches: tuple[int, ...], seed: int = 0) -> dict[str, float]:
    """Largest difference of the int8 graph's outputs from the float graph's per batch size,
    scaled as the export check scales it: max |int8 - float| / max(1, max |float|)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 4
    sessions = [ort.InferenceSession(g, opts, providers=["CPUExecutionProvider"])
                for g in (float_graph, int8_graph)]
    model = onnx.load_from_string(float_graph)
    out: dict[str, float] = {}
    for b in batches:
        feeds = _inputs(model, b, latent, group, num_q, np.random.default_rng(seed + b))
        ref, got = (s.run(None, feeds) for s in sessions)
        out[str(b)] = max(scaled_diff(g, r) for g, r in zip(got, ref))
    return out


def quantize_bundle(src: str | Path, out_dir: str | Path, per_channel: bool = False,
                    batch_check: int = 64, overwrite: bool = False,
                    name: str | None = None, weight_bits: WeightBits = "auto") -> Path:
    """Write an int8 copy of the float bundle ``src`` at ``out_dir``; returns ``out_dir``.

    The manifest is the source's, with ``precision: int8``, a ``quantization`` record (method,
    graphs, source bundle and its manifest's sha256, the check against the float graphs) and
    the new files' hashes. ``weight_bits`` 8 or 7 (reduced range) for every graph, or "auto":
    8 on a CPU whose int8 products cannot saturate (VNNI, ARM), and on one without VNNI
    (:func:`wmil_core.machine.int8_saturates`) whichever of 8 and 7 the check finds closer to
    the float graph, per graph (docs/runtime-speed.md: on an AVX2 CPU 7 bits cut one graph's
    difference from 0.25 to 0.03 and raised another's from 0.06 to 0.23). Refuses an int8
    source and an existing ``out_dir`` (unless ``overwrite``); nothing is left behind on
    failure.
    """
    import onnxruntime as ort

    bundle = load_bundle(src)
    out_dir = Path(out_dir)
    m: dict[str, Any] = copy.deepcopy(bundle.manifest)
    if bundle.precision != "float32":
        raise ValueError(f"{bundle.path}: precision is {bundle.precision!r}, "
                         "only float32 bundles can be quantised")
    if batch_check < 2:
        raise ValueError(f"batch_check: must be >= 2, got {batch_check}")
    if out_dir.resolve() == bundle.path.resolve():
        raise ValueError(f"{out_dir}: is the source bundle (write the int8 copy elsewhere)")
    model = m.get("model") or {}
    group = int(model.get("simnorm_dim", 8))
    if bundle.latent_dim % group:
        raise ValueError(f"{bundle.path}: model.simnorm_dim {group} does not divide "
                         f"latent_dim {bundle.latent_dim}")
    if weight_bits not in ("auto", 7, 8):
        raise ValueError(f"weight_bits: must be auto, 7 or 8, got {weight_bits!r}")
    saturates = int8_saturates()
    options = ((8, 7) if saturates else (8,)) if weight_bits == "auto" else (weight_bits,)
    tmp = staging_dir(out_dir, overwrite)
    try:
        check: dict[str, dict[str, float]] = {}
        products: dict[str, int] = {}
        bits: dict[str, int] = {}
        for fname in m["files"]:
            shutil.copyfile(bundle.path / fname, tmp / fname)
        for graph in (g for g in QUANTIZED_GRAPHS if g in bundle.graphs):
            tried = []
            for b in options:
                data = quantize_graph(bundle.graphs[graph], per_channel, b)
                count = int8_products(data)
                if not count:
                    break  # nothing to gain: the float graph stays
                diffs = compare_graphs(bundle.graphs[graph], data, bundle.latent_dim, group,
                                       bundle.num_q, (1, batch_check))
                tried.append((max(diffs.values()), b, data, diffs))
            if not tried:
                continue
            _, bits[graph], data, check[graph] = min(tried, key=lambda t: t[0])
            products[graph] = count
            atomic_write(tmp / m["graphs"][graph]["file"], data)
        if not products:
            raise ValueError(f"{bundle.path}: no graph has a product by constant weights to "
                             "quantise")
        m["name"] = name or out_dir.name
        m["precision"] = "int8"
        m["quantization"] = {
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "method": ("onnxruntime dynamic quantisation: int8 weights "
                       f"({'per output channel' if per_channel else 'per tensor'}; 8 bits, or "
                       "7 where weight_bits says so), uint8 "
                       "activations quantised per call; Gemm rewritten as MatMul + Add"),
            "graphs": list(products),
            "int8_products": products,
            "per_channel": per_channel,
            # per graph: 8, or 7 (reduced range); chosen on the CPU named below
            "weight_bits": bits,
            "weight_bits_requested": weight_bits,
            "quantized_on": {"cpu": cpu_model(), "int8_saturates": saturates},
            "onnxruntime": ort.__version__,
            "source": {"bundle": str(bundle.path), "manifest_sha256": bundle.manifest_sha256},
            "check": {"batches": [1, batch_check],
                      "measure": "max |int8 - float32| / max(1, max |float32|), random "
                                 "inputs of the planner's kind",
                      "max_diff": check},
        }
        seal_bundle(tmp, m, out_dir, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir

