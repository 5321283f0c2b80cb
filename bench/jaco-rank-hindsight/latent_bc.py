"""Is the world model's latent a good input for a policy on new targets? (session 30)

Takes an IQ-MPC checkpoint, freezes its encoder h (the online networks'), and trains a
behaviour-cloning head (wmil's BC head: tanh MLP, mean squared error, batch and learning rate
of BCConfig) on h's latents of the run's demos, then scores that policy on held-out episodes.
``--train-encoder`` trains the same head with the encoder starting from the checkpoint's and
updated too (plain BC started from h). ``--head prior`` trains the checkpoint's own policy
prior instead (its mean action, same loss, encoder frozen), from where the run left it, and
then also scores the run's 64 x 2 planner (online networks) with that prior.
Against behaviour cloning from scratch on the same demos, this says whether the latent the
critic and prior read keeps what a policy for new targets needs, and whether the prior's
network can learn it from the encoded latents.

    python bench/jaco-rank-hindsight/latent_bc.py CHECKPOINT --updates 5000 --episodes 30
        --seed 20000 [--train-encoder | --head prior [--reinit]] [--out F]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
import torch

from wmil_core.agents.bc import BC, BCConfig
from wmil_core.config import atomic_write
from wmil_core.export import load_trained
from wmil_core.train import evaluate_agent


class PriorPolicy:
    """The checkpoint's policy prior as a policy: its mean action at h(o), cloned on demos."""

    def __init__(self, iq: Any, reinit: bool = False) -> None:
        self.iq = iq
        self.model = iq.model
        if reinit:  # start the prior's layers afresh (PyTorch's default initialisation)
            for module in self.model._pi.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
        self.model.requires_grad_(False)
        self.model._pi.requires_grad_(True)
        self.optim = torch.optim.Adam(self.model._pi.parameters(), lr=3e-4)

    def update(self, expert: Any) -> dict[str, float]:
        """One squared-error step of the prior's mean on the batch's encoded expert rows."""
        with torch.no_grad():
            z = self.model.encode({k: v[:-1] for k, v in expert.obs.items()})
        mean = self.model.pi(z, deterministic=True)[0]
        loss = (mean - expert.action).pow(2).mean()
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        return {"bc_loss": float(loss.detach())}

    @torch.no_grad()
    def act(self, obs: dict[str, np.ndarray], t0: bool, eval_mode: bool = False) -> np.ndarray:
        """The prior's mean action."""
        z = self.model.encode(self.iq.obs_to_tensors(obs))
        return self.model.pi(z, deterministic=True)[0][0].numpy()

    def decode_rewards(self, obs: Any, actions: np.ndarray) -> np.ndarray:
        """No reward is decoded here: NaN."""
        return np.full(len(actions), np.nan, dtype=np.float32)


def main() -> None:
    """Train the head and print (and save) the held-out score."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--updates", type=int, default=5000)
    ap.add_argument("--episodes", type=int, default=30)
    ap.add_argument("--seed", type=int, default=20000)
    ap.add_argument("--train-encoder", action="store_true")
    ap.add_argument("--head", choices=("bc", "prior"), default="bc")
    ap.add_argument("--reinit", action="store_true",
                    help="with --head prior: start the prior's layers afresh")
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    trainer = load_trained(args.checkpoint)[0]
    iq = trainer.agent
    if args.head == "prior":
        bc: Any = PriorPolicy(iq, reinit=args.reinit)
    else:
        bc = BC(iq.obs_shapes, iq.action_dim, 0, BCConfig(model=iq.cfg.model), device=iq.device)
        bc.net["encoder"].load_state_dict(iq.model._encoder.state_dict())
        if not args.train_encoder:
            bc.net["encoder"].requires_grad_(False)
            bc.optim = torch.optim.Adam(bc.net["head"].parameters(), lr=bc.cfg.lr)
    losses = []
    for _ in range(args.updates):
        losses.append(bc.update(trainer._expert_batch())["bc_loss"])
    ev = evaluate_agent(bc, trainer.eval_env, args.episodes, args.seed, trainer.expert_return)
    if args.head == "prior":  # the planner (online networks) proposing with the cloned prior
        with iq.online_evaluation():
            plan = evaluate_agent(iq, trainer.eval_env, args.episodes, args.seed,
                                  trainer.expert_return)
        ev["planner"] = {k: plan[k] for k in ("normalized_score", "success_rate", "returns")}
    out = {"checkpoint": args.checkpoint, "head": args.head,
           "reinit": args.reinit, "train_encoder": args.train_encoder,
           "updates": args.updates, "final_bc_loss": sum(losses[-100:]) / 100,
           **{k: ev[k] for k in ("episodes", "normalized_score", "success_rate", "returns",
                               "planner") if k in ev}}
    print(json.dumps({k: v for k, v in out.items() if k not in ("returns", "planner")}))
    if "planner" in out:
        print("planner:", {k: v for k, v in out["planner"].items() if k != "returns"})
    if args.out:
        atomic_write(args.out, json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
