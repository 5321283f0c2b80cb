"""How close does a run's policy bring the pinch site to each target? (session 27)

Plays ``--episodes`` episodes from ``--seed`` on with the run's planner (evaluation mode) and
prints, per episode, the return, the start, smallest and final pinch-to-target distance and
the step of the smallest; saves the same with ``--out``.

    python bench/jaco-cartesian/finals.py RUN --seed 20000 --episodes 14 [--out F]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from wmil_core.collect import play_episode
from wmil_core.config import atomic_write
from wmil_core.export import load_trained


def main() -> None:
    """Play the episodes and print (and save) the distances."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--seed", type=int, default=20000)
    ap.add_argument("--episodes", type=int, default=14)
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(1)
    trainer = load_trained(args.run)[0]
    agent, env = trainer.agent, trainer.eval_env
    rows = []
    for seed in range(args.seed, args.seed + args.episodes):
        obs, _, _, info = play_episode(
            env, lambda o, t: agent.act(o, t0=t == 0, eval_mode=True), seed)
        d = np.linalg.norm(obs["features"][:, 6:9], axis=1)  # target - pinch, T+1 rows
        rows.append({"seed": seed, "return": float(info["episode_return"]),
                     "start": float(d[0]), "closest": float(d.min()), "final": float(d[-1]),
                     "closest_step": int(d.argmin())})
        r = rows[-1]
        print(seed, f"return {r['return']:.0f} start {r['start']:.3f} closest {r['closest']:.3f}"
              f" final {r['final']:.3f} at step {r['closest_step']}", flush=True)
    if args.out:
        atomic_write(args.out, json.dumps({"run": args.run, "episodes": rows}, indent=1))


if __name__ == "__main__":
    main()
