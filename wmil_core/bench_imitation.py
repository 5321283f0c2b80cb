"""``wmil bench imitation``: every (task, method, demos, seed) cell on the same demos and the
same environment-step budget, in parallel processes, resumable.

Layout of ``--out``::

    command.txt            the exact command
    demos/<task>.h5        expert demos (the largest count; smaller counts use its first N)
    runs/<cell>/           each cell's training run (checkpoints: a killed cell resumes)
    cells/<cell>.json      each finished cell's result, written as soon as it ends
                           (status ok, or failed with its error)
    results.json           every cell and the summary per (task, method, demos)
    results.md             the table: normalized score mean +- std at the budget, env steps
                           to reach 0.9, wall time, updates/s
    curves-<task>.png      learning curves, mean +- std over seeds
    progress.md, .png      ``wmil bench progress``: every cell's evaluations so far

Finished cells are never rerun; failed ones are retried on the next run.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import json
import math
import multiprocessing
import os
import shlex
import shutil
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wmil_core.config import atomic_write, json_object

THRESHOLD = 0.9  # normalized score of "reached"


@dataclasses.dataclass(frozen=True)
class Cell:
    """One training run of the benchmark."""

    task: str
    method: str
    demos: int
    seed: int

    @property
    def key(self) -> str:
        """File-system name of the cell."""
        return f"{self.task.replace('/', '_')}__{self.method}__d{self.demos}__s{self.seed}"


@dataclasses.dataclass
class BenchSpec:
    """What to run (the ``wmil bench imitation`` options)."""

    tasks: list[str]
    methods: list[str]
    seeds: int = 3
    demos: list[int] = dataclasses.field(default_factory=lambda: [10])
    steps: int = 100_000
    offline_steps: int = 0
    seed_steps: int = 1000
    eval_every: int = 10_000
    eval_episodes: int = 10
    preset: str = "cpu"
    agent: dict[str, Any] = dataclasses.field(default_factory=dict)  # IQ-MPC overrides
    jobs: int = 0  # parallel processes (0: the core count)
    episode_length: int | None = None  # agent steps per episode (default: the task's)
    demo_symmetry: bool = False  # turn expert batches by each task's symmetry
    circular_joints: bool = False  # encoders read unlimited hinges as sine and cosine
    only_seeds: tuple[int, ...] | None = None  # run only these of range(seeds) (split runs)

    def cells(self) -> list[Cell]:
        """Every cell, in a stable order."""
        return [Cell(t, m, d, s) for t in self.tasks for d in self.demos for m in self.methods
                for s in range(self.seeds)]


def _run_cell(cell: Cell, spec: BenchSpec, demo_file: str, out: str) -> dict[str, Any]:
    """Train one cell (resuming its run when a checkpoint exists); returns its result."""
    import torch

    from wmil_core.train import TrainConfig, Trainer

    run = Path(out) / "runs" / cell.key
    cfg = TrainConfig(
        task=cell.task, demos=demo_file, method=cell.method, preset=spec.preset,
        agent=dict(spec.agent) if cell.method == "iqmpc" else {},
        demo_episodes=cell.demos, offline_steps=spec.offline_steps, steps=spec.steps,
        seed_steps=min(spec.seed_steps, spec.steps), eval_every=spec.eval_every,
        eval_episodes=spec.eval_episodes, checkpoint_every=spec.eval_every,
        buffer_size=spec.steps + 10_000, seed=cell.seed, threads=1,
        episode_length=spec.episode_length, demo_symmetry=spec.demo_symmetry,
        circular_joints=spec.circular_joints)
    torch.set_num_threads(1)
    resume = (run / "checkpoints" / "latest.pt").is_file()
    if run.exists() and not resume:  # killed before its first checkpoint: start it afresh
        shutil.rmtree(run)
    trainer = Trainer(cfg, run, progress=False)
    trainer.train(resume=resume)
    wall = trainer.clock.elapsed()  # over every resumed segment
    hist = trainer.history
    return {
        "cell": dataclasses.asdict(cell), "status": "ok", "resumed": resume,
        "final": hist[-1] if hist else None,
        "curve": [(h["step"], h["normalized_score"]) for h in hist],
        "steps_to_threshold": next((h["step"] for h in hist
                                    if h["normalized_score"] >= THRESHOLD), None),
        "wall_s": wall, "updates": trainer.agent.updates,
        "updates_per_s": trainer.agent.updates / wall if wall > 0 else None,
    }


def _cell_worker(cell: Cell, spec: BenchSpec, demo_file: str, out: str) -> dict[str, Any]:
    """Run a cell and record its result (or its error) in ``cells/<key>.json``."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        result = _run_cell(cell, spec, demo_file, out)
    except Exception as exc:  # noqa: BLE001 - a failing cell is recorded, the others go on
        result = {"cell": dataclasses.asdict(cell), "status": "failed",
                  "error": f"{type(exc).__name__}: {exc}",
                  "traceback": traceback.format_exc(limit=8)}
    atomic_write(Path(out) / "cells" / f"{cell.key}.json", json.dumps(result, indent=2))
    return result


def exit_with_parent(parent: int, every: float = 2.0) -> None:
    """Worker initializer: end this process when ``parent`` is gone.

    Killing the benchmark's main process (``kill PID``, a closed terminal) would otherwise
    leave its workers training on, unseen. A daemon thread polls the parent pid; checkpoints
    are written atomically, so leaving abruptly loses only the steps since the last one, as
    any kill does.
    """
    def watch() -> None:
        while True:
            time.sleep(every)
            if os.getppid() != parent:  # reparented: the benchmark process has died
                os._exit(1)

    threading.Thread(target=watch, name="wmil_exit_with_parent", daemon=True).start()


def load_cell(out: Path, cell: Cell) -> dict[str, Any] | None:
    """A recorded cell result, or None (none yet, or unreadable)."""
    path = out / "cells" / f"{cell.key}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def finished(result: dict[str, Any] | None, steps: int) -> bool:
    """Whether a recorded cell result ran its whole budget (a raised budget extends it)."""
    if not result or result.get("status") != "ok":
        return False
    final = result.get("final") or {}
    return final.get("step", steps) >= steps


def run_benchmark(spec: BenchSpec, out: str | Path, command: str | None = None,
                  progress: bool = True) -> dict[str, Any]:
    """Run every unfinished cell, then write results.json, results.md and the curves."""
    from wmil_core.collect import collect_demos

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    command = command or "wmil bench imitation " + " ".join(shlex.quote(a) for a in sys.argv[3:])
    atomic_write(out / "command.txt", command + "\n")
    demo_files = {}
    for task in spec.tasks:
        path = out / "demos" / f"{task.replace('/', '_')}.h5"
        if not path.is_file():
            collect_demos(task, max(spec.demos), "state", path, seed=0, progress=progress)
        demo_files[task] = str(path)
    todo = [c for c in spec.cells() if not finished(load_cell(out, c), spec.steps)
            and (spec.only_seeds is None or c.seed in spec.only_seeds)]
    jobs = spec.jobs or os.cpu_count() or 1
    if progress:
        print(f"{len(spec.cells()) - len(todo)} of {len(spec.cells())} cells done already; "
              f"running {len(todo)} on {min(jobs, max(len(todo), 1))} processes", flush=True)
    if todo:
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(
                jobs, mp_context=ctx, initializer=exit_with_parent,
                initargs=(os.getpid(),)) as pool:
            futures = {pool.submit(_cell_worker, c, spec, demo_files[c.task], str(out)): c
                       for c in todo}
            for fut in concurrent.futures.as_completed(futures):
                cell = futures[fut]
                try:
                    res = fut.result()
                except Exception as exc:  # noqa: BLE001 - the worker process itself died
                    res = {"cell": dataclasses.asdict(cell), "status": "failed",
                           "error": f"worker died: {type(exc).__name__}: {exc}"}
                    atomic_write(out / "cells" / f"{cell.key}.json", json.dumps(res, indent=2))
                if progress:
                    what = (f"score {res['final']['normalized_score']:.3f}"
                            if res["status"] == "ok" and res.get("final") else res.get("error"))
                    print(f"  {cell.key}: {res['status']} ({what})", flush=True)
    return summarize(spec, out, command)


def _mean_std(xs: Sequence[float]) -> tuple[float | None, float | None]:
    if not xs:
        return None, None
    m = sum(xs) / len(xs)
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / len(xs))


def summarize(spec: BenchSpec, out: Path, command: str) -> dict[str, Any]:
    """Aggregate the recorded cells into results.json, results.md and learning curves."""
    cells = {c.key: load_cell(out, c) for c in spec.cells()}
    rows = []
    for task in spec.tasks:
        for d in spec.demos:
            for method in spec.methods:
                res = [cells[Cell(task, method, d, s).key] for s in range(spec.seeds)]
                ok = [r for r in res if r and r["status"] == "ok" and r.get("final")]
                scores = [r["final"]["normalized_score"] for r in ok]
                reach = [r["steps_to_threshold"] for r in ok]
                mean, std = _mean_std(scores)
                rows.append({
                    "task": task, "method": method, "demos": d, "seeds_ok": len(ok),
                    "seeds_failed": sum(1 for r in res if r and r["status"] == "failed"),
                    "score_mean": mean, "score_std": std,
                    "steps_to_0.9": (None if not ok or any(x is None for x in reach)
                                     else sum(reach) / len(reach)),
                    "reached_0.9": sum(x is not None for x in reach),
                    "wall_s": _mean_std([r["wall_s"] for r in ok])[0],
                    "updates_per_s": _mean_std([r["updates_per_s"] for r in ok
                                                if r["updates_per_s"]])[0],
                })
    results = {"command": command, "spec": dataclasses.asdict(spec), "summary": rows,
               "cells": cells}
    atomic_write(out / "results.json", json.dumps(results, indent=2))
    atomic_write(out / "results.md", markdown(results))
    for task in spec.tasks:
        plot_curves(spec, cells, task, out / f"curves-{task.replace('/', '_')}.png")
    return results


def markdown(results: dict[str, Any]) -> str:
    """The summary table as Markdown, with the command on top."""
    spec = results["spec"]
    lines = [f"`{results['command']}`", "",
             f"Budget: {spec['steps']} environment steps ({spec['offline_steps']} offline "
             f"updates first), {spec['seeds']} seeds, evaluation every {spec['eval_every']} "
             f"steps on {spec['eval_episodes']} episodes; normalized score = return / the "
             f"demos' expert return, at the budget.", "",
             "| task | demos | method | normalized score | steps to 0.9 | wall time | updates/s |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results["summary"]:
        score = ("failed" if r["score_mean"] is None
                 else f"{r['score_mean']:.3f} +- {r['score_std']:.3f}")
        if r["seeds_failed"]:
            score += f" ({r['seeds_failed']} seed(s) failed)"
        reach = ("-" if r["score_mean"] is None else
                 f"{r['steps_to_0.9']:.0f}" if r["steps_to_0.9"] is not None else
                 f"not reached ({r['reached_0.9']}/{r['seeds_ok']} seeds)")
        wall = "-" if r["wall_s"] is None else f"{r['wall_s'] / 60:.1f} min"
        ups = "-" if r["updates_per_s"] is None else f"{r['updates_per_s']:.1f}"
        lines.append(f"| {r['task']} | {r['demos']} | {r['method']} | {score} | {reach} | "
                     f"{wall} | {ups} |")
    return "\n".join(lines) + "\n"


def plot_curves(spec: BenchSpec, cells: dict[str, Any], task: str, path: Path) -> None:
    """Normalized score against environment steps, mean +- std over seeds, per method."""

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from wmil_core.plots import save_png, steps_axis

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for d in spec.demos:
        for method in spec.methods:
            curves = [cells[Cell(task, method, d, s).key] for s in range(spec.seeds)]
            curves = [dict(c["curve"]) for c in curves if c and c["status"] == "ok"]
            if not curves:
                continue
            steps = sorted(set.intersection(*(set(c) for c in curves)))
            y = np.array([[c[s] for s in steps] for c in curves])
            label = method if len(spec.demos) == 1 else f"{method}, {d} demos"
            ax.plot(steps, y.mean(0), label=label)
            ax.fill_between(steps, y.mean(0) - y.std(0), y.mean(0) + y.std(0), alpha=0.2)
    steps_axis(ax)
    ax.set_ylabel("normalized score")
    ax.set_title(task)
    ax.legend(fontsize=7)
    save_png(fig, path)


def progress(out: str | Path) -> list[dict[str, Any]]:
    """Every cell under ``out/runs`` as it stands, finished or not (read from its metrics CSV).

    Each row: cell key, status (ok, failed, or unfinished: running now or stopped before its
    budget), the last logged step, the evaluations so far as (step, normalized score,
    decoded-reward correlation) and the training wall time of the last evaluation.
    """
    out = Path(out)
    rows = []
    for run in sorted((out / "runs").glob("*")):
        metrics = run / "metrics.csv"
        if not metrics.is_file():
            continue
        with metrics.open(newline="") as f:
            logged = list(csv.DictReader(f))

        def num(row: dict[str, str], key: str) -> float | None:
            return float(row[key]) if row.get(key) not in (None, "") else None

        evals = [r for r in logged if r.get("phase") == "eval"]
        cell = None
        record = out / "cells" / f"{run.name}.json"
        try:
            # a record older than the run's metrics is from an earlier attempt (a failed cell
            # that a rerun is retrying): the cell is unfinished again
            if record.stat().st_mtime >= metrics.stat().st_mtime:
                cell = json.loads(record.read_text())
        except (OSError, ValueError):
            pass
        rows.append({
            "cell": run.name,
            "status": cell["status"] if cell else "unfinished",
            "last_step": max((int(float(r["step"])) for r in logged if r.get("step")),
                             default=0),
            "evals": [(int(float(r["step"])), num(r, "normalized_score"),
                       num(r, "reward_correlation")) for r in evals],
            "wall_s": num(evals[-1], "wall_s") if evals else None,
        })
    return rows


def progress_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """:func:`progress` as a Markdown table."""
    def fmt(x: float | None) -> str:
        return "-" if x is None or not math.isfinite(x) else f"{x:.2f}"

    lines = ["| cell | status | last step | normalized score at steps (decoded-reward corr) "
             "| wall time |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        evals = ", ".join(f"{s // 1000}k: {fmt(v)} ({fmt(c)})" for s, v, c in r["evals"])
        wall = "-" if r["wall_s"] is None else f"{r['wall_s'] / 60:.0f} min"
        lines.append(f"| {r['cell']} | {r['status']} | {r['last_step']} | {evals or '-'} | "
                     f"{wall} |")
    return "\n".join(lines) + "\n"


def cmd_bench_progress(args: Any) -> int:
    """Print (and write ``progress.md``) the state of every cell of a benchmark directory."""
    out = Path(args.out)
    if not (out / "runs").is_dir():
        raise ValueError(f"{out}: no benchmark runs here (expected {out / 'runs'})")
    rows = progress(out)
    text = progress_markdown(rows)
    atomic_write(out / "progress.md", text)
    plot_progress(rows, out / "progress.png")
    print(text, end="")
    return 0


def plot_progress(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Normalized score against environment steps of every cell so far, one line each."""

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from wmil_core.plots import save_png, steps_axis

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for r in rows:
        pts = [(s, v) for s, v, _ in r["evals"] if v is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", ms=3, label=f"{r['cell']} ({r['status']})")
    steps_axis(ax)
    ax.set_ylabel("normalized score")
    ax.legend(fontsize=6)
    save_png(fig, path)


# -- command line ---------------------------------------------------------------------------------
def _csv(kind: type) -> Any:
    def parse(text: str) -> list[Any]:
        items = [kind(x) for x in text.split(",") if x.strip()]
        if not items:
            raise ValueError(f"expected a comma-separated list, got {text!r}")
        return items

    return parse


def add_command(bench_subparsers: Any) -> None:
    """Register ``bench imitation`` on the ``wmil bench`` subparsers."""
    p = bench_subparsers.add_parser(
        "imitation", help="every (task, method, demos, seed) on the same budget, resumable",
        description="Train every method on every task from the same demos and environment-"
                    "step budget, in parallel processes; a killed benchmark resumes where it "
                    "stopped. Writes results.json, results.md and learning curves.")
    p.add_argument("--tasks", type=_csv(str), required=True, help="e.g. dmc/reacher-easy,...")
    p.add_argument("--methods", type=_csv(str), default=["iqmpc", "bc", "iql-sac", "gail-sac"])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--only-seeds", dest="only_seeds", type=_csv(int), default=None,
                   help="run only these of the --seeds (e.g. 1,2: split a benchmark across "
                        "sessions or machines); the others are summarised as recorded")
    p.add_argument("--demos", type=_csv(int), default=[10], help="e.g. 1,5,10,25 (ablation)")
    p.add_argument("--steps", type=int, default=100_000, help="environment steps per run")
    p.add_argument("--offline-steps", dest="offline_steps", type=int, default=0)
    p.add_argument("--seed-steps", dest="seed_steps", type=int, default=1000)
    p.add_argument("--eval-every", dest="eval_every", type=int, default=10_000)
    p.add_argument("--eval-episodes", dest="eval_episodes", type=int, default=10)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--agent", type=json_object, default={},
                   help='IQ-MPC overrides as JSON, e.g. \'{"planner": {"iterations": 2}}\'')
    p.add_argument("--jobs", type=int, default=0, help="parallel processes (0: core count)")
    p.add_argument("--demo-symmetry", dest="demo_symmetry", action="store_true",
                   help="turn demo batches by each task's declared symmetry (every method)")
    p.add_argument("--circular-joints", dest="circular_joints", action="store_true",
                   help="encode unlimited hinge joints by sine and cosine (every method)")
    p.add_argument("--out", required=True, help="result directory, e.g. bench/<name>/")
    p.set_defaults(func=cmd_bench_imitation)

    g = bench_subparsers.add_parser(
        "progress", help="evaluations so far of every cell of a bench imitation directory",
        description="Read each cell's metrics under OUT/runs (finished, failed, running or "
                    "stopped) and print, and write to OUT/progress.md, the evaluations so far.")
    g.add_argument("out", metavar="OUT", help="the --out of a wmil bench imitation run")
    g.set_defaults(func=cmd_bench_progress)


def cmd_bench_imitation(args: Any) -> int:
    """Run :func:`run_benchmark` from parsed arguments and print the table."""
    from wmil_core.agents import METHODS
    from wmil_core.tasks import registry

    for m in args.methods:
        if m not in METHODS:
            raise ValueError(f"--methods: unknown {m!r} (known: {', '.join(METHODS)})")
    known = set(registry())
    for t in args.tasks:
        if t not in known:
            raise ValueError(f"--tasks: unknown task {t!r} (see wmil tasks)")
    if args.seeds < 1 or args.steps < 1 or min(args.demos) < 1:
        raise ValueError("--seeds, --steps and --demos: must be >= 1")
    if args.only_seeds is not None and not all(0 <= s < args.seeds for s in args.only_seeds):
        raise ValueError(f"--only-seeds: each must be in 0..{args.seeds - 1} (--seeds "
                         f"{args.seeds}), got {','.join(map(str, args.only_seeds))}")
    spec = BenchSpec(tasks=args.tasks, methods=args.methods, seeds=args.seeds, demos=args.demos,
                     steps=args.steps, offline_steps=args.offline_steps,
                     seed_steps=args.seed_steps, eval_every=args.eval_every,
                     eval_episodes=args.eval_episodes, preset=args.preset, agent=args.agent,
                     jobs=args.jobs, demo_symmetry=args.demo_symmetry,
                     circular_joints=args.circular_joints,
                     only_seeds=None if args.only_seeds is None else tuple(args.only_seeds))
    results = run_benchmark(spec, args.out)
    print(markdown(results))
    print(f"wrote {Path(args.out) / 'results.json'}, results.md and curves-*.png")
    return 0
