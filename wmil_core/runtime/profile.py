"""Where an ONNX graph spends its time: onnxruntime's own profiler, summed per operator type.

Used by ``wmil bench value-graph --profile N`` to say which operators an export change should
target (products, normalisations, element-wise work, shape bookkeeping).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort


def profile_graph(graph: bytes, feeds: Mapping[str, np.ndarray], calls: int = 50,
                  threads: int = 1) -> dict[str, Any]:
    """Run ``graph`` ``calls`` times after one warm-up call and sum kernel time per operator.

    Returns ``{"calls", "kernel_ms_per_call", "ops": {op: {"ms_per_call", "share",
    "nodes"}}}``, ops sorted by time, largest first. The session is set up as the runtime's
    (all graph optimisations, sleeping intra-op threads, CPU execution provider), so the
    operators are the ones the runtime executes after fusion. The warm-up call's events are
    left out.
    """
    if calls < 1:
        raise ValueError(f"calls: must be >= 1, got {calls}")
    with tempfile.TemporaryDirectory(prefix="wmil-profile-") as tmp:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "ort")
        sess = ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
        for _ in range(calls + 1):
            sess.run(None, dict(feeds))
        events = json.loads(Path(sess.end_profiling()).read_text())
    runs = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    if len(runs) != calls + 1:
        raise RuntimeError(f"onnxruntime's profile holds {len(runs)} runs, expected {calls + 1}")
    after_warmup = runs[0]["ts"] + runs[0]["dur"]
    total: dict[str, float] = {}
    count: dict[str, int] = {}
    for e in events:
        if (e.get("cat") == "Node" and e["name"].endswith("_kernel_time")
                and e["ts"] >= after_warmup):
            op = e["args"]["op_name"]
            total[op] = total.get(op, 0.0) + e["dur"]
            count[op] = count.get(op, 0) + 1
    all_us = sum(total.values())
    ops = {op: {"ms_per_call": us / calls / 1000.0, "share": us / all_us if all_us else 0.0,
                "nodes": count[op] // calls}
           for op, us in sorted(total.items(), key=lambda kv: -kv[1])}
    return {"calls": calls, "kernel_ms_per_call": all_us / calls / 1000.0, "ops": ops}
