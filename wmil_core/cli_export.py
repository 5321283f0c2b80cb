"""``wmil export`` and ``wmil bench planner``: thin commands over :mod:`wmil_core.export`,
:mod:`wmil_core.runtime` and :func:`bench_planner`.

Wired into the ``wmil`` parser with :func:`add_commands`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from wmil_core.config import atomic_write
from wmil_core.machine import machine_info
from wmil_core.runtime.bundle import VALUE_HEADS, VALUE_STARTS
from wmil_core.timing import latency_stats


# -- wmil export ---------------------------------------------------------------------------------
def default_bundle_dir(source: str | Path, name: str | None = None) -> Path:
    """``models/<name>``; the name defaults to the run directory's (a loose checkpoint's stem)."""
    from wmil_core.export import run_of

    src = Path(source)
    if src.is_file():
        run = run_of(src)
        return Path("models") / (name or (run.resolve().name if run else src.stem))
    return Path("models") / (name or src.resolve().name)


def cmd_export(args: argparse.Namespace) -> int:
    """Export a run's latest checkpoint (or a checkpoint file) as a model bundle."""
    from wmil_core.export import export_bundle

    out = Path(args.out) if args.out else default_bundle_dir(args.run, args.name)
    path = export_bundle(args.run, out, name=args.name, batch_check=args.batch_check,
                         overwrite=args.overwrite, value_start=args.value_start,
                         value_heads=args.value_heads)
    m = json.loads((path / "manifest.json").read_text())
    check = m["export"]["check"]
    print(f"exported {m['task']} ({m['obs_mode']}), training step "
          f"{m['training'].get('step', '?')}, opset {m['export']['opset']}")
    print(f"self-check against torch (largest absolute difference, tolerance "
          f"{check['tolerance']:g}):")
    for graph, diffs in check["max_abs_diff"].items():
        shown = "  ".join(f"batch {b}: {d:.2e}" for b, d in diffs.items()
                          if not b.startswith("raw:"))
        print(f"  {graph + '.onnx':14s} {shown}")
    print(f"wrote {path} ({len(m['files'])} files + manifest.json)")
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    """Write an int8 copy of a float bundle and print its difference from the float graphs."""
    from wmil_core.quantize import quantize_bundle

    src = Path(args.model)
    src = src.parent if src.name == "manifest.json" else src  # the bundle, either way
    out = Path(args.out) if args.out else src.parent / f"{src.resolve().name}-int8"
    bits = args.weight_bits if args.weight_bits == "auto" else int(args.weight_bits)
    path = quantize_bundle(src, out, per_channel=args.per_channel,
                           batch_check=args.batch_check, overwrite=args.overwrite,
                           weight_bits=bits)
    q = json.loads((path / "manifest.json").read_text())["quantization"]
    print(f"quantised {', '.join(q['graphs'])} of {src} ({q['method']})")
    print("difference from the float32 graphs (max |int8 - float32| / max(1, max |float32|)):")
    for graph, diffs in q["check"]["max_diff"].items():
        shown = "  ".join(f"batch {b}: {d:.2e}" for b, d in diffs.items())
        print(f"  {graph + '.onnx':14s} {shown}  ({q['weight_bits'][graph]}-bit weights)")
    print(f"wrote {path}")
    return 0


# -- wmil bench planner ------------------------------------------------------------------------
def matmul_peak(threads: int, size: int = 1024, repeats: int = 5) -> dict[str, float]:
    """Measured matrix-multiply rate (GFLOP/s, 2 size^3 per product) on ``threads`` threads (0:
    each library's default): onnxruntime's float32 MatMul (``onnxruntime``), numpy's BLAS
    (``numpy``), and onnxruntime's int8 product as int8 bundles run it, float in and out with
    the input quantised per call (``onnxruntime_int8``, DynamicQuantizeMatMul)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, [size, size])
    y_info = helper.make_tensor_value_info("y", TensorProto.FLOAT, [size, size])
    int8_weights = [numpy_helper.from_array(rng.integers(-127, 128, (size, size), np.int8), "w"),
                    numpy_helper.from_array(np.array(0.01, np.float32), "scale"),
                    numpy_helper.from_array(np.array(0, np.int8), "zero")]
    graphs = {
        "onnxruntime": ([helper.make_node("MatMul", ["x", "x"], ["y"])], []),
        "onnxruntime_int8": ([helper.make_node("DynamicQuantizeMatMul",
                                               ["x", "w", "scale", "zero"], ["y"],
                                               domain="com.microsoft")], int8_weights),
    }
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    x = rng.standard_normal((size, size), dtype=np.float32)
    flops = 2.0 * size**3

    def best(fn: Any) -> float:
        fn()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return flops / min(times) / 1e9

    out: dict[str, float] = {}
    for name, (nodes, inits) in graphs.items():
        graph = helper.make_graph(nodes, "peak", [x_info], [y_info], inits)
        model = helper.make_model(graph, ir_version=8, opset_imports=[
            helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
        onnx.checker.check_model(model)
        sess = ort.InferenceSession(model.SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])
        out[name] = best(lambda sess=sess: sess.run(None, {"x": x}))
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads or None, user_api="blas"):
        out["numpy"] = best(lambda: x @ x)  # BLAS on the same threads as onnxruntime
    return out


PEAK_OF = {"float32": "onnxruntime", "int8": "onnxruntime_int8"}  # precision -> peak key


def _torch_agent(bundle: Any, source: str | Path) -> Any:
    """The bundle's agent in torch, weights from the checkpoint ``source`` (run or .pt)."""
    import torch

    from wmil_core.agents.iqmpc import IQMPC, IQMPCConfig
    from wmil_core.config import from_dict
    from wmil_core.planning import PlannerConfig
    from wmil_core.world_model import ModelConfig

    src = Path(source)
    ckpt = src if src.is_file() else src / "checkpoints" / "latest.pt"
    if not ckpt.is_file():
        raise ValueError(f"{ckpt}: no such checkpoint (--run RUN)")
    m = bundle.manifest
    cfg = IQMPCConfig(model=from_dict(ModelConfig, m["model"]),
                      planner=from_dict(PlannerConfig, m["planner"]),
                      beta=bundle.beta, gamma=bundle.gamma)
    shapes = {k: v.shape for k, v in bundle.obs_spec.items()}
    agent = IQMPC(shapes, bundle.action_dim, 1000, cfg)
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        # the networks the bundle was exported from (export: IQMPC.deploy_model)
        saved = state["agent"]
        agent.model.load_state_dict(saved.get("ema_model", saved["model"]))
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is one user error
        raise ValueError(f"{ckpt}: not a checkpoint of this bundle's model ({exc})") from None
    agent.model.eval()
    return agent


def bench_planner(model_dir: str | Path, run: str | Path | None = None,
                  samples: int | None = None, iterations: int | None = None,
                  horizon: int | None = None, threads: int = 1, repeats: int = 50,
                  warmup: int = 5, seed: int = 0,
                  out: str | Path | None = None, shards: int = 1,
                  also: list[str | Path] | None = None) -> dict[str, Any]:
    """Planning latency of the torch planner and the runtime planner on the same model.

    Three planners: torch as training runs it (element-wise work in the fused kernels of
    ``wmil_core.nn.layers``), torch on eager operators only (``layers.FUSED_MISH`` off: the
    "eager torch planner") and the runtime. They plan from the same observations with the
    same noise, in turn step by step (so machine load hits them alike), all warm-started
    from the torch planner's previous mean;
    the noise is drawn outside the timed region. Reports p50/p99 of each, their ratio, the
    action differences (largest, median, share of steps within 1e-4) and the runtime's
    GFLOP/s against this machine's measured matrix-multiply peak; the eager planner's p50/p99
    and the runtime's speed-up over it beside. ``shards``: the runtime
    splits its ``threads`` cores into that many parallel sessions of threads/shards each
    (torch keeps ``threads`` intra-op threads), so both use the same cores. ``also``: more
    bundles of the same model (an int8 copy, another layout) planned in the same loop, with
    the same noise and warm starts, reported under ``also`` with their speed-ups and action
    differences.
    """
    import torch

    from wmil_core.nn import layers
    from wmil_core.planning import PlannerConfig as TorchPlannerConfig
    from wmil_core.planning import plan, sample_noise
    from wmil_core.runtime import Planner, as_noise, load_bundle, planner_flops

    bundle = load_bundle(model_dir)
    source = run or (bundle.manifest.get("source") or {}).get("checkpoint")
    if not source:
        raise ValueError(f"{model_dir}: the manifest names no source checkpoint (--run RUN)")
    if threads < 0 or repeats < 1 or warmup < 0:
        raise ValueError("threads, repeats, warmup: must be >= 0, >= 1, >= 0")
    if shards < 1 or (shards > 1 and (threads < shards or threads % shards)):
        raise ValueError(f"shards: must be >= 1 and divide --threads ({threads}), got {shards}")
    if threads:
        torch.set_num_threads(threads)
    agent = _torch_agent(bundle, source)
    over = {k: v for k, v in (("num_samples", samples), ("iterations", iterations),
                              ("horizon", horizon)) if v is not None}
    rcfg = dataclasses.replace(bundle.planner, **over)
    tcfg = TorchPlannerConfig(**dataclasses.asdict(rcfg))
    planner = Planner(bundle, threads=(threads // shards) or None, config=rcfg, seed=seed,
                      shards=shards)
    others = []
    for path in also or []:
        other = load_bundle(path)
        if (other.latent_dim, other.action_dim, other.obs_spec) != (
                bundle.latent_dim, bundle.action_dim, bundle.obs_spec):
            raise ValueError(f"{path}: not a bundle of {model_dir}'s model (latent size, "
                             "action size or observation spec differ)")
        others.append(Planner(other, threads=(threads // shards) or None, config=rcfg,
                              seed=seed, shards=shards))
    o_ms: list[list[float]] = [[] for _ in others]
    o_diffs: list[list[float]] = [[] for _ in others]
    rng = np.random.default_rng(seed)
    obs = {k: (rng.integers(0, 256, v.shape, dtype=np.uint8) if v.dtype == "uint8"
               else rng.standard_normal(v.shape, dtype=np.float32))
           for k, v in bundle.obs_spec.items()}
    obs_t = agent.obs_to_tensors(obs)
    gen = torch.Generator().manual_seed(seed)
    a_dim, num_q = bundle.action_dim, bundle.num_q
    t_ms, e_ms, r_ms, diffs, mean_diffs, eager_diffs = [], [], [], [], [], []
    prev = None
    fused = layers.FUSED_MISH

    def torch_plan(noise: Any, prev: Any) -> Any:
        with torch.no_grad():
            z = agent.model.encode(obs_t)
            return plan(agent.model, z[0], tcfg, agent.gamma, agent.cfg.beta, noise, prev)

    for i in range(warmup + repeats):
        noise = sample_noise(tcfg, a_dim, num_q, gen)
        noise_np = as_noise(noise)
        # all warm-start from torch's previous mean, so that one near-tie among elites
        # (a 1e-7 value difference can swap two) does not put the chains apart for good
        planner.prev_mean = None if prev is None else prev.numpy()
        t = time.perf_counter()
        res = torch_plan(noise, prev)
        t1 = time.perf_counter()
        layers.FUSED_MISH = False
        try:
            eager = torch_plan(noise, prev)
        finally:
            layers.FUSED_MISH = fused
        t2 = time.perf_counter()
        action = planner.act(obs, noise=noise_np)
        t3 = time.perf_counter()
        for k, other in enumerate(others):
            other.prev_mean = None if prev is None else prev.numpy()
            t4 = time.perf_counter()
            a_k = other.act(obs, noise=noise_np)
            if i >= warmup:
                o_ms[k].append(1000 * (time.perf_counter() - t4))
                o_diffs[k].append(float(np.abs(a_k - res.action.numpy()).max()))
        prev = res.mean
        if i >= warmup:
            t_ms.append(1000 * (t1 - t))
            e_ms.append(1000 * (t2 - t1))
            r_ms.append(1000 * (t3 - t2))
            diffs.append(float(np.abs(action - res.action.numpy()).max()))
            mean_diffs.append(float(np.abs(planner.last.mean - res.mean.numpy()).max()))
            eager_diffs.append(float(np.abs(eager.action - res.action).max()))
    shapes = {k: v.shape for k, v in bundle.obs_spec.items()}
    torch_flops = planner_flops(bundle.manifest["model"], shapes, a_dim, rcfg)

    def flops_of(p: Any) -> float:  # a runtime planner's FLOPs per plan
        shared = p.value_graph == "fused" and p.bundle.value_start == "shared"
        return planner_flops(bundle.manifest["model"], shapes, a_dim, rcfg,
                             shared_start=shared)["total"]

    shared = planner.value_graph == "fused" and bundle.value_start == "shared"
    flops = planner_flops(bundle.manifest["model"], shapes, a_dim, rcfg, shared_start=shared)
    peak = matmul_peak(threads)
    tp, ep, rp = latency_stats(t_ms), latency_stats(e_ms), latency_stats(r_ms)
    r_gflops = flops["total"] / (rp["p50_ms"] / 1000) / 1e9
    result = {
        "benchmark": "planner",
        "bundle": str(Path(model_dir)),
        "name": bundle.name,
        "checkpoint": str(source),
        "task": bundle.manifest["task"],
        "obs_mode": bundle.manifest["obs_mode"],
        "model": bundle.manifest["model"],
        "planner": dataclasses.asdict(rcfg),
        "iterations_run": rcfg.iterations_for(a_dim),
        "threads": threads,
        "shards": shards,
        "providers": planner.providers,
        "value_graph": planner.value_graph,
        "value_graph_ms": ({k: 1000 * v for k, v in planner.value_graph_times.items()}
                           if planner.value_graph_times else None),
        **machine_info(),
        "torch": tp,
        "runtime": rp,
        "speedup_p50": tp["p50_ms"] / rp["p50_ms"],
        "speedup_p99": tp["p99_ms"] / rp["p99_ms"],
        "torch_eager": ep,
        "speedup_vs_eager_p50": ep["p50_ms"] / rp["p50_ms"],
        "speedup_vs_eager_p99": ep["p99_ms"] / rp["p99_ms"],
        "max_action_diff_eager_vs_torch": max(eager_diffs),
        "max_action_diff": max(diffs),
        "median_action_diff": float(np.median(diffs)),
        "steps_within_1e-4": sum(d <= 1e-4 for d in diffs) / len(diffs),
        "max_mean_diff": max(mean_diffs),
        "value_start": bundle.value_start,
        "value_heads": bundle.value_heads,
        "flops_per_plan": flops,  # the runtime's (its value graph may share the start)
        "torch_flops_per_plan": torch_flops,
        "runtime_gflops": r_gflops,
        "torch_gflops": torch_flops["total"] / (tp["p50_ms"] / 1000) / 1e9,
        "peak_gflops": peak,
        "runtime_fraction_of_peak": r_gflops / peak[PEAK_OF[bundle.precision]],
        "precision": bundle.precision,
        "also": [{
            "bundle": str(Path(p)), "precision": o.bundle.precision,
            "runtime": st,
            "speedup_p50": tp["p50_ms"] / st["p50_ms"],
            "speedup_vs_eager_p50": ep["p50_ms"] / st["p50_ms"],
            "speedup_vs_runtime_p50": rp["p50_ms"] / st["p50_ms"],
            "max_action_diff": max(d), "median_action_diff": float(np.median(d)),
            "runtime_gflops": f / (st["p50_ms"] / 1000) / 1e9,
            # against the peak of its own arithmetic (int8 products for an int8 bundle)
            "runtime_fraction_of_peak": (f / (st["p50_ms"] / 1000) / 1e9
                                         / peak[PEAK_OF[o.bundle.precision]]),
        } for p, o, st, d, f in zip(also or [], others, map(latency_stats, o_ms), o_diffs,
                                    map(flops_of, others))],
    }
    if out:
        atomic_write(out, json.dumps(result, indent=2))
    return result


def cmd_bench_planner(args: argparse.Namespace) -> int:
    """Torch planner against the runtime planner on one bundle; print and save JSON."""
    from wmil_core.runtime import load_bundle

    name = load_bundle(args.model).name
    out = args.out or f"bench/planner-{name}.json"
    r = bench_planner(args.model, args.run, args.samples, args.iterations, args.horizon,
                      args.threads, args.repeats, out=out, shards=args.shards, also=args.also)
    p = r["planner"]
    shards = f" (runtime: {r['shards']} shards)" if r["shards"] > 1 else ""
    print(f"{r['name']} ({r['task']}, {r['obs_mode']}): {p['num_samples']} samples x "
          f"{r['iterations_run']} iterations x horizon {p['horizon']}, {r['threads']} thread(s)"
          f"{shards}, "
          f"{', '.join(r['providers'])}, value graph {r['value_graph']} "
          f"(start: {r['value_start']}, Q heads: {r['value_heads']})")
    for who, label in (("torch", "torch"), ("torch_eager", "torch, eager ops"),
                       ("runtime", "runtime")):
        print(f"  {label:16s} p50 {r[who]['p50_ms']:8.2f} ms  p99 {r[who]['p99_ms']:8.2f} ms")
    print(f"  runtime speed-up: {r['speedup_p50']:.2f}x at p50, {r['speedup_p99']:.2f}x at p99 "
          f"over torch, {r['speedup_vs_eager_p50']:.2f}x and {r['speedup_vs_eager_p99']:.2f}x "
          f"over torch on eager ops (action difference: largest {r['max_action_diff']:.1e}, "
          f"median {r['median_action_diff']:.1e}, {100 * r['steps_within_1e-4']:.0f}% of steps "
          f"within 1e-4)")
    print(f"  {r['torch_flops_per_plan']['total'] / 1e6:.1f} MFLOP per torch plan, "
          f"{r['flops_per_plan']['total'] / 1e6:.1f} per runtime plan: runtime "
          f"{r['runtime_gflops']:.2f} GFLOP/s = {100 * r['runtime_fraction_of_peak']:.1f}% of the "
          f"measured MatMul peak {r['peak_gflops'][PEAK_OF[r['precision']]]:.1f} GFLOP/s"
          f" ({r['precision']}; float32 {r['peak_gflops']['onnxruntime']:.1f}, int8 "
          f"{r['peak_gflops']['onnxruntime_int8']:.1f})")
    for o in r["also"]:
        print(f"  also {o['bundle']} ({o['precision']}): p50 {o['runtime']['p50_ms']:.2f} ms  "
              f"p99 {o['runtime']['p99_ms']:.2f} ms, {o['speedup_p50']:.2f}x torch, "
              f"{o['speedup_vs_eager_p50']:.2f}x torch on eager ops, "
              f"{o['speedup_vs_runtime_p50']:.2f}x the runtime above (action difference from "
              f"torch: largest {o['max_action_diff']:.1e}, median {o['median_action_diff']:.1e})"
              f"; {o['runtime_gflops']:.1f} GFLOP/s = {100 * o['runtime_fraction_of_peak']:.1f}%"
              f" of the {o['precision']} MatMul peak")
    print(f"wrote {out}")
    return 0


def bench_value_graphs(bundles: list[str | Path], samples: int = 512, threads: int = 1,
                       repeats: int = 60, seed: int = 0, out: str | Path | None = None,
                       profile: int = 0) -> dict[str, Any]:
    """Time the fused value graphs of two or more bundles of one model on the same inputs.

    The graphs run in turn (one call each per round, ``repeats`` rounds), so that the
    machine's load hits them alike; medians and their ratio to the first bundle's. The inputs
    are an MPPI iteration's (one start shared by every sample), and the returns of each are
    compared with the first's. ``profile`` > 0: afterwards, each graph's kernel time per
    operator type over that many calls (:func:`wmil_core.runtime.profile.profile_graph`).
    """
    from wmil_core.runtime import Planner, load_bundle

    if len(bundles) < 2 or samples < 1 or repeats < 1 or threads < 0 or profile < 0:
        raise ValueError("bench value-graph: two or more bundles, samples and repeats >= 1, "
                         "threads and profile >= 0")
    planners = []
    for path in bundles:
        b = load_bundle(path)
        if "value" not in b.graphs:
            raise ValueError(f"{path}: the bundle has no fused value graph")
        cfg = dataclasses.replace(b.planner, num_samples=samples,
                                  num_pi_trajs=min(b.planner.num_pi_trajs, samples - 1),
                                  num_elites=min(b.planner.num_elites, samples))
        planners.append(Planner(b, threads=threads or None, config=cfg, value_graph="fused"))
    first = planners[0].bundle
    for p in planners[1:]:
        b = p.bundle
        if (b.latent_dim, b.action_dim, b.value_horizon) != (first.latent_dim,
                                                               first.action_dim,
                                                               first.value_horizon):
            raise ValueError(f"{b.path}: latent size, action size or horizon differ from "
                             f"{first.path}'s")
    rng = np.random.default_rng(seed)
    h, a = int(first.value_horizon or 0), first.action_dim
    z0 = np.repeat(rng.random((1, first.latent_dim), dtype=np.float32), samples, axis=0)
    z0 = z0 / z0.sum(-1, keepdims=True)
    acts = rng.uniform(-1, 1, (h, samples, a)).astype(np.float32)
    eps = rng.standard_normal((h + 1, samples, a), dtype=np.float32)
    heads = np.tile(np.arange(2, dtype=np.int64), (h + 1, 1))
    values = [p._value(z0, acts, eps, heads) for p in planners]  # also the warm-up
    times: list[list[float]] = [[] for _ in planners]
    for _ in range(repeats):
        for i, p in enumerate(planners):
            t = time.perf_counter()
            p._value(z0, acts, eps, heads)
            times[i].append(1000 * (time.perf_counter() - t))
    med = [float(np.median(t)) for t in times]
    result = {
        "benchmark": "value-graph",
        "samples": samples, "horizon": h, "threads": threads, "repeats": repeats,
        **machine_info(),
        "bundles": [{"bundle": str(p.bundle.path), "value_start": p.bundle.value_start,
                     "value_heads": p.bundle.value_heads,
                     "p50_ms": m, "p99_ms": latency_stats(t)["p99_ms"],
                     "speedup_vs_first": med[0] / m,
                     "max_value_diff_vs_first": float(np.abs(v - values[0]).max())}
                    for p, m, t, v in zip(planners, med, times, values)],
        "value_scale": float(np.abs(values[0]).max()),
    }
    if profile:
        from wmil_core.runtime.profile import profile_graph

        for p, row in zip(planners, result["bundles"]):
            start = z0[:1] if p.bundle.value_start == "shared" else z0
            feeds = {"z0": start, "actions": acts, "value_eps": eps, "heads": heads}
            row["profile"] = profile_graph(p.bundle.graphs["value"], feeds, profile,
                                           threads or 1)
    if out:
        atomic_write(out, json.dumps(result, indent=2))
    return result


def cmd_bench_value_graph(args: argparse.Namespace) -> int:
    """Fused value graphs of several bundles, alternating; print and save JSON."""
    r = bench_value_graphs(args.bundles, args.samples, args.threads, args.repeats,
                           out=args.out, profile=args.profile)
    print(f"fused value graph, {r['samples']} samples x horizon {r['horizon']}, "
          f"{r['threads']} thread(s), {r['repeats']} alternating calls each (medians):")
    for b in r["bundles"]:
        print(f"  {b['bundle']} (start: {b['value_start']}, Q heads: {b['value_heads']}): "
              f"p50 {b['p50_ms']:.2f} ms, "
              f"p99 {b['p99_ms']:.2f} ms, {b['speedup_vs_first']:.2f}x the first; values "
              f"within {b['max_value_diff_vs_first']:.1e} of the first's "
              f"(largest |value| {r['value_scale']:.3g})")
    profiled = [b for b in r["bundles"] if "profile" in b]
    if profiled:
        ops = list(dict.fromkeys(op for b in profiled for op in b["profile"]["ops"]))
        print(f"kernel time per call by operator (onnxruntime profiler, "
              f"{profiled[0]['profile']['calls']} calls; ms, share, nodes), bundles in order:")
        for op in ops:
            cells = []
            for b in profiled:
                o = b["profile"]["ops"].get(op)
                cells.append(f"{o['ms_per_call']:8.3f} {100 * o['share']:5.1f}% {o['nodes']:4d}"
                             if o else f"{'-':>8s} {'':6s} {'':4s}")
            print(f"  {op:20s} " + "   ".join(cells))
        print(f"  {'total':20s} " + "   ".join(
            f"{b['profile']['kernel_ms_per_call']:8.3f} {'':6s} {'':4s}" for b in profiled))
    if args.out:
        print(f"wrote {args.out}")
    return 0


def add_commands(sub: Any, bench_sub: Any) -> None:
    """Add ``export`` and ``quantize`` to the ``wmil`` subcommands, ``planner`` and
    ``value-graph`` to the ``bench`` ones."""
    ex = sub.add_parser("export", help="export a run or checkpoint as a model bundle (ONNX)")
    ex.add_argument("run", metavar="RUN|CHECKPOINT", help="run directory or checkpoint file")
    ex.add_argument("--out", default=None, help="bundle directory (default: models/<name>)")
    ex.add_argument("--name", default=None, help="bundle name (default: the run's)")
    ex.add_argument("--overwrite", action="store_true", help="replace an existing bundle")
    ex.add_argument("--batch-check", dest="batch_check", type=int, default=64,
                    help="batch size N of the self-check (also checked at 1)")
    ex.add_argument("--value-start", dest="value_start", default="shared",
                    choices=list(VALUE_STARTS),
                    help="value.onnx's start: one row shared by every MPPI sample (default, "
                         "fewer FLOPs) or one row per sample (the layout of older bundles)")
    ex.add_argument("--value-heads", dest="value_heads", default="auto",
                    choices=["auto", *VALUE_HEADS],
                    help="value.onnx's Q heads: gathered (the two the noise names, batched "
                         "matmuls) or unrolled (two-head ensembles: both, each as fused "
                         "Gemm/LayerNormalization chains); auto: unrolled for two heads")
    ex.set_defaults(func=cmd_export)

    qu = sub.add_parser("quantize", help="an int8 copy of a model bundle (faster CPU planning)")
    qu.add_argument("model", metavar="MODEL_DIR", help="float32 bundle directory")
    qu.add_argument("--out", default=None, help="bundle directory (default: MODEL_DIR-int8)")
    qu.add_argument("--per-channel", dest="per_channel", action="store_true",
                    help="one weight scale per output channel (default: per tensor)")
    qu.add_argument("--weight-bits", dest="weight_bits", choices=("auto", "7", "8"),
                    default="auto",
                    help="8, 7 (onnxruntime's reduced range: no saturation on x86 CPUs without "
                         "VNNI), or auto: 8 where products cannot saturate, else the closer "
                         "of the two to the float graph, per graph (default)")
    qu.add_argument("--overwrite", action="store_true", help="replace an existing bundle")
    qu.add_argument("--batch-check", dest="batch_check", type=int, default=64,
                    help="batch size N of the check against the float graphs (also at 1)")
    qu.set_defaults(func=cmd_quantize)

    bp = bench_sub.add_parser("planner", help="torch planner against the runtime planner")
    bp.add_argument("model", metavar="MODEL_DIR", help="model bundle directory")
    bp.add_argument("--run", default=None,
                    help="run or checkpoint of the torch model (default: the manifest's source)")
    bp.add_argument("--samples", type=int, default=None, help="N (default: the bundle's)")
    bp.add_argument("--iterations", type=int, default=None)
    bp.add_argument("--horizon", type=int, default=None)
    bp.add_argument("--threads", type=int, default=1, help="threads of both (0: defaults)")
    bp.add_argument("--shards", type=int, default=1,
                    help="runtime: parallel sessions sharing --threads (e.g. --threads 2 "
                         "--shards 2: two one-thread sessions, each valuing half the samples)")
    bp.add_argument("--repeats", type=int, default=50, help="timed planning steps of each")
    bp.add_argument("--also", nargs="+", default=None, metavar="MODEL_DIR",
                    help="more bundles of the same model (e.g. its int8 copy) timed in the "
                         "same loop")
    bp.add_argument("--out", default=None, help="JSON (default: bench/planner-<name>.json)")
    bp.set_defaults(func=cmd_bench_planner)

    bv = bench_sub.add_parser("value-graph", help="fused value graphs of bundles of one model, "
                              "alternating on the same inputs (A/B of an export change)")
    bv.add_argument("bundles", nargs="+", metavar="MODEL_DIR", help="two or more bundles")
    bv.add_argument("--samples", type=int, default=512, help="N, the MPPI samples")
    bv.add_argument("--threads", type=int, default=1, help="intra-op threads (0: default)")
    bv.add_argument("--repeats", type=int, default=60, help="timed calls of each")
    bv.add_argument("--out", default=None, help="JSON file")
    bv.add_argument("--profile", type=int, default=0, metavar="CALLS",
                    help="then profile each graph over CALLS calls with onnxruntime's profiler "
                         "and print its kernel time per operator type (0: no)")
    bv.set_defaults(func=cmd_bench_value_graph)
