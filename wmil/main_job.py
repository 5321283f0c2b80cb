"""``wmil demo``: the main job on the default task, end to end.

It lives in the ROS layer because it runs the nodes; like the learner node it also uses
``wmil_core`` to train.

1. collect expert demonstrations (scripted expert, state observations);
2. train IQ-MPC on them (offline, then online in MuJoCo) within a CPU-sized budget;
3. train behaviour cloning on the same demos, the baseline to beat;
4. export the IQ-MPC model as an ONNX bundle;
5. evaluate the bundle in-process (onnxruntime planner) and record a GIF of the camera;
6. run ``wmil_sim`` + ``wmil_planner`` over ROS 2 (DDS) in lockstep on the same seeds, with the
   fresh bundle and, when present, the shipped one in ``models/``;
7. print every score next to the expert's and write ``summary.json``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any

from wmil.stack import DEFAULT_MODEL
from wmil_core.config import atomic_write, to_dict
from wmil_core.paths import models_dir

# Planner for acting while training and in the exported bundle: sized for this 2-core CPU
# (`wmil bench planner` measured ~30-50 ms per plan at these settings here).
DEMO_PLANNER = {"num_samples": 64, "num_pi_trajs": 8, "num_elites": 16, "iterations": 2}


@dataclasses.dataclass
class DemoJob:
    """Settings of the main job (each is a ``wmil demo`` option)."""

    task: str = "dmc/reacher-easy"
    demos: int = 10
    seed: int = 0
    offline_steps: int = 1500  # IQ-MPC updates on the demos alone
    steps: int = 3000  # online environment steps (one update each after the seed steps)
    seed_steps: int = 1000
    bc_steps: int = 2000
    episodes: int = 10  # evaluation episodes (in-process and over ROS 2)
    out: str = "runs/demo"
    # the shipped bundle, also run over ROS 2 when it exists ('' skips)
    shipped: str = dataclasses.field(default_factory=lambda: str(models_dir() / DEFAULT_MODEL))
    ros: bool = True  # run the ROS 2 closed loop (needs rclpy)
    episode_length: int | None = None  # agent steps per episode (default: the task's)


def _score(ret: float | None, expert: float) -> float | None:
    return None if ret is None or not expert else ret / expert


def run_demo(job: DemoJob) -> dict[str, Any]:
    """Run the main job; returns (and writes to ``<out>/summary.json``) every score."""
    from wmil_core.bundle_eval import evaluate_bundle
    from wmil_core.collect import collect_demos
    from wmil_core.demos import load_demos
    from wmil_core.export import export_bundle
    from wmil_core.train import TrainConfig, Trainer

    out = Path(job.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    t_start = time.perf_counter()
    times: dict[str, float] = {}
    summary: dict[str, Any] = {"job": to_dict(job), "times_s": times}

    def lap(name: str, t0: float) -> None:
        times[name] = round(time.perf_counter() - t0, 1)

    print(f"[1/6] collecting {job.demos} expert demos of {job.task}", flush=True)
    t0 = time.perf_counter()
    demos = out / "demos.h5"
    collect_demos(job.task, job.demos, "state", demos, seed=job.seed, progress=False)
    info = load_demos(demos, task=job.task).summary()
    expert = float(info["return_mean"])
    summary["expert"] = {"return_mean": expert, "return_std": info["return_std"],
                         "success_rate": info["success_rate"]}
    print(f"      expert return {expert:.1f} +- {info['return_std']:.1f}", flush=True)
    lap("collect", t0)

    print(f"[2/6] training IQ-MPC: {job.offline_steps} offline updates, then {job.steps} "
          f"online steps", flush=True)
    t0 = time.perf_counter()
    eval_seed = job.seed + 10_000  # never a demo seed
    train_cfg = TrainConfig(
        task=job.task, demos=str(demos), method="iqmpc", preset="cpu",
        agent={"planner": dict(DEMO_PLANNER)}, offline_steps=job.offline_steps,
        steps=job.steps, seed_steps=min(job.seed_steps, job.steps), eval_every=max(job.steps, 1),
        eval_episodes=2, checkpoint_every=max(job.steps, 1), buffer_size=job.steps + 10_000,
        seed=job.seed, episode_length=job.episode_length)
    trainer = Trainer(train_cfg, out / "iqmpc")
    trainer.train()
    lap("train_iqmpc", t0)

    print(f"[3/6] training behaviour cloning ({job.bc_steps} updates) and evaluating it on "
          f"{job.episodes} episodes", flush=True)
    t0 = time.perf_counter()
    bc_cfg = TrainConfig(task=job.task, demos=str(demos), method="bc", preset="cpu",
                         offline_steps=job.bc_steps, steps=0, eval_episodes=job.episodes,
                         buffer_size=10, seed=job.seed, episode_length=job.episode_length)
    bc = Trainer(bc_cfg, out / "bc", progress=False)
    bc_eval = bc.train()  # evaluated on seeds seed + 10000 ..., as every other row
    summary["bc"] = {k: bc_eval[k] for k in ("return_mean", "return_std", "success_rate")}
    lap("train_bc", t0)

    print("[4/6] exporting the IQ-MPC model to ONNX", flush=True)
    t0 = time.perf_counter()
    model = export_bundle(out / "iqmpc", out / "model", name="demo")
    lap("export", t0)

    print(f"[5/6] evaluating the bundle in-process (onnxruntime) on {job.episodes} episodes",
          flush=True)
    t0 = time.perf_counter()
    fresh = evaluate_bundle(model, job.episodes, seed=eval_seed, gif=out / "camera.gif",
                            episode_length=job.episode_length)
    summary["iqmpc_inprocess"] = fresh
    lap("eval_inprocess", t0)

    models = {"iqmpc_ros": model}
    if job.shipped and (Path(job.shipped) / "manifest.json").is_file():
        models["shipped_ros"] = Path(job.shipped)
    if job.ros:
        from wmil.stack import PLANNER, SIM, run_stack

        for key, path in models.items():
            print(f"[6/6] ROS 2 closed loop: wmil_sim + wmil_planner ({path}) in lockstep, "
                  f"{job.episodes} episodes", flush=True)
            t0 = time.perf_counter()
            # state models need no camera: rendering it every step would only compete with
            # the planner for this process's interpreter
            sim = {"task": job.task, "seed": eval_seed, "episode_length": job.episode_length or 0,
                   "publish_image": False}
            res = run_stack({SIM: sim,
                             PLANNER: {"model_dir": str(path)}}, episodes=job.episodes,
                            timeout=1800.0)
            rets = [float(e["return"]) for e in res.episodes]
            succ = [bool(e["success"]) for e in res.episodes if e.get("success") is not None]
            mean = sum(rets) / len(rets)
            summary[key] = {"model": str(path), "return_mean": mean, "returns": rets,
                            "return_std": (sum((r - mean) ** 2 for r in rets) / len(rets)) ** 0.5,
                            "success_rate": sum(succ) / len(succ) if succ else None,
                            "latency_ms": res.latency}
            lap(key, t0)
    times["total"] = round(time.perf_counter() - t_start, 1)
    summary["learning_curve"] = str(out / "iqmpc" / "plots" / "learning_curve.png")
    summary["gif"] = str(out / "camera.gif")
    for key in ("bc", "iqmpc_inprocess", "iqmpc_ros", "shipped_ros"):
        if key in summary:
            summary[key]["normalized_score"] = _score(summary[key]["return_mean"], expert)
    atomic_write(out / "summary.json", json.dumps(summary, indent=2))
    print_summary(summary)
    return summary


def print_summary(s: dict[str, Any]) -> None:
    """The score table of a :func:`run_demo` summary."""
    rows = [("expert (scripted, demos)", s["expert"]), ("BC (in-process)", s.get("bc")),
            ("IQ-MPC, this run (onnxruntime, in-process)", s.get("iqmpc_inprocess")),
            ("IQ-MPC, this run (ROS 2 closed loop)", s.get("iqmpc_ros")),
            ("IQ-MPC, shipped model (ROS 2 closed loop)", s.get("shipped_ros"))]
    print(f"\nscore on {s['job']['task']} ({s['job']['episodes']} evaluation episodes; "
          f"normalized = return / expert return)")
    print(f"  {'':44s} {'return':>16s} {'normalized':>10s} {'success':>8s}")
    for name, r in rows:
        if r is None:
            continue
        norm = r.get("normalized_score", 1.0 if name.startswith("expert") else None)
        succ = r.get("success_rate")
        print(f"  {name:44s} {r['return_mean']:9.1f} +- {r.get('return_std') or 0.0:5.1f}"
              f" {'' if norm is None else f'{norm:10.2f}'} "
              f"{'n/a' if succ is None else f'{succ:8.2f}'}")
    ros = s.get("iqmpc_ros")
    if ros:
        lat = ros["latency_ms"]
        print(f"  ROS 2 loop: planning p50 {lat['plan_p50_ms']:.1f} ms, p99 "
              f"{lat['plan_p99_ms']:.1f} ms; observation received -> command published p50 "
              f"{lat['command_p50_ms']:.1f} ms, p99 {lat['command_p99_ms']:.1f} ms")
    print(f"  learning curve {s['learning_curve']}, camera GIF {s['gif']}")
    print(f"  wall time {s['times_s']['total']:.0f} s: " + ", ".join(
        f"{k} {v:.0f} s" for k, v in s["times_s"].items() if k != "total"))
