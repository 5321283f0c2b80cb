"""Benchmarks (commands, never unit tests): each prints its result and saves it as JSON."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wmil_core.config import atomic_write, to_dict
from wmil_core.machine import machine_info
from wmil_core.nn import layers
from wmil_core.timing import latency_stats, paired_ratios


def speed(preset: str, task: str = "dmc/reacher-easy", obs: str = "state", updates: int = 20,
          plans: int = 50, threads: int = 0, seed: int = 0,
          out: str | Path | None = None, compile: bool = False,
          autograd_mish: bool = False, overrides: dict[str, Any] | None = None,
          per_sample_value: bool = False, eager_mish: bool = False,
          float32: bool = False) -> dict[str, Any]:
    """Time IQ-MPC updates and planning steps for ``preset`` on ``task``'s observation spec.

    ``overrides``: changes to the preset's IQ-MPC config (e.g. ``{"grad_pen": 0.6}``).

    Updates use random data of the right shapes in both buffers (the cost does not depend on
    the values); planning runs from real observations of the task. ``compile``: times a
    ``torch.compile``'d agent and an eager one alternating on the same batches and
    observations (compilation happens in the untimed warm-up and is reported), so that the
    speed-up is a ratio measured in one window. ``autograd_mish``: the same way, times the
    agent against a twin whose Mish backward is autograd's chain (the hand-written one off).
    ``per_sample_value``: the same way, against a twin (compiled alike) whose planner values
    every sample from its own copy of the start (``planning.trajectory_value``) instead of
    doing the start's work once (``planning.shared_trajectory_value``, the agent's own).
    ``eager_mish``: the same way, against a twin whose Mish (and LayerNorm before it) runs
    as eager operators instead of the fused kernels (``layers.FUSED_MISH`` off).
    ``float32``: the same way, a bfloat16 agent (``overrides`` precision bfloat16) against a
    float32 twin, compiled alike.
    """
    from wmil_core.agents.iqmpc import IQMPC
    from wmil_core.buffer import EpisodeBuffer
    from wmil_core.planning import trajectory_value
    from wmil_core.presets import agent_config
    from wmil_core.tasks import make_env

    if threads:
        torch.set_num_threads(threads)
    env = make_env(task, obs, seed=seed)  # type: ignore[arg-type]
    spec = env.obs_spec()
    a_dim = int(env.action_space.shape[0])
    twin_compiled = per_sample_value or eager_mish or float32  # baselines compiled alike
    baselines = [compile and not twin_compiled, autograd_mish, per_sample_value, eager_mish,
                 float32]
    if sum(baselines) > 1:
        raise ValueError("compare with one baseline at a time: --compile (against eager), "
                         "--autograd-mish, --per-sample-value, --eager-mish or --float32")
    if float32 and (overrides or {}).get("precision") != "bfloat16":
        raise ValueError("--float32: times a bfloat16 agent against a float32 twin; "
                         "give --agent '{\"precision\": \"bfloat16\"}'")
    # variant label -> (compile, hand-written Mish backward, shared-start planner value,
    # fused Mish kernels); the first is the one reported
    fused = layers.FUSED_MISH
    variants = {"main": (compile, True, True, fused)}
    base = ("per_sample_value" if per_sample_value else "eager_mish" if eager_mish
            else "float32" if float32 else "eager" if compile
            else "autograd_mish" if autograd_mish else None)
    if base:
        variants[base] = (compile and twin_compiled, not autograd_mish,
                          not per_sample_value, fused and not eager_mish)
    agents = {}
    for label, (c, _, shared, _) in variants.items():
        torch.manual_seed(seed)
        twin = {"precision": "float32"} if label == "float32" else {}
        cfg = agent_config(preset, {**(overrides or {}), "compile": c, **twin})
        agents[label] = IQMPC({k: tuple(v["shape"]) for k, v in spec.items()}, a_dim,
                              env.episode_length, cfg, seed=seed)
        if not shared:  # the baseline's planner: every sample from its own copy of the start
            agents[label]._value_fn = (torch.compile(trajectory_value, dynamic=False) if c
                                       else trajectory_value)
    cfg = agents["main"].cfg

    def run(label: str, times: list[float], fn: Any, *args: Any) -> Any:
        """Call ``fn`` with ``label``'s Mish, appending its time (ms) to ``times``."""
        layers.HAND_MISH_BACKWARD = variants[label][1]
        layers.FUSED_MISH = variants[label][3]
        try:
            t = time.perf_counter()
            out = fn(*args)
            times.append(1000 * (time.perf_counter() - t))
            return out
        finally:
            layers.HAND_MISH_BACKWARD = True
            layers.FUSED_MISH = fused

    rng = np.random.default_rng(seed)
    h = cfg.planner.horizon
    buf = EpisodeBuffer(spec, a_dim, 4 * 101, h)
    for _ in range(4):
        o = {}
        for k, v in spec.items():
            shape = (101, *v["shape"])
            o[k] = (rng.integers(0, 256, shape, dtype=np.uint8) if v["dtype"] == "uint8"
                    else rng.standard_normal(shape).astype(np.float32))
        buf.add_episode(o, rng.uniform(-1, 1, (100, a_dim)).astype(np.float32))
    b = cfg.batch_size
    ob, _ = env.reset(seed=seed)
    warmup_s = {}
    for label, agent in agents.items():
        t_warm = time.perf_counter()
        for _ in range(3):  # warm-up
            run(label, [], agent.update, buf.sample(b, rng), buf.sample(b, rng))
        agent.act(ob, t0=True)
        warmup_s[label] = time.perf_counter() - t_warm
    upd_ms: dict[str, list[float]] = {label: [] for label in agents}
    for _ in range(updates):
        e, beh = buf.sample(b, rng), buf.sample(b, rng)
        for label, agent in agents.items():
            run(label, upd_ms[label], agent.update, e, beh)
    plan_ms: dict[str, list[float]] = {label: [] for label in agents}
    for _ in range(plans):
        for label, agent in agents.items():
            a = run(label, plan_ms[label], agent.act, ob, False)
        ob, *_ = env.step(a)  # the last agent's action
    p = cfg.planner
    result: dict[str, Any] = {
        "benchmark": "speed",
        "preset": preset,
        "agent_overrides": overrides or {},
        "task": task,
        "obs": obs,
        "threads": torch.get_num_threads(),
        "device": "cpu",
        **machine_info(),
        "model": to_dict(cfg.model),
        "batch_per_buffer": b,
        "compiled": compile,
        "autograd_mish_baseline": autograd_mish,
        "per_sample_value_baseline": per_sample_value,
        "eager_mish_baseline": eager_mish,
        "float32_baseline": float32,
        "baseline": base,  # the twin's label (its timings and speed-ups are keyed by it)
        "fused_mish": fused,
        "warmup_s": warmup_s["main"],  # 3 updates and a plan, including compilation
        "planner": f"{p.num_samples} samples x {p.iterations_for(a_dim)} iterations x "
                   f"horizon {p.horizon}",
        "update": latency_stats(upd_ms["main"]),
        "updates_per_s": 1000.0 / float(np.median(upd_ms["main"])),
        "plan": latency_stats(plan_ms["main"]),
    }
    if base:  # timed in the same window, alternating; ratios = baseline / main
        result[base] = {"update": latency_stats(upd_ms[base]),
                        "plan": latency_stats(plan_ms[base])}
        result[f"speedup_vs_{base}"] = {
            "update": paired_ratios(upd_ms[base], upd_ms["main"]),
            "plan": paired_ratios(plan_ms[base], plan_ms["main"])}
    env.close()
    if out:
        atomic_write(out, json.dumps(result, indent=2))
    return result


def collect(task: str = "dmc/cartpole-swingup", episodes: int = 10, rounds: int = 3,
            out: str | Path | None = None) -> dict[str, Any]:
    """Demo-collection speed (expert + env + HDF5) against raw dm_control in the same run.

    Alternates ``rounds`` times: raw ``dm_control`` suite steps with a zero action, then a full
    state-only collection of ``episodes`` expert episodes; reports medians and their ratio.
    """
    import tempfile

    from dm_control import suite

    from wmil_core.collect import collect_demos
    from wmil_core.tasks import get_task

    spec = get_task(task)
    if spec.family != "dmc":
        raise ValueError(f"{task}: the collection benchmark compares against the dm_control suite")
    domain, name = spec.env_id.split(":")
    raw_env = suite.load(domain, name, task_kwargs={"random": 0})
    a = np.zeros(raw_env.action_spec().shape)
    raw, agent_sps = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            raw_env.reset()
            n = 2000
            t = time.perf_counter()
            for _ in range(n):
                if raw_env.step(a).last():
                    raw_env.reset()
            raw.append(n / (time.perf_counter() - t))
            stats = collect_demos(task, episodes, "state", Path(tmp) / f"d{r}.h5", seed=r,
                                  progress=False)
            agent_sps.append(stats.steps_per_second)
    raw_med, agent_med = float(np.median(raw)), float(np.median(agent_sps))
    result = {
        "benchmark": "collect",
        "task": task,
        "episodes_per_round": episodes,
        "rounds": rounds,
        "raw_dm_control_steps_per_s": raw_med,
        "collect_agent_steps_per_s": agent_med,
        "action_repeat": spec.action_repeat,
        "collect_control_steps_per_s": agent_med * spec.action_repeat,
        "efficiency": agent_med * spec.action_repeat / raw_med,
    }
    if out:
        atomic_write(out, json.dumps(result, indent=2))
    return result
