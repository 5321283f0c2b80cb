"""How reacher evaluation episodes go (session 15): for each run's latest checkpoint, its
evaluation episodes replayed (the planner as training evaluates it) with, per episode, the
return, the first agent step on the target (reward > 0.5), the share of steps on it from then
on, and the finger-to-target distance at its smallest and at the end. Tells "never gets
there" from "gets there and leaves". Usage, from the repo root:
python bench/reacher-sym-branch-20k/episode_probe.py RUN [RUN ...] > episode-probe.json
"""

import json
import sys

import numpy as np

from wmil_core.export import load_trained
from wmil_core.train import play_episode


def probe(run: str, episodes: int = 10) -> dict:
    """Per-episode anatomy of one run's evaluation episodes (seeds as training evaluates)."""
    trainer, _ = load_trained(run)
    agent = trainer.agent
    out = []
    for i in range(episodes):
        obs, _, rewards, _ = play_episode(
            trainer.eval_env, lambda o, t: agent.act(o, t0=t == 0, eval_mode=True),
            trainer.eval_seed + i)
        r = np.asarray(rewards)
        dist = np.linalg.norm(np.asarray(obs["features"])[:, :2], axis=-1)  # to_target
        on = np.nonzero(r > 0.5)[0]
        out.append({"seed": trainer.eval_seed + i, "return": float(r.sum()),
                    "first_step_on_target": int(on[0]) if len(on) else None,
                    "share_on_target_after": float((r[on[0]:] > 0.5).mean()) if len(on) else 0.0,
                    "min_distance": float(dist.min()), "final_distance": float(dist[-1])})
    left = sum(e["first_step_on_target"] is not None and e["share_on_target_after"] < 0.5
               for e in out)
    never = sum(e["first_step_on_target"] is None for e in out)
    return {"run": run, "step": trainer.step, "episodes": out,
            "reached_then_left_most_of_the_time": left, "never_reached": never}


if __name__ == "__main__":
    print(json.dumps([probe(r) for r in sys.argv[1:]], indent=1))
