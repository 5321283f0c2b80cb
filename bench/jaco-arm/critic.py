"""Does a checkpoint's Q prefer the expert's action to the one its planner picks? (session 26)

Plays episodes on seeds ``SEED``..``SEED+N-1`` with the planner (or, ``--expert-acts``, with
the Jaco expert, the planner still asked at every state) and, at each state, compares the
planner's action with the expert's: their cosine, and the two-head average Q of each from the
averaged networks (``--online``: the online ones, which then also plan). Prints per episode,
for the reach phase (first 40 steps) and the rest, the median cosine, the share of steps where
Q rates the expert's action higher, and the mean of Q(expert) - Q(planner); saves the same with
``--out``.

    python bench/jaco-arm/critic.py CHECKPOINT --seed S --episodes N [--expert-acts] [--online]
        [--out F]
"""

from __future__ import annotations

import argparse
import contextlib
import json

import numpy as np
import torch

from wmil_core.collect import play_episode
from wmil_core.config import atomic_write
from wmil_core.experts.base import make_expert
from wmil_core.export import load_trained

REACH = 40


def _phase(rows: list[dict[str, float]]) -> dict[str, float]:
    return {"cosine_median": float(np.median([r["cos"] for r in rows])),
            "expert_preferred": float(np.mean([r["q_expert"] > r["q_planner"] for r in rows])),
            "q_expert_minus_planner": float(np.mean([r["q_expert"] - r["q_planner"]
                                                     for r in rows]))}


def main() -> None:
    """Play the episodes and print (and save) the comparison."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--seed", type=int, default=20000)
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--expert-acts", action="store_true",
                    help="the expert's actions are executed (the planner is only asked)")
    ap.add_argument("--online", action="store_true",
                    help="probe the online networks, not the averaged copy (as wmil eval --online)")
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(1)
    trainer = load_trained(args.checkpoint)[0]
    agent, env = trainer.agent, trainer.eval_env
    stack = contextlib.ExitStack()  # open until the process ends
    if args.online:
        stack.enter_context(agent.online_evaluation())
    model = agent.eval_model  # the networks act(eval_mode=True) plans with
    expert = make_expert(env.task_name)
    steps: list[dict[str, float]] = []

    def act(obs: dict[str, np.ndarray], t: int) -> np.ndarray:
        a_exp = expert.act(obs).astype(np.float32)
        a_plan = agent.act(obs, t0=t == 0, eval_mode=True)
        with torch.no_grad():
            z = model.encode(agent.obs_to_tensors(obs))
            q = model.Q(z.expand(2, -1), torch.as_tensor(np.stack([a_plan, a_exp])), "avg")
        cos = float(a_plan @ a_exp / (np.linalg.norm(a_plan) * np.linalg.norm(a_exp) + 1e-8))
        steps.append({"t": t, "cos": cos, "q_planner": float(q[0, 0]),
                      "q_expert": float(q[1, 0])})
        return a_exp if args.expert_acts else a_plan

    episodes = []
    for seed in range(args.seed, args.seed + args.episodes):
        first = len(steps)
        obs, _, _, info = play_episode(env, act, seed, on_reset=expert.reset)
        ep = steps[first:]
        row = {"seed": seed, "return": float(info["episode_return"]),
               "final_distance": float(np.linalg.norm(obs["features"][-1][6:9])),
               "reach": _phase([r for r in ep if r["t"] < REACH]),
               "rest": _phase([r for r in ep if r["t"] >= REACH])}
        episodes.append(row)
        print(seed, f"return {row['return']:.0f} final {row['final_distance']:.3f}",
              *(f"| {k} cos {row[k]['cosine_median']:+.2f} expert preferred "
                f"{row[k]['expert_preferred']:.2f} dQ {row[k]['q_expert_minus_planner']:+.3f}"
                for k in ("reach", "rest")), flush=True)
    total = {k: _phase([r for r in steps if (r["t"] < REACH) == (k == "reach")])
             for k in ("reach", "rest")}
    print("all", json.dumps(total))
    if args.out:
        atomic_write(args.out, json.dumps({"checkpoint": args.checkpoint,
                                           "expert_acts": args.expert_acts,
                                           "networks": "online" if args.online else "averaged",
                                           "all": total,
                                           "episodes": episodes}, indent=1))


if __name__ == "__main__":
    main()
