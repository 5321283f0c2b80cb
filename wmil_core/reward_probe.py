"""Decoded-reward correlation over behaviours of different quality.

The correlation logged at each evaluation is measured on the agent's own episodes. Once the
agent imitates well those episodes give the true reward little spread, and an inverse-RL reward
is only asked to rank the agent against the expert, so that number says little about whether
the decoded reward ranks behaviour the way the task does. This probe rolls out several
behaviours on the same seeded episodes (the trained planner, the task's expert, the expert
with Gaussian action noise of each given scale, uniform random actions), decodes every real
transition's reward with the agent (r = Q(z, a) - gamma V(z')), and reports

- per-step Pearson correlation with the simulator's reward, pooled over all behaviours and
  within each behaviour (the "agent" group is what training logs);
- Pearson and Spearman correlation between decoded and true episode returns, over all episodes
  (the per-episode measure of IQ-Learn's evaluation);
- the windowed correlation that the official IQ-MPC code computes during updates (and never
  logs): Pearson over each window of ``window`` consecutive steps (its planning horizon),
  averaged over windows, a window with a constant side counting as 0. It asks whether the
  decoded reward rises and falls with the true one over a few steps, not whether their levels
  agree across states, so it is reported beside the per-step measure, never instead of it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from wmil_core.tasks.env import WmilEnv

#: (on_reset(env) or None, act(obs, t) -> action in [-1, 1]^A)
Behaviour = tuple[Callable[["WmilEnv"], None] | None,
                  Callable[[dict[str, np.ndarray], int], np.ndarray]]


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson correlation, None when either side is constant or too short."""
    if len(x) < 2 or np.std(x) == 0 or np.std(y) == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def _spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman rank correlation, None when either side is constant or too short."""
    if len(x) < 2 or np.std(x) == 0 or np.std(y) == 0:
        return None
    from scipy import stats

    return float(stats.spearmanr(x, y).statistic)


def window_pearson(true: np.ndarray, decoded: np.ndarray, window: int) -> np.ndarray:
    """Pearson correlation over every window of ``window`` consecutive steps of one episode.

    Returns one value per window start (``len - window + 1`` of them, none for a shorter
    episode); a window where either side is constant gives 0, as the official code's
    ``nan_to_num(0)`` does.
    """
    if window < 2:
        raise ValueError(f"window: a correlation needs at least 2 steps, got {window}")
    t = np.asarray(true, dtype=np.float64)
    d = np.asarray(decoded, dtype=np.float64)
    if len(t) < window:
        return np.zeros(0)
    tw = np.lib.stride_tricks.sliding_window_view(t, window)
    dw = np.lib.stride_tricks.sliding_window_view(d, window)
    tc = tw - tw.mean(1, keepdims=True)
    dc = dw - dw.mean(1, keepdims=True)
    den = np.sqrt((tc * tc).sum(1) * (dc * dc).sum(1))
    cov = (tc * dc).sum(1)
    # a window whose spread is float rounding is constant, not perfectly (anti)correlated
    tiny = 1e-12 * (1.0 + np.abs(tw).max(1) * np.abs(dw).max(1))
    return np.where(den > tiny, cov / np.where(den > tiny, den, 1.0), 0.0)


def _window_mean(episodes: Sequence[dict[str, Any]], window: int | None) -> float | None:
    if window is None:
        return None
    vals = [window_pearson(e["true"], e["decoded"], window) for e in episodes]
    flat = np.concatenate(vals) if vals else np.zeros(0)
    return float(flat.mean()) if len(flat) else None


def correlations(episodes: Sequence[dict[str, Any]], window: int | None = None,
                 ) -> dict[str, Any]:
    """Per-step and per-episode correlations of episodes ``{behaviour, true, decoded}``.

    ``true`` and ``decoded`` are the per-step rewards of one episode (equal lengths);
    ``window`` adds the mean windowed Pearson (:func:`window_pearson`), pooled and per
    behaviour.
    """
    if not episodes:
        raise ValueError("reward probe: no episodes")
    for e in episodes:
        if len(e["true"]) != len(e["decoded"]):
            raise ValueError(f"reward probe: {e['behaviour']}: {len(e['true'])} true rewards "
                             f"but {len(e['decoded'])} decoded")
    true = np.concatenate([e["true"] for e in episodes]).astype(np.float64)
    dec = np.concatenate([e["decoded"] for e in episodes]).astype(np.float64)
    ret_t = np.array([np.sum(e["true"]) for e in episodes], dtype=np.float64)
    ret_d = np.array([np.sum(e["decoded"]) for e in episodes], dtype=np.float64)
    groups: dict[str, Any] = {}
    for name in dict.fromkeys(e["behaviour"] for e in episodes):
        mine = [e for e in episodes if e["behaviour"] == name]
        t = np.concatenate([e["true"] for e in mine]).astype(np.float64)
        d = np.concatenate([e["decoded"] for e in mine]).astype(np.float64)
        groups[name] = {
            "episodes": len(mine),
            "steps": len(t),
            "return_mean": float(np.mean([np.sum(e["true"]) for e in mine])),
            "decoded_return_mean": float(np.mean([np.sum(e["decoded"]) for e in mine])),
            "step_pearson": _pearson(t, d),
            "window_pearson": _window_mean(mine, window),
        }
    return {
        "episodes": len(episodes),
        "steps": len(true),
        "step_pearson": _pearson(true, dec),
        "return_pearson": _pearson(ret_t, ret_d),
        "return_spearman": _spearman(ret_t, ret_d),
        "window": window,
        "window_pearson": _window_mean(episodes, window),
        "behaviours": groups,
    }


def paired_ranking(episodes: Sequence[dict[str, Any]], margin: float = 0.0,
                   ) -> dict[str, Any] | None:
    """Agent against expert on the same seeds: on how many seeds the expert's true return
    beats the agent's by more than ``margin``, and on how many of those the decoded returns
    rank them the same way (the critic prefers the better behaviour). None without both.

    A critic that scores the agent's failing episodes above the expert's on the same target
    is one the planner can exploit there.
    """
    by = {(e["behaviour"], e["seed"]): e for e in episodes}
    seeds = sorted(s for b, s in by if b == "agent" and ("expert", s) in by)
    if not seeds:
        return None
    rows = []
    for s in seeds:
        a, x = by[("agent", s)], by[("expert", s)]
        rows.append({"seed": s, "agent_return": float(np.sum(a["true"])),
                     "expert_return": float(np.sum(x["true"])),
                     "agent_decoded": float(np.sum(a["decoded"])),
                     "expert_decoded": float(np.sum(x["decoded"]))})
    worse = [r for r in rows if r["expert_return"] > r["agent_return"] + margin]
    agree = [r for r in worse if r["expert_decoded"] > r["agent_decoded"]]
    return {"seeds": len(rows), "margin": margin, "agent_worse": len(worse),
            "critic_agrees": len(agree), "per_seed": rows}


def behaviours(agent: Any, env: WmilEnv, task: str, noise: Sequence[float], seed: int,
               ) -> dict[str, Behaviour]:
    """The probe's behaviours: agent, expert, expert + N(0, s^2) noise per scale, random.

    The expert sees the state observation (``env.state_obs()``) whatever the agent's mode.
    """
    from wmil_core.experts.base import make_expert

    rng = np.random.default_rng(seed)
    adim = int(env.action_space.shape[0])
    out: dict[str, Behaviour] = {
        "agent": (None, lambda obs, t: agent.act(obs, t0=t == 0, eval_mode=True)),
    }
    try:
        expert = make_expert(task)
    except ValueError:
        expert = None  # a task without an expert: agent and random only
    if expert is not None:
        out["expert"] = (expert.reset, lambda obs, t: expert.act(env.state_obs()))
        for s in noise:
            out[f"expert+noise{s:g}"] = (
                expert.reset,
                lambda obs, t, s=s: np.clip(expert.act(env.state_obs())
                                            + s * rng.standard_normal(adim), -1.0, 1.0))
    out["random"] = (None, lambda obs, t: rng.uniform(-1.0, 1.0, adim))
    return out


def probe(agent: Any, env: WmilEnv, task: str, episodes: int = 4, seed: int = 20_000,
          noise: Sequence[float] = (0.3, 1.0),
          progress: Callable[[str], None] | None = None,
          window: int | None = None) -> dict[str, Any]:
    """Roll out every behaviour on ``episodes`` seeded episodes and correlate the rewards.

    ``window`` (default: the agent's planning horizon, at least 2) sets the windowed measure.
    """
    if window is None:
        planner = getattr(getattr(agent, "cfg", None), "planner", None)
        window = max(int(getattr(planner, "horizon", 3)), 2)
    if episodes < 1:
        raise ValueError(f"--episodes: must be at least 1, got {episodes}")
    if any(s < 0 or not np.isfinite(s) for s in noise):
        raise ValueError(f"--noise: scales must be finite and >= 0, got {list(noise)}")
    from wmil_core.collect import play_episode

    rows = []
    for name, (on_reset, act) in behaviours(agent, env, task, noise, seed).items():
        for i in range(episodes):
            obs, actions, rewards, _ = play_episode(env, act, seed + i, on_reset)
            dec = agent.decode_rewards(obs, actions)
            if not np.all(np.isfinite(dec)):
                raise ValueError(f"{task}: the agent decodes no (finite) reward; the probe "
                                 "needs an inverse-RL method such as iqmpc")
            rows.append({"behaviour": name, "seed": seed + i,
                         "true": np.asarray(rewards, dtype=np.float64),
                         "decoded": np.asarray(dec, dtype=np.float64)})
        if progress is not None:
            progress(name)
    result = correlations(rows, window)
    # a tenth of the expert's mean return: "worse" is a failure, not a slower approach
    expert_returns = [np.sum(r["true"]) for r in rows if r["behaviour"] == "expert"]
    margin = 0.1 * float(np.mean(expert_returns)) if expert_returns else 0.0
    result.update(task=task, seed=seed, noise=list(noise), paired=paired_ranking(rows, margin),
                  episodes_per_behaviour=episodes,
                  returns=[{"behaviour": r["behaviour"], "seed": r["seed"],
                            "return": float(np.sum(r["true"])),
                            "decoded_return": float(np.sum(r["decoded"]))} for r in rows])
    return result


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.3f}"


def cmd_reward_corr(args: argparse.Namespace) -> int:
    """Probe a run's or checkpoint's decoded reward over behaviours; print and save JSON."""
    from wmil_core.config import atomic_write
    from wmil_core.export import load_trained

    try:
        noise = [float(s) for s in args.noise.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--noise: comma-separated numbers expected, got {args.noise!r}") from None
    trainer, paths = load_trained(args.run)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    task = trainer.cfg.task
    r = probe(trainer.agent, trainer.eval_env, task, args.episodes, args.seed, noise,
              progress=lambda name: print(f"  rolled out {name}", flush=True))
    r["step"] = trainer.step
    r["checkpoint"] = str(paths["checkpoint"])
    print(f"{task} at step {trainer.step}: decoded vs true reward over {r['episodes']} "
          f"episodes ({args.episodes} per behaviour, seeds {args.seed}+)")
    print(f"  per step (pooled, {r['steps']} transitions): Pearson {_fmt(r['step_pearson'])}")
    print(f"  per episode return: Pearson {_fmt(r['return_pearson'])}, "
          f"Spearman {_fmt(r['return_spearman'])}")
    print(f"  windowed ({r['window']} steps, as the official IQ-MPC code): mean Pearson "
          f"{_fmt(r['window_pearson'])}")
    print("  | behaviour | true return | decoded return | per-step Pearson | windowed Pearson |")
    for name, g in r["behaviours"].items():
        print(f"  | {name} | {g['return_mean']:.1f} | {g['decoded_return_mean']:.1f} | "
              f"{_fmt(g['step_pearson'])} | {_fmt(g['window_pearson'])} |")
    if (pr := r["paired"]) is not None:
        print(f"  agent vs expert on the same seeds: the expert did better by more than "
              f"{pr['margin']:.1f} on {pr['agent_worse']} of {pr['seeds']}; the decoded return "
              f"ranks the expert higher on {pr['critic_agrees']} of those")
    run = paths["run"] or Path(paths["checkpoint"]).parent
    out = Path(args.out) if args.out else Path(run) / f"reward-corr-{trainer.step}.json"
    atomic_write(out, json.dumps(r, indent=2))
    print(f"wrote {out}")
    return 0


def add_command(bsub: Any) -> None:
    """Register ``wmil bench reward-corr``."""
    p = bsub.add_parser("reward-corr", help="decoded-reward correlation over behaviours "
                        "(agent, expert, noisy expert, random)")
    p.add_argument("run", help="run directory or checkpoint file")
    p.add_argument("--episodes", type=int, default=4, help="episodes per behaviour")
    p.add_argument("--seed", type=int, default=20_000, help="first episode seed")
    p.add_argument("--noise", default="0.3,1.0",
                   help="std of the Gaussian action noise added to the expert, per behaviour")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--out", default=None, help="JSON (default RUN/reward-corr-<step>.json)")
    p.set_defaults(func=cmd_reward_corr)
