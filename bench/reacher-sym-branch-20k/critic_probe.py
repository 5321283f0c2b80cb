"""What the critic of a reacher run makes of the demonstrations (session 14).

For 2000 demo rows (seeded draw) of each run's latest checkpoint: the mean Q(s, a_E) with the
true target and with the target moved 0.08-0.2 away in a random direction (the arm's state
and action unchanged: does Q read the target?), and the action gap Q(s, pi mean) - Q(s, a_E)
on the demo states (what the decoded reward charges the expert per step where the prior's
action is valued above the expert's); and, on the first 200 of those rows, the best Q over
512 uniform random actions (is Q's optimum at the expert's action at all, or is the prior
just finding another?). Usage, from the repo root:
python bench/reacher-sym-branch-20k/critic_probe.py RUN [RUN ...] > critic-probe.json
"""

import json
import sys

import numpy as np
import torch

from wmil_core.demos import load_demos
from wmil_core.export import load_trained

DEMOS = "bench/reacher-sym-branch-20k/demos/reacher.h5"


def probe(run: str, rows: int = 2000, seed: int = 0) -> dict:
    """The probe's numbers for one run directory."""
    trainer, _ = load_trained(run)
    m = trainer.agent.model
    ds = load_demos(DEMOS)
    obs = {k: np.concatenate([e.obs[k][:-1] for e in ds.episodes]) for k in ds.episodes[0].obs}
    act = np.concatenate([e.actions for e in ds.episodes])
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(act), rows, replace=False)
    o = {k: torch.as_tensor(v[idx]) for k, v in obs.items()}
    a = torch.as_tensor(act[idx])
    angle = rng.uniform(0, 2 * np.pi, rows)
    radius = rng.uniform(0.08, 0.2, rows)
    moved = dict(o, features=torch.as_tensor(
        np.stack([radius * np.cos(angle), radius * np.sin(angle)], -1), dtype=torch.float32))
    with torch.no_grad():
        z = m.encode(o)
        q_true = m.Q(z, a, "avg").squeeze(-1)
        q_moved = m.Q(m.encode(moved), a, "avg").squeeze(-1)
        gap = m.Q(z, m.pi(z)[0], "avg").squeeze(-1) - q_true
        few, k = 200, 512
        uniform = torch.as_tensor(rng.uniform(-1, 1, (few * k, a.shape[-1])), dtype=torch.float32)
        best = m.Q(z[:few].repeat_interleave(k, 0), uniform, "avg").view(few, k).max(1).values
    return {"run": run, "step": trainer.step, "rows": rows,
            "q_expert_true_target": float(q_true.mean()),
            "q_expert_target_moved": float(q_moved.mean()),
            "action_gap_mean": float(gap.mean()), "action_gap_median": float(gap.median()),
            "action_gap_share_positive": float((gap > 0).float().mean()),
            "expert_action_size_mean": float(a.abs().mean()),
            "q_best_of_512_uniform_minus_q_expert_mean": float((best - q_true[:few]).mean()),
            "share_some_uniform_action_beats_expert": float((best > q_true[:few]).float().mean())}


if __name__ == "__main__":
    print(json.dumps([probe(r) for r in sys.argv[1:]], indent=1))
