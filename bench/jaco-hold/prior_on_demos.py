"""The policy prior and Q of a checkpoint on the demos' own states (session 25 diagnosis).

For each network copy (averaged, online) and each phase of the demos (reach: the first 40
steps; hold: the rest, where the expert keeps the hand on the target): the median norm of
the expert's and the prior's (deterministic) actions, their median cosine and relative
error, and the mean Q (two-head average) of the expert action, the prior's, the expert's
with N(0, 0.3) noise and of zero action.

    python bench/jaco-hold/prior_on_demos.py CHECKPOINT DEMOS.h5 [--out F.json]

The session-25 JSONs beside it were made at commit f195a5e, whose jaco/reach-site still read
the fingers' joints (the checkpoints of bench/jaco-hold need that observation spec).
"""

from __future__ import annotations

import argparse
import json

import torch

from wmil_core.config import atomic_write
from wmil_core.demos import load_demos
from wmil_core.export import load_trained


def main() -> None:
    """Print (and save) the per-phase comparison."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("demos")
    ap.add_argument("--reach-steps", type=int, default=40)
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    agent = load_trained(args.checkpoint)[0].agent
    result = {}
    episodes = [({k: torch.as_tensor(v[:-1]) for k, v in ep.obs.items()},
                 torch.as_tensor(ep.actions)) for ep in load_demos(args.demos).episodes]
    for copy, model in (("averaged", getattr(agent, "ema_model", None)), ("online", agent.model)):
        if model is None:
            continue
        model.eval()
        cols: dict[str, list[torch.Tensor]] = {k: [] for k in
                                               ("a", "mu", "q_exp", "q_pi", "q_noisy", "q_zero")}
        with torch.no_grad():
            for obs, a in episodes:
                z = model.encode(obs)
                mu = model.pi(z, deterministic=True)[0]
                noisy = (a + 0.3 * torch.randn_like(a)).clamp(-1, 1)
                for k, v in (("a", a), ("mu", mu), ("q_exp", model.Q(z, a, "avg")),
                             ("q_pi", model.Q(z, mu, "avg")),
                             ("q_noisy", model.Q(z, noisy, "avg")),
                             ("q_zero", model.Q(z, torch.zeros_like(a), "avg"))):
                    cols[k].append(v)
        reach = torch.cat([torch.arange(len(a)) < args.reach_steps for _, a in episodes])
        cat = {k: torch.cat(v) for k, v in cols.items()}
        for phase, sel in (("reach", reach), ("hold", ~reach)):
            a, mu = cat["a"][sel], cat["mu"][sel]
            row = {
                "expert_action_norm_median": float(a.norm(dim=1).median()),
                "prior_action_norm_median": float(mu.norm(dim=1).median()),
                "cosine_median": float(torch.cosine_similarity(a, mu, dim=1).median()),
                "relative_error_median": float(((a - mu).norm(dim=1)
                                                / a.norm(dim=1).clamp_min(1e-3)).median()),
                **{k: float(cat[k][sel].mean()) for k in ("q_exp", "q_pi", "q_noisy", "q_zero")},
            }
            result[f"{copy}/{phase}"] = row
            print(copy, phase, " ".join(f"{k} {v:.3f}" for k, v in row.items()))
    if args.out:
        atomic_write(args.out, json.dumps({"checkpoint": args.checkpoint, "demos": args.demos,
                                           "reach_steps": args.reach_steps, **result}, indent=1))


if __name__ == "__main__":
    main()
