"""Evaluate an exported model bundle in-process (onnxruntime planner + MuJoCo, no ROS, no torch)
and record a GIF of its camera.

This is the reference the ROS 2 closed loop is compared against: the same bundle, the same
planner settings and the same episode seeds as ``wmil_sim`` (episode i uses seed + i).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from wmil_core.config import atomic_write


def evaluate_bundle(model_dir: str | Path, episodes: int = 10, seed: int = 0,
                    task: str | None = None, settings: Mapping[str, int] | None = None,
                    threads: int | None = None, gif: str | Path | None = None,
                    gif_steps: int = 150, gif_size: int = 128,
                    episode_length: int | None = None) -> dict[str, Any]:
    """Run the bundle's MPPI planner on ``episodes`` seeded episodes of its task.

    Args:
        model_dir: the bundle.
        episodes: episodes (seeds ``seed .. seed + episodes - 1``).
        seed: first episode seed.
        task: registry task (default: the bundle's).
        settings: planner overrides (``samples``, ``iterations``, ``horizon``, ``shards``).
        threads: onnxruntime intra-op threads.
        gif: write the first steps of episode 0, seen by the task camera, here.
        gif_steps: how many steps the GIF shows.
        gif_size: GIF frame size (pixels).
        episode_length: agent steps per episode (default: the task's).

    Returns:
        return mean/std, normalized score (return / the demos' expert return, when the
        manifest records it), success rate, per-episode returns, planning latency p50/p99 ms.
    """
    from wmil_core.runtime import load_bundle, planner_for  # torch-free
    from wmil_core.tasks.env import make_env

    if episodes < 1:
        raise ValueError(f"episodes: must be >= 1, got {episodes}")
    bundle = load_bundle(model_dir)
    planner = planner_for(bundle, threads=threads, settings=settings)
    manifest = bundle.manifest
    task = task or manifest.get("task")
    if not task:
        raise ValueError(f"{model_dir}: the manifest names no task; pass task=")
    obs_mode = manifest.get("obs_mode", "state")
    kw: dict[str, Any] = {"image_size": gif_size} if gif and obs_mode == "state" else {}
    env = make_env(task, obs_mode, seed=seed, episode_length=episode_length, **kw)
    returns, successes, latency, frames = [], [], [], []
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            ret, t, info = 0.0, 0, {}
            while True:
                tic = time.perf_counter()
                action = planner.act(obs, t0=t == 0)
                latency.append(time.perf_counter() - tic)
                if gif and i == 0 and t < gif_steps:
                    frames.append(env.render())
                obs, _, term, trunc, info = env.step(np.asarray(action, dtype=np.float32))
                ret += float(info["reward"])
                t += 1
                if term or trunc:
                    break
            returns.append(ret)
            if "success" in info:
                successes.append(bool(info["success"]))
    finally:
        env.close()
    if gif and frames:
        write_gif(frames, gif)
    lat = np.asarray(latency) * 1e3
    expert = (manifest.get("training") or {}).get("expert_return")
    mean = float(np.mean(returns))
    return {
        "normalized_score": mean / expert if expert else None,
        "model": str(model_dir), "task": task, "episodes": episodes, "seed": seed,
        "precision": planner.bundle.precision,
        "return_mean": mean, "return_std": float(np.std(returns)),
        "success_rate": float(np.mean(successes)) if successes else None,
        "returns": returns,
        "plan_p50_ms": float(np.percentile(lat, 50)), "plan_p99_ms": float(np.percentile(lat, 99)),
    }


def write_gif(frames: list[np.ndarray], path: str | Path, fps: int = 25) -> Path:
    """Write RGB frames (HxWx3 uint8) as a looping GIF, atomically."""
    from io import BytesIO

    from PIL import Image

    if not frames:
        raise ValueError("write_gif: no frames")
    images = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
    buf = BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:],
                   duration=int(1000 / fps), loop=0)
    path = Path(path)
    atomic_write(path, buf.getvalue())
    return path


def record_evaluation(model_dir: str | Path, evaluation: Mapping[str, Any]) -> None:
    """Store an evaluation of the bundle in its manifest (key ``evaluation``), atomically.

    The manifest is not among the hashed files, so the bundle stays valid.
    """
    path = Path(model_dir) / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["evaluation"] = dict(evaluation)
    atomic_write(path, json.dumps(manifest, indent=2) + "\n")
