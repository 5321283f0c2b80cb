"""Distance from the pinch site to the target along a checkpoint's episodes (session 25).

Plays the policy prior (``--prior``) or the planner on seeds ``SEED``..``SEED+N-1`` and
prints, per episode, the distance (m, the ``target - pinch site`` feature) at steps 0, 10,
20, 40, 80, 160 and 249, its minimum and the episode's return.

    python bench/jaco-hold/distances.py CHECKPOINT --seed S --episodes N [--prior] [--out F]

The session-25 JSONs beside it were made at commit f195a5e, whose jaco/reach-site still read
the fingers' joints (the checkpoints of bench/jaco-hold need that observation spec).
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np
import torch

from wmil_core.collect import play_episode
from wmil_core.config import atomic_write
from wmil_core.export import load_trained

STEPS = (0, 10, 20, 40, 80, 160, 249)


def main() -> None:
    """Play the episodes and print (and save) the distances."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--seed", type=int, default=20000)
    ap.add_argument("--episodes", type=int, default=8)
    ap.add_argument("--prior", action="store_true", help="the policy prior alone, no planner")
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(1)
    trainer = load_trained(args.checkpoint)[0]
    agent = trainer.agent
    agent.cfg = dataclasses.replace(agent.cfg, mpc=not args.prior)
    rows = []
    for seed in range(args.seed, args.seed + args.episodes):
        obs, _, _, info = play_episode(
            trainer.eval_env, lambda o, t: agent.act(o, t0=t == 0, eval_mode=True), seed)
        # before each action; one norm per row (a batched norm rounds float32 differently)
        dist = [float(np.linalg.norm(f[6:9])) for f in obs["features"][:-1]]
        row = {"seed": seed, "distance": {t: dist[t] for t in STEPS if t < len(dist)},
               "min_distance": min(dist), "return": float(info["episode_return"]),
               "success": bool(info.get("success", False))}
        rows.append(row)
        print(seed, " ".join(f"{d:.3f}" for d in row["distance"].values()),
              f"min {row['min_distance']:.3f} return {row['return']:.0f}", flush=True)
    if args.out:
        atomic_write(args.out, json.dumps({"checkpoint": args.checkpoint, "prior": args.prior,
                                           "episodes": rows}, indent=1))


if __name__ == "__main__":
    main()
