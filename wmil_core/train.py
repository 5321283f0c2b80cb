"""Training IQ-MPC: offline on demos, then online in simulation, with evaluation and resume.

Run directory layout: ``config.yaml``, ``metrics.csv``, TensorBoard events in ``tb/``,
``checkpoints/{latest.pt, buffer.npz, best.pt}`` (atomic; ``best.pt``: the agent at its highest
evaluation), ``plots/learning_curve.png``, ``eval.json``.
Checkpoints are taken at episode boundaries, so a resumed run continues exactly as an
uninterrupted one would (same seeds, same random streams).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from wmil_core.agents import make_agent
from wmil_core.buffer import Batch, EpisodeBuffer
from wmil_core.collect import play_episode
from wmil_core.config import atomic_write, from_dict, load_yaml, save_config, to_dict
from wmil_core.demos import load_demos
from wmil_core.hindsight import hindsight_of
from wmil_core.losses import pearson
from wmil_core.symmetry import symmetry_of
from wmil_core.tasks import WmilEnv, make_env
from wmil_core.timing import TrainingClock


@dataclasses.dataclass
class TrainConfig:
    """One training run (every field is a ``wmil train`` option)."""

    task: str = "dmc/reacher-easy"
    demos: str = ""  # demo file (HDF5); its observation mode is the run's
    method: str = "iqmpc"  # iqmpc | bc | iql-sac | gail-sac
    preset: str = "cpu"  # IQ-MPC size preset (paper | cpu | tdmpc2-1m)
    agent: dict[str, Any] = dataclasses.field(default_factory=dict)  # IQMPCConfig overrides
    demo_episodes: int | None = None  # use only the first N demo episodes
    demo_symmetry: bool = False  # turn expert batches by the task's symmetry (wmil_core.symmetry)
    # turn behaviour batches by it as well: the critic sees the agent's own transitions at
    # every goal angle too (beyond the paper; the agent's transitions turned are transitions
    # of the turned agent, not of the one acting)
    behaviour_symmetry: bool = False
    # turns uniform in [-x, x] radians instead of the task's declared range (None: declared)
    symmetry_max_angle: float | None = None
    # reflect each turned sub-trajectory with probability 1/2 by the task's declared mirror
    # (reacher: the arm bent the other way; beyond the paper)
    symmetry_mirror: bool = False
    # encode the task's unlimited hinges (env.angle_joints()) by sine and cosine in the
    # encoder: sets the agent's model.angle_joints unless the agent config names them
    circular_joints: bool = False
    # read the state in the frame that turns with the task's declared symmetry hinge (the
    # Jaco's first joint): sets the agent's model.frame_* (wmil_core.world_model.to_frame)
    # unless the agent config names them; the networks then cannot tell apart scenes that
    # differ by a turn about that axis, and demo turns change nothing they see
    canonical_frame: bool = False
    # share of each expert batch's sub-trajectories whose goal becomes a point their own
    # episode reached later (the task's declared goal; wmil_core.hindsight); 0: off
    hindsight_goals: float = 0.0
    offline_steps: int = 0  # updates on demos alone before going online
    steps: int = 100_000  # online environment steps (agent steps)
    seed_steps: int = 1000  # first online steps act at random; then as many updates at once
    updates_per_step: int = 1
    eval_every: int = 10_000  # environment steps between evaluations (at episode ends)
    eval_episodes: int = 10
    checkpoint_every: int = 10_000  # environment steps between checkpoints (at episode ends)
    buffer_size: int = 1_000_000  # behaviour buffer rows
    # share of each behaviour batch drawn from the latest recent_episodes episodes only (the
    # rest uniformly from the whole buffer); 0: uniform, as the paper's code
    recent_fraction: float = 0.0
    recent_episodes: int = 10
    episode_length: int | None = None  # cut episodes shorter than the task's (tests, debugging)
    seed: int = 0
    device: str = "auto"  # auto: CUDA when present, else CPU
    threads: int = 1  # torch CPU threads (0: torch's default; 1 ran faster here, see README)

    def __post_init__(self) -> None:
        for name in ("steps", "offline_steps", "seed_steps", "demo_episodes"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ValueError(f"{name}: must be >= 0, got {v}")
        if not 0.0 <= self.hindsight_goals <= 1.0:
            raise ValueError(f"hindsight_goals: must be in [0, 1], got {self.hindsight_goals}")
        if not 0.0 <= self.recent_fraction <= 1.0:
            raise ValueError(f"recent_fraction: must be in [0, 1], got {self.recent_fraction}")
        if self.symmetry_max_angle is not None and not self.symmetry_max_angle > 0:
            raise ValueError(f"symmetry_max_angle: must be > 0 radians, got "
                             f"{self.symmetry_max_angle}")
        if self.symmetry_mirror and not (self.demo_symmetry or self.behaviour_symmetry):
            raise ValueError("symmetry_mirror: needs demo_symmetry or behaviour_symmetry")
        for name in ("eval_every", "eval_episodes", "checkpoint_every", "buffer_size",
                     "updates_per_step", "recent_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1")


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def write_csv(path: Path, fields: list[str], rows: list[dict[str, Any]]) -> None:
    """Write a whole CSV file (header, then ``rows``) atomically."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    atomic_write(path, buf.getvalue())


def agent_overrides(cfg: TrainConfig, env: Any) -> dict[str, Any]:
    """``cfg.agent`` with ``model.angle_joints`` from the task when ``circular_joints`` asks
    for it and ``model.frame_*`` when ``canonical_frame`` does (unless the agent config sets
    them itself)."""
    agent = dict(cfg.agent)
    model = dict(agent.get("model") or {})
    if cfg.circular_joints and "angle_joints" not in model and "joints" in env.obs_spec():
        model = {**model, "angle_joints": env.angle_joints()}
    if cfg.canonical_frame and "frame_joint" not in model:
        sym = symmetry_of(env, option="canonical_frame")
        model = {**model, "frame_joint": sym.joint, "frame_vectors": list(sym.vectors),
                 "frame_points": list(sym.points), "frame_center": list(sym.center),
                 "frame_direction": sym.direction}
    if model:
        agent["model"] = model
    return agent


class Trainer:
    """Owns the run directory, environments, buffers and agent of one run."""

    def __init__(self, cfg: TrainConfig, run_dir: str | Path, progress: bool = True) -> None:
        self.cfg = cfg
        self.run = Path(run_dir)
        self.progress = progress
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if not cfg.demos:
            raise ValueError("demos: a demo file is required (wmil demos collect ...)")
        torch.manual_seed(cfg.seed)
        self.demos = load_demos(cfg.demos, task=cfg.task, max_episodes=cfg.demo_episodes)
        self.obs_mode = self.demos.obs_mode
        self.env = make_env(cfg.task, self.obs_mode, seed=cfg.seed,  # type: ignore[arg-type]
                            episode_length=cfg.episode_length)
        self.eval_env = make_env(cfg.task, self.obs_mode,  # type: ignore[arg-type]
                                 seed=cfg.seed + 10_000, episode_length=cfg.episode_length)
        spec = self.env.obs_spec()
        if spec != self.demos.obs_spec:
            raise ValueError(f"{cfg.demos}: observation spec {self.demos.obs_spec} does not "
                             f"match task {cfg.task} in mode {self.obs_mode}: {spec}")
        a_dim = int(self.env.action_space.shape[0])
        if self.demos.action_dim != a_dim:
            raise ValueError(f"{cfg.demos}: action size {self.demos.action_dim}, task has {a_dim}")
        shapes = {k: tuple(v["shape"]) for k, v in spec.items()}
        self.device = resolve_device(cfg.device)
        self.agent, self.agent_cfg, h = make_agent(cfg.method, cfg.preset,
                                                   agent_overrides(cfg, self.env), shapes,
                                                   a_dim, self.env.episode_length, self.device,
                                                   cfg.seed)
        demo_rows = sum(len(e) + 1 for e in self.demos.episodes)
        self.expert = EpisodeBuffer(spec, a_dim, demo_rows, h)
        self.expert.add_dataset(self.demos)
        sym = (symmetry_of(self.env, cfg.symmetry_max_angle, mirror=cfg.symmetry_mirror)
               if cfg.demo_symmetry or cfg.behaviour_symmetry else None)
        self.symmetry = sym if cfg.demo_symmetry else None  # turns expert batches
        self.behaviour_symmetry = sym if cfg.behaviour_symmetry else None  # behaviour batches
        self.hindsight = (hindsight_of(self.env, cfg.hindsight_goals)
                          if cfg.hindsight_goals > 0 else None)  # relabels expert batches
        self.behaviour = EpisodeBuffer(spec, a_dim, cfg.buffer_size, h)
        rets = [e.ret for e in self.demos.episodes if e.rewards is not None]
        self.expert_return = float(np.mean(rets)) if rets else float("nan")
        self.rng = np.random.default_rng(cfg.seed)
        self.step = 0  # online environment steps done
        self.episode = 0
        self.offline_done = 0
        self.history: list[dict[str, Any]] = []
        self.clock = TrainingClock()  # wall time over resumed segments
        self._tb: Any = None

    def _expert_batch(self) -> Batch:
        """Sub-trajectories of the demos, some given hindsight goals and each turned by a
        random symmetry when asked."""
        batch = self.expert.sample(self.agent_cfg.batch_size, self.rng, self.device,
                                   relabel=self.hindsight)
        return self.symmetry.augment(batch, self.rng) if self.symmetry else batch

    def _behaviour_batch(self) -> Batch:
        """Sub-trajectories of the behaviour buffer (``recent_fraction`` of them from the
        latest episodes), each turned by a random symmetry with ``behaviour_symmetry``."""
        cfg = self.cfg
        batch = self.behaviour.sample(self.agent_cfg.batch_size, self.rng, self.device,
                                      cfg.recent_fraction, cfg.recent_episodes)
        turn = self.behaviour_symmetry
        return turn.augment(batch, self.rng) if turn else batch

    # -- run directory --------------------------------------------------------------------------
    @property
    def ckpt_path(self) -> Path:  # noqa: D102
        return self.run / "checkpoints" / "latest.pt"

    def _writer(self) -> Any:
        if self._tb is None:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.run / "tb"))
        return self._tb

    def _log(self, row: dict[str, Any]) -> None:
        path = self.run / "metrics.csv"
        rows: list[dict[str, Any]] = []
        fields: list[str] = []
        if path.exists():
            with path.open(newline="") as f:
                reader = csv.DictReader(f)
                fields = list(reader.fieldnames or [])
                if not set(row) <= set(fields):  # a new column: rewrite with the union
                    rows = list(reader)
        if not fields or rows or not set(row) <= set(fields):
            write_csv(path, fields + [k for k in row if k not in fields], [*rows, row])
        else:
            with path.open("a", newline="") as f:
                csv.DictWriter(f, fieldnames=fields).writerow(row)
        tb = self._writer()
        for k, v in row.items():
            if isinstance(v, (int, float)) and k != "step" and math.isfinite(v):
                tb.add_scalar(k, v, row["step"])
        tb.flush()

    def _state(self) -> dict[str, Any]:
        return {
            "agent": self.agent.state_dict(),
            "step": self.step,
            "episode": self.episode,
            "offline_done": self.offline_done,
            "rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "history": self.history,
            "wall_s": self.clock.elapsed(),
            "config": to_dict(self.cfg),
        }

    def _write_state(self, path: Path) -> None:
        buf = io.BytesIO()
        torch.save(self._state(), buf)
        atomic_write(path, buf.getvalue())

    def save_checkpoint(self) -> None:
        """Agent, counters, random streams and the behaviour buffer, atomically."""
        self.behaviour.save(self.run / "checkpoints" / "buffer.npz")
        self._write_state(self.ckpt_path)

    def save_best(self) -> None:
        """``checkpoints/best.pt``: the agent at its best evaluation so far (no buffer)."""
        self._write_state(self.run / "checkpoints" / "best.pt")

    def load_checkpoint(self) -> None:
        """Continue from ``checkpoints/latest.pt``; a corrupt file is refused, nothing changed."""
        path = self.ckpt_path
        if not path.is_file():
            raise ValueError(f"{path}: no checkpoint to resume from")
        try:
            state = torch.load(path, map_location=self.device, weights_only=False)
            self.agent.load_state_dict(state["agent"])
        except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is one user error
            raise ValueError(f"{path}: corrupt or incompatible checkpoint ({exc})") from None
        self.behaviour.load(self.run / "checkpoints" / "buffer.npz")
        self.step, self.episode = int(state["step"]), int(state["episode"])
        self.offline_done = int(state["offline_done"])
        self.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        self.history = list(state["history"])
        self.clock.restore(state, self.history)
        self._trim_metrics(self.agent.updates)

    def _trim_metrics(self, updates: int) -> None:
        """Drop the metrics rows a killed segment logged after its last checkpoint (rows past
        ``updates``): the resumed run logs those steps again."""
        path = self.run / "metrics.csv"
        if not path.exists():
            return
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            fields = list(reader.fieldnames or [])
            rows = list(reader)
        keep = [r for r in rows if not r.get("update") or int(float(r["update"])) <= updates]
        if len(keep) < len(rows):
            write_csv(path, fields, keep)

    # -- evaluation -----------------------------------------------------------------------------
    @property
    def eval_seed(self) -> int:
        """First episode seed of the run's evaluations (the run's seed + 10000)."""
        return self.cfg.seed + 10_000

    def evaluate(self, episodes: int | None = None, seed: int | None = None) -> dict[str, Any]:
        """Return, success, normalized score and decoded-reward correlation on eval episodes.

        Episodes use seeds ``seed``, ``seed + 1``, ... (default :attr:`eval_seed`).
        """
        seed = self.eval_seed if seed is None else seed
        return evaluate_agent(self.agent, self.eval_env, episodes or self.cfg.eval_episodes,
                              seed=seed, expert_return=self.expert_return)

    # -- the loop -------------------------------------------------------------------------------
    def train(self, resume: bool = False) -> dict[str, Any]:
        """Run (or continue) training; returns the last evaluation."""
        cfg = self.cfg
        self.run.mkdir(parents=True, exist_ok=True)
        if resume:
            self.load_checkpoint()
            save_config(self.cfg, self.run / "config.yaml")  # a raised step budget persists
        else:
            if self.ckpt_path.exists():
                raise ValueError(f"{self.run}: holds a run already (--resume, or another --out)")
            save_config(self.cfg, self.run / "config.yaml")
            save_config(self.agent_cfg, self.run / "agent.yaml")
        self.clock.start()
        bar = tqdm(total=cfg.offline_steps, initial=self.offline_done, desc="offline",
                   unit="upd", disable=not self.progress or cfg.offline_steps == 0)
        while self.offline_done < cfg.offline_steps:
            stats = self.agent.update(self._expert_batch(), None)
            self.offline_done += 1
            bar.update(1)
            if self.offline_done % 100 == 0 or self.offline_done == cfg.offline_steps:
                self._log({"step": 0, "phase": "offline", "update": self.offline_done, **stats})
        bar.close()
        if self.step == 0 and cfg.offline_steps and not self.history:
            self._record_eval(self.clock.elapsed())
            self.save_checkpoint()

        bar = tqdm(total=cfg.steps, initial=self.step, desc=f"online {cfg.task}", unit="step",
                   disable=not self.progress)
        n_updates, t_upd = 0, 0.0
        last = self.history[-1] if self.history else {}
        while self.step < cfg.steps:
            obs, _ = self.env.reset(seed=cfg.seed + self.episode)
            frames = {k: [v] for k, v in obs.items()}
            actions, t, done = [], 0, False
            terminated = False
            while not done:
                if self.step < cfg.seed_steps:
                    a = self.rng.uniform(-1, 1, self.env.action_space.shape).astype(np.float32)
                else:
                    a = self.agent.act(obs, t0=t == 0).astype(np.float32)
                obs, _, terminated, truncated, _ = self.env.step(a)
                done = terminated or truncated
                actions.append(a)
                for k, v in obs.items():
                    frames[k].append(v)
                self.step += 1
                t += 1
                if self.step >= cfg.seed_steps and self.behaviour.num_windows > 0:
                    tu = time.perf_counter()
                    # the first online update is a burst of seed_steps updates on the seed
                    # data, as TD-MPC2 and IQ-MPC do; then updates_per_step per step
                    first = self.agent.updates == self.offline_done
                    burst = max(cfg.seed_steps, 1) if first else cfg.updates_per_step
                    for _ in tqdm(range(burst), desc="seed updates", unit="upd", leave=False,
                                  disable=not (self.progress and first)):
                        stats = self.agent.update(self._expert_batch(),
                                                  self._behaviour_batch())
                    t_upd += time.perf_counter() - tu
                    n_updates += burst
                    if self.agent.updates % 100 == 0:
                        self._log({"step": self.step, "phase": "online",
                                   "update": self.agent.updates, **stats})
                bar.update(1)
                if n_updates and t_upd > 0:
                    bar.set_postfix(upd_s=f"{n_updates / t_upd:.1f}",
                                    score=f"{last.get('normalized_score', float('nan')):.2f}")
                if self.step >= cfg.steps:
                    break
            self.behaviour.add_episode({k: np.stack(v) for k, v in frames.items()},
                                       np.stack(actions), terminated)
            self.episode += 1
            prev = self.step - t
            if self.step // cfg.eval_every > prev // cfg.eval_every or self.step >= cfg.steps:
                last = self._record_eval(self.clock.elapsed())
            if (self.step // cfg.checkpoint_every > prev // cfg.checkpoint_every
                    or self.step >= cfg.steps):
                self.save_checkpoint()
        bar.close()
        self.plot()
        result = self.history[-1] if self.history else self._record_eval(self.clock.elapsed())
        atomic_write(self.run / "eval.json", json.dumps(result, indent=2))
        return result

    def _record_eval(self, wall: float) -> dict[str, Any]:
        ev = self.evaluate()
        row = {"step": self.step, "phase": "eval", "update": self.agent.updates,
               "wall_s": wall, **{k: v for k, v in ev.items() if not isinstance(v, list)}}
        if getattr(self.agent, "ema_model", None) is not None:
            # the averaged networks scored above; the online ones on the same episodes' seeds
            with self.agent.online_evaluation():
                online = self.evaluate()
            row.update({f"online_{k}": online[k] for k in
                        ("return_mean", "success_rate", "normalized_score")})
        best = max((h["normalized_score"] for h in self.history
                    if math.isfinite(h.get("normalized_score", math.nan))), default=-math.inf)
        self.history.append(row)
        self._log(row)
        if math.isfinite(row["normalized_score"]) and row["normalized_score"] > best:
            self.save_best()
        return row

    def plot(self) -> Path | None:
        """Learning curve (normalized score against environment steps) as PNG."""
        if not self.history:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from wmil_core.plots import save_png, steps_axis

        x = [h["step"] for h in self.history]
        y = [h["normalized_score"] for h in self.history]
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.plot(x, y, marker="o")
        ax.axhline(1.0, color="gray", ls="--", lw=1, label="expert")
        steps_axis(ax)
        ax.set_ylabel("normalized score")
        ax.set_title(f"{self.cfg.method} on {self.cfg.task}")
        ax.legend()
        return save_png(fig, self.run / "plots" / "learning_curve.png", dpi=120)


def evaluate_agent(agent: Any, env: WmilEnv, episodes: int, seed: int,
                   expert_return: float) -> dict[str, Any]:
    """Evaluate the planner (no exploration noise) on seeded episodes."""
    returns, successes, true_r, dec_r = [], [], [], []
    for i in range(episodes):
        obs, actions, rewards, info = play_episode(
            env, lambda o, t: agent.act(o, t0=t == 0, eval_mode=True), seed + i)
        returns.append(float(np.sum(rewards)))
        if "success" in info:
            successes.append(bool(info["success"]))
        dec = agent.decode_rewards(obs, actions)
        true_r.append(np.asarray(rewards, dtype=np.float32))
        dec_r.append(dec)
    dec = np.concatenate(dec_r)
    corr = (float(pearson(torch.from_numpy(np.concatenate(true_r)), torch.from_numpy(dec)))
            if np.all(np.isfinite(dec)) else None)  # None: the method decodes no reward
    mean = float(np.mean(returns))
    return {
        "episodes": episodes,
        "return_mean": mean,
        "return_std": float(np.std(returns)),
        "success_rate": float(np.mean(successes)) if successes else None,
        "normalized_score": mean / expert_return if expert_return else float("nan"),
        "reward_correlation": corr,
        "returns": returns,
    }


def load_run_config(run_dir: str | Path) -> TrainConfig:
    """The TrainConfig stored in a run directory."""
    data = load_yaml(Path(run_dir) / "config.yaml")
    return from_dict(TrainConfig, data)
