"""Training SAC experts with the simulator's reward, for tasks with no scripted demonstrator.

This is the only place in wmil where a learner sees the reward: it makes the demonstrator.
``wmil expert train --task T --steps N --out models/experts/<slug>/`` writes::

    <out>/expert.pt        the policy (encoder + actor weights, loadable with weights_only)
    <out>/expert.json      task, sizes, training steps and the evaluation of expert.pt
    <out>/config.yaml      the run's ExpertTrainConfig
    <out>/metrics.csv      training and evaluation rows
    <out>/learning_curve.png
    <out>/checkpoints/     latest.pt + buffer.npz for --resume (not shipped)

``expert.pt`` is rewritten (atomically) whenever an evaluation beats the previous best, so a
killed run always leaves its best policy behind. The ``sac`` expert of the registry
(:mod:`wmil_core.experts.trained`) loads it.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from wmil_core.agents.sac import RewardSAC, SACConfig
from wmil_core.buffer import EpisodeBuffer
from wmil_core.config import atomic_write, from_dict, save_config, to_dict
from wmil_core.tasks import make_env
from wmil_core.timing import TrainingClock

EXPERT_FORMAT = 1


def expert_slug(task: str) -> str:
    """Directory name of a task's trained expert: ``dmc/walker-walk`` -> ``dmc-walker-walk``."""
    return task.replace("/", "-")


def expert_dir(task: str) -> Path:
    """Where the ``sac`` expert of ``task`` is shipped: ``models/experts/<slug>/``."""
    from wmil_core.paths import models_dir

    return models_dir() / "experts" / expert_slug(task)


def _default_sac() -> dict[str, Any]:
    # sized for one CPU core: 11 ms per update here at batch 128 (22 ms at 256), so a
    # 250k-step run takes about an hour; wide enough for the locomotion tasks
    return {"batch_size": 128,
            "model": {"latent_dim": 128, "enc_dim": 256, "mlp_dim": 256, "num_q": 2}}


@dataclasses.dataclass
class ExpertTrainConfig:
    """One expert-training run (every field is a ``wmil expert train`` option)."""

    task: str = "dmc/walker-walk"
    steps: int = 300_000  # environment (agent) steps
    seed_steps: int = 5000  # uniform random actions first
    updates_per_step: int = 1
    eval_every: int = 10_000
    eval_episodes: int = 5
    checkpoint_every: int = 10_000
    buffer_size: int = 1_000_000
    sac: dict[str, Any] = dataclasses.field(default_factory=_default_sac)  # SACConfig fields
    episode_length: int | None = None  # cut episodes (tests)
    seed: int = 0
    device: str = "auto"
    threads: int = 1

    def __post_init__(self) -> None:
        for name in ("steps", "seed_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        for name in ("eval_every", "eval_episodes", "checkpoint_every", "buffer_size",
                     "updates_per_step"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1")
        from_dict(SACConfig, self.sac, prefix="sac.")  # refuse bad overrides up front


class ExpertTrainer:
    """SAC on the task's reward in ``state`` mode, with evaluation, checkpoints and resume."""

    def __init__(self, cfg: ExpertTrainConfig, out: str | Path, progress: bool = True) -> None:
        from wmil_core.train import resolve_device

        self.cfg = cfg
        self.out = Path(out)
        self.progress = progress
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.env = make_env(cfg.task, "state", seed=cfg.seed, episode_length=cfg.episode_length)
        self.eval_env = make_env(cfg.task, "state", seed=cfg.seed + 10_000,
                                 episode_length=cfg.episode_length)
        self.spec = self.env.obs_spec()
        self.shapes = {k: tuple(v["shape"]) for k, v in self.spec.items()}
        self.action_dim = int(self.env.action_space.shape[0])
        self.sac_cfg = from_dict(SACConfig, self.sac_dict(), prefix="sac.")
        self.agent = RewardSAC(self.shapes, self.action_dim, self.env.episode_length,
                               self.sac_cfg, resolve_device(cfg.device))
        self.buffer = EpisodeBuffer(self.spec, self.action_dim, cfg.buffer_size, 1, rewards=True)
        self.rng = np.random.default_rng(cfg.seed)
        self.step = 0
        self.episode = 0
        self.history: list[dict[str, Any]] = []
        self.clock = TrainingClock()  # wall time over resumed segments

    def sac_dict(self) -> dict[str, Any]:
        """The SAC config as data: the defaults merged with the run's overrides."""
        base, over = _default_sac(), dict(self.cfg.sac)
        base["model"] = {**base["model"], **over.pop("model", {})}
        return {**base, **over}

    # -- persistence ----------------------------------------------------------------------------
    @property
    def ckpt_path(self) -> Path:  # noqa: D102
        return self.out / "checkpoints" / "latest.pt"

    def save_checkpoint(self) -> None:
        """Agent, counters, random streams and the replay buffer, atomically."""
        self.buffer.save(self.out / "checkpoints" / "buffer.npz")
        state = {"agent": self.agent.state_dict(), "step": self.step, "episode": self.episode,
                 "rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                 "history": self.history, "wall_s": self.clock.elapsed()}
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write(self.ckpt_path, buf.getvalue())

    def load_checkpoint(self) -> None:
        """Continue from ``checkpoints/latest.pt``; a corrupt file is refused, nothing changed."""
        path = self.ckpt_path
        if not path.is_file():
            raise ValueError(f"{path}: no checkpoint to resume from")
        try:
            state = torch.load(path, map_location=self.agent.device, weights_only=False)
            self.agent.load_state_dict(state["agent"])
        except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is one user error
            raise ValueError(f"{path}: corrupt or incompatible checkpoint ({exc})") from None
        self.buffer.load(self.out / "checkpoints" / "buffer.npz")
        self.step, self.episode = int(state["step"]), int(state["episode"])
        self.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        self.history = list(state["history"])
        self.clock.restore(state, self.history)

    def save_expert(self, evaluation: dict[str, Any]) -> None:
        """``expert.pt`` (encoder and actor weights) and ``expert.json``, atomically."""
        m = self.agent.model
        payload = {
            "format": EXPERT_FORMAT,
            "task": self.cfg.task,
            "obs_spec": self.spec,
            "action_dim": self.action_dim,
            "model": to_dict(self.sac_cfg.model),
            "encoder": {k: v.detach().cpu() for k, v in m._encoder.state_dict().items()},
            "pi": {k: v.detach().cpu() for k, v in m._pi.state_dict().items()},
        }
        buf = io.BytesIO()
        torch.save(payload, buf)
        atomic_write(self.out / "expert.pt", buf.getvalue())
        meta = {"format": EXPERT_FORMAT, "task": self.cfg.task, "method": "sac",
                "trained_steps": self.step, "updates": self.agent.updates,
                "seed": self.cfg.seed, "sac": self.sac_dict(),
                "evaluation": {k: v for k, v in evaluation.items() if k != "phase"}}
        atomic_write(self.out / "expert.json", json.dumps(meta, indent=2))

    # -- evaluation -----------------------------------------------------------------------------
    def evaluate(self) -> dict[str, Any]:
        """Mean action of the actor on ``eval_episodes`` seeded episodes."""
        returns = []
        for i in range(self.cfg.eval_episodes):
            obs, _ = self.eval_env.reset(seed=self.cfg.seed + 10_000 + i)
            ret, done = 0.0, False
            while not done:
                a = self.agent.act(obs, t0=False, eval_mode=True)
                obs, _, term, trunc, info = self.eval_env.step(a.astype(np.float32))
                ret += float(info["reward"])
                done = term or trunc
            returns.append(ret)
        return {"episodes": len(returns), "return_mean": float(np.mean(returns)),
                "return_std": float(np.std(returns)), "returns": returns}

    def _saved_return(self) -> float:
        """Return of the expert.pt already on disk (a resumed run must not replace a better
        policy saved after its last checkpoint), -inf when there is none."""
        try:
            meta = json.loads((self.out / "expert.json").read_text())
            return float(meta["evaluation"]["return_mean"])
        except (OSError, ValueError, KeyError, TypeError):
            return -math.inf

    def _record_eval(self, wall: float) -> dict[str, Any]:
        ev = self.evaluate()
        row = {"step": self.step, "phase": "eval", "update": self.agent.updates, "wall_s": wall,
               "return_mean": ev["return_mean"], "return_std": ev["return_std"]}
        best = max((h["return_mean"] for h in self.history), default=self._saved_return())
        self.history.append(row)
        self._log(row)
        if row["return_mean"] > best:
            self.save_expert({**row, "returns": ev["returns"]})
        return row

    def _log(self, row: dict[str, Any]) -> None:
        path = self.out / "metrics.csv"
        fields = ["step", "phase", "update", "wall_s", "return_mean", "return_std",
                  "episode_return", "critic_loss", "actor_loss", "q", "entropy", "temperature",
                  "grad_norm"]
        line = ",".join("" if row.get(k) is None else f"{row[k]}" for k in fields)
        new = not path.exists()
        with path.open("a") as f:
            if new:
                f.write(",".join(fields) + "\n")
            f.write(line + "\n")

    def plot(self) -> Path | None:
        """Evaluation return against environment steps as PNG."""
        if not self.history:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from wmil_core.plots import save_png, steps_axis

        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.plot([h["step"] for h in self.history], [h["return_mean"] for h in self.history],
                marker="o")
        steps_axis(ax)
        ax.set_ylabel("evaluation return")
        ax.set_title(f"SAC expert on {self.cfg.task}")
        return save_png(fig, self.out / "learning_curve.png")

    # -- the loop -------------------------------------------------------------------------------
    def train(self, resume: bool = False) -> dict[str, Any]:
        """Run (or continue) training; returns the best evaluation row."""
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        if resume:
            self.load_checkpoint()
        else:
            if self.ckpt_path.exists():
                raise ValueError(f"{self.out}: holds a training run already (--resume, or "
                                 "another --out)")
            save_config(cfg, self.out / "config.yaml")
        self.clock.start()
        bar = tqdm(total=cfg.steps, initial=self.step, desc=f"sac expert {cfg.task}",
                   unit="step", disable=not self.progress)
        best = max((h["return_mean"] for h in self.history), default=math.nan)
        stats: dict[str, float] = {}
        while self.step < cfg.steps:
            obs, _ = self.env.reset(seed=cfg.seed + self.episode)
            frames = {k: [v] for k, v in obs.items()}
            actions, rewards, done, terminated = [], [], False, False
            while not done and self.step < cfg.steps:
                if self.step < cfg.seed_steps:
                    a = self.rng.uniform(-1, 1, self.action_dim).astype(np.float32)
                else:
                    a = self.agent.act(obs, t0=False).astype(np.float32)
                obs, _, terminated, truncated, info = self.env.step(a)
                done = terminated or truncated
                actions.append(a)
                rewards.append(info["reward"])
                for k, v in obs.items():
                    frames[k].append(v)
                self.step += 1
                if self.step >= cfg.seed_steps and self.buffer.num_windows > 0:
                    for _ in range(cfg.updates_per_step):
                        stats = self.agent.update(self.buffer.sample(
                            self.sac_cfg.batch_size, self.rng, self.agent.device))
                bar.update(1)
            self.buffer.add_episode({k: np.stack(v) for k, v in frames.items()},
                                    np.stack(actions), terminated,
                                    np.asarray(rewards, dtype=np.float32))
            self.episode += 1
            self._log({"step": self.step, "phase": "train", "update": self.agent.updates,
                       "episode_return": float(np.sum(rewards)), **stats})
            prev = self.step - len(actions)
            if self.step // cfg.eval_every > prev // cfg.eval_every or self.step >= cfg.steps:
                row = self._record_eval(self.clock.elapsed())
                best = max(h["return_mean"] for h in self.history)
                bar.set_postfix(ret=f"{row['return_mean']:.0f}", best=f"{best:.0f}")
            if (self.step // cfg.checkpoint_every > prev // cfg.checkpoint_every
                    or self.step >= cfg.steps):
                self.save_checkpoint()
                self.plot()
        bar.close()
        self.plot()
        return max(self.history, key=lambda h: h["return_mean"])
