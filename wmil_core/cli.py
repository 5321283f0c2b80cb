"""The ``wmil`` command line: one entry point, one subcommand per job.

Every subcommand is a thin layer over a library function. User mistakes end with one line,
``wmil: error: <what is wrong>``, and exit code 2; Ctrl-C leaves no partial file behind.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from wmil_core.config import atomic_write, from_dict, json_object, load_yaml


@dataclasses.dataclass
class CollectConfig:
    """Settings of ``wmil demos collect`` (also loadable with ``--config FILE.yaml``)."""

    task: str = "dmc/reacher-easy"
    episodes: int = 10  # expert episodes to record
    obs: str = "state"  # observation mode: state | pixels | pixels+joints
    out: str = "data/demos.h5"
    seed: int = 0  # episode i uses seed + i
    expert: str | None = None  # default: the task's expert
    image_size: int | None = None  # pixels (square); default: the task's (64)
    frames: int | None = None  # frames stacked in `image`; default: the task's (3)

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"episodes: must be >= 1, got {self.episodes}")
        if self.obs not in ("state", "pixels", "pixels+joints"):
            raise ValueError(f"obs: must be state, pixels or pixels+joints, got {self.obs!r}")


def _config_from_args(cls: type, args: argparse.Namespace) -> Any:
    """Build config ``cls`` from ``--config`` YAML overlaid with explicitly given flags."""
    data: dict[str, Any] = {}
    if getattr(args, "config", None):
        loaded = load_yaml(args.config) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{args.config}: expected a mapping")
        data.update(loaded)
    for f in dataclasses.fields(cls):
        value = getattr(args, f.name, None)
        if value is not None:
            data[f.name] = value
    return from_dict(cls, data)


# -- wmil tasks ---------------------------------------------------------------------------------
def cmd_tasks(args: argparse.Namespace) -> int:
    """List registered tasks with observation keys and shapes, action size, length, expert."""
    from tqdm import tqdm

    from wmil_core.tasks import make_env, registry

    specs = [s for name, s in sorted(registry().items()) if args.filter in name]
    rows = []
    for spec in tqdm(specs, desc="building tasks", unit="task", disable=args.json or len(specs) < 4,
                     file=sys.stderr):
        env = make_env(spec.name, "state")
        shapes = {k: list(v["shape"]) for k, v in env.obs_spec().items()}
        rows.append({
            "task": spec.name,
            "obs": shapes,
            "image": [env.image_size, env.image_size, 3 * env.frames],
            "modes": list(spec.modes),
            "action_dim": int(env.action_space.shape[0]),
            "episode_length": env.episode_length,
            "action_repeat": spec.action_repeat,
            "expert": spec.expert or "-",
        })
        env.close()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'task':28s} {'state observation':34s} {'image':12s} {'A':>3s} {'T':>5s} "
          f"{'rep':>3s}  expert")
    for r in rows:
        obs = " ".join(f"{k}{tuple(v)}" for k, v in r["obs"].items())
        img = "x".join(map(str, r["image"]))
        print(f"{r['task']:28s} {obs:34s} {img:12s} {r['action_dim']:3d} {r['episode_length']:5d} "
              f"{r['action_repeat']:3d}  {r['expert']}")
    print(f"{len(rows)} tasks; modes: state, pixels, pixels+joints (image is HxWx3*frames)")
    return 0


# -- wmil expert ---------------------------------------------------------------------------------
def cmd_expert_eval(args: argparse.Namespace) -> int:
    """Evaluate a task's expert over seeded episodes and print mean/std return and success."""
    from wmil_core.collect import evaluate_expert

    stats = evaluate_expert(args.task, args.episodes, args.seed, args.expert, progress=True)
    _print_stats(stats.as_dict())
    if args.json:
        atomic_write(args.json, json.dumps(stats.as_dict(), indent=2))
    return 0


def cmd_expert_train(args: argparse.Namespace) -> int:
    """Train a SAC expert on the task's reward (in the background; --resume after a kill)."""
    from wmil_core.config import load_config
    from wmil_core.expert_train import ExpertTrainConfig, ExpertTrainer, expert_dir

    if args.resume:
        out = Path(args.resume)
        cfg = load_config(ExpertTrainConfig, out / "config.yaml")
        if args.steps is not None:  # allow extending a finished run
            cfg = dataclasses.replace(cfg, steps=args.steps)
        trainer = ExpertTrainer(cfg, out)
        best = trainer.train(resume=True)
    else:
        if args.sac is not None:
            args.sac = json.loads(args.sac)
        cfg = _config_from_args(ExpertTrainConfig, args)
        out = Path(args.out) if args.out else expert_dir(cfg.task)
        trainer = ExpertTrainer(cfg, out)
        best = trainer.train()
    print(f"best evaluation at step {best['step']}: return {best['return_mean']:.1f} +- "
          f"{best['return_std']:.1f}; policy: {out / 'expert.pt'}")
    return 0


def _print_stats(d: dict[str, Any]) -> None:
    succ = "n/a" if d["success_rate"] is None else f"{d['success_rate']:.2f}"
    print(f"{d['task']}  expert={d['expert']}  episodes={d['episodes']}  "
          f"return={d['return_mean']:.1f} +- {d['return_std']:.1f}  success={succ}  "
          f"({d['steps_per_second']:.0f} env steps/s)")


# -- wmil demos ----------------------------------------------------------------------------------
def cmd_demos_collect(args: argparse.Namespace) -> int:
    """Record expert demonstrations to an HDF5 file (atomically)."""
    from wmil_core.collect import collect_demos

    cfg = _config_from_args(CollectConfig, args)
    stats = collect_demos(cfg.task, cfg.episodes, cfg.obs, cfg.out, cfg.seed, cfg.expert,
                          image_size=cfg.image_size, frames=cfg.frames)
    _print_stats(stats.as_dict())
    print(f"wrote {cfg.out}: {stats.episodes} episodes, {stats.steps} steps, "
          f"collected at {stats.steps_per_second:.0f} env steps/s")
    return 0


def cmd_demos_info(args: argparse.Namespace) -> int:
    """Validate a demo file and summarise it."""
    from wmil_core.demos import load_demos

    ds = load_demos(args.file, task=args.task)
    s = ds.summary()
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    succ = "n/a" if s["success_rate"] is None else f"{s['success_rate']:.2f}"
    print(f"{s['path']}: valid")
    print(f"  task        {s['task']}  (observation mode {s['obs_mode']})")
    print(f"  episodes    {s['episodes']}  steps {s['steps']}")
    for k, v in s["obs_spec"].items():
        print(f"  obs/{k:8s} {tuple(v['shape'])} {v['dtype']}")
    print(f"  actions     ({s['action_dim']},) float32 in [-1, 1]")
    if s["joint_names"]:
        print(f"  joints      {', '.join(s['joint_names'])}")
    ret = ("n/a (no rewards recorded)" if s["return_mean"] is None
           else f"{s['return_mean']:.1f} +- {s['return_std']:.1f}")
    print(f"  expert      {s['expert'].get('name', '?')}: return {ret}, success {succ}")
    return 0


def cmd_demos_import_bag(args: argparse.Namespace) -> int:
    """Turn rosbag2 recordings into a demo file."""
    from wmil_core.bag_import import import_bag

    report = import_bag(
        [Path(b) for b in args.bag], Path(args.out), task=args.task, obs_mode=args.obs,
        image_topic=args.image_topic, joint_topic=args.joint_topic,
        features_topic=args.features_topic, command_topic=args.command_topic,
        split_gap=args.split_gap, progress=True,
    )
    print(f"wrote {report.path}: {report.episodes} episodes, {report.steps} steps "
          f"({report.obs_mode}) from {len(report.bags)} bag(s)")
    for reason, n in sorted(report.dropped.items()):
        print(f"  dropped {n} command(s): {reason}")
    if report.clipped:
        print(f"  clipped {report.clipped} command value(s) to the actuator range")
    return 0


# -- wmil train / eval --------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    """Train IQ-MPC (offline on demos, then online), or resume a killed run."""
    from wmil_core.train import TrainConfig, Trainer, load_run_config

    if args.resume:
        cfg = load_run_config(args.resume)
        if args.steps is not None:  # allow extending a finished run
            cfg = dataclasses.replace(cfg, steps=args.steps)
        trainer = Trainer(cfg, args.resume)
        result = trainer.train(resume=True)
    else:
        if not args.out:
            raise ValueError("--out: a run directory is required (or --resume RUN)")
        cfg = _config_from_args(TrainConfig, args)
        if args.compile:
            cfg = dataclasses.replace(cfg, agent={**cfg.agent, "compile": True})
        trainer = Trainer(cfg, args.out)
        result = trainer.train()
    _print_eval(result)
    print(f"run directory: {trainer.run}")
    return 0


def _print_eval(r: dict[str, Any]) -> None:
    succ = "n/a" if r.get("success_rate") is None else f"{r['success_rate']:.2f}"
    norm = "n/a" if r.get("normalized_score") is None else f"{r['normalized_score']:.3f}"
    print(f"step {r.get('step', '?')}: return {r['return_mean']:.1f} +- {r['return_std']:.1f}  "
          f"success {succ}  normalized score {norm}  "
          + ("" if r.get("reward_correlation") is None
             else f"decoded-reward correlation {r['reward_correlation']:.3f}"))


def set_acting(agent: Any, settings: dict[str, float], prior: bool = False) -> dict[str, Any]:
    """Make a loaded IQ-MPC agent act with its policy prior's mean (``prior``) or plan with
    the MPPI ``settings`` (``samples``, ``iterations``, ``horizon`` as the planner node names
    them, and ``max_std``); returns how it now acts, for the result JSON. Other methods have nothing
    to set and refuse either with a one-line ValueError."""
    from wmil_core.runtime.planner import with_settings

    if not (settings or prior):
        return {}
    if prior and settings:
        raise ValueError("--prior: acts without planning; drop --samples/--iterations/"
                         "--horizon/--max-std")
    cfg = getattr(agent, "cfg", None)
    if cfg is None or not hasattr(cfg, "planner"):
        raise ValueError(f"--prior/--samples/--iterations/--horizon/--max-std: apply to IQ-MPC "
                         f"checkpoints, not {type(agent).__name__}")
    if prior:
        cfg.mpc = False
        return {"acting": "policy prior (mean action, no planning)"}
    cfg.mpc = True
    cfg.planner = with_settings(cfg.planner, settings)
    return {"acting": "mpc", "planner": dataclasses.asdict(cfg.planner)}


def acting_tag(settings: dict[str, float], prior: bool) -> str:
    """File-name suffix of an evaluation that acted differently from training."""
    if prior:
        return "-prior"
    tag = "".join(f"-{k[0]}{settings[k]}" for k in ("samples", "iterations", "horizon")
                  if k in settings)
    return tag + (f"-std{settings['max_std']:g}" if "max_std" in settings else "")


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate a run, a checkpoint or an exported bundle; print and save JSON."""
    src = Path(args.run)
    settings: dict[str, float] = {k: int(v) for k in ("samples", "iterations", "horizon",
                                                      "shards") if (v := getattr(args, k, None))}
    if args.max_std is not None:
        if not args.max_std > 0:  # 0 would mean "as trained" to with_settings
            raise ValueError(f"--max-std: must be > 0, got {args.max_std}")
        settings["max_std"] = args.max_std
    if (src / "manifest.json").is_file():  # an exported bundle: the onnxruntime planner
        from wmil_core.bundle_eval import evaluate_bundle, record_evaluation

        if args.prior:
            raise ValueError("--prior: applies to runs and checkpoints (a bundle's runtime "
                             "always plans)")
        if args.online:
            raise ValueError("--online: applies to runs and checkpoints (a bundle holds the "
                             "networks it was exported from)")
        seed = 10_000 if args.seed is None else args.seed
        result = evaluate_bundle(src, args.episodes, seed=seed, settings=settings or None,
                                 threads=args.threads or None)
        _print_eval(result)
        print(f"planning p50 {result['plan_p50_ms']:.1f} ms, p99 {result['plan_p99_ms']:.1f} ms")
        if args.record:
            record_evaluation(src, result)
            print(f"recorded in {src / 'manifest.json'}")
        if args.out:
            atomic_write(Path(args.out), json.dumps(result, indent=2))
            print(f"wrote {args.out}")
        return 0
    from wmil_core.export import load_trained

    for key in ("shards", "record"):
        if getattr(args, key, None):
            raise ValueError(f"--{key}: applies to bundles only")
    trainer, paths = load_trained(src)  # a run's latest.pt, or the checkpoint file given
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    acting = set_acting(trainer.agent, settings, prior=args.prior)
    averaged = getattr(trainer.agent, "ema_model", None) is not None
    if args.online and not averaged:
        raise ValueError(f"--online: {src} keeps no averaged copy of its networks (IQ-MPC with "
                         f"agent ema > 0 does), so its evaluation scores them as they are")
    run = paths["run"] or src.parent
    seed = trainer.eval_seed if args.seed is None else args.seed
    with trainer.agent.online_evaluation() if args.online else contextlib.nullcontext():
        scores = trainer.evaluate(args.episodes, seed=seed)
    networks = {"networks": "online" if args.online else "averaged"} if averaged else {}
    result = {"step": trainer.step, "seed": seed, **networks, **acting, **scores}
    _print_eval(result)
    tag = (("" if args.seed is None else f"-seed{args.seed}") + acting_tag(settings, args.prior)
           + ("-online" if args.online else ""))
    out = Path(args.out) if args.out else run / f"eval-{trainer.step}{tag}.json"
    atomic_write(out, json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


# ``wmil bench speed`` baselines: (what the twin runs, what the speed-up is of, timings shown)
SPEED_BASELINES = {
    "per_sample_value": ("per-sample planner value", "shared-start", ("plan",)),
    "eager_mish": ("eager Mish ops", "fused-Mish", ("update", "plan")),
    "eager": ("eager", "compiled", ("update", "plan")),
    "autograd_mish": ("autograd's Mish backward", "hand-written backward", ("update",)),
    "float32": ("float32", "bfloat16", ("update", "plan")),
}


def cmd_bench_speed(args: argparse.Namespace) -> int:
    """Updates/s and planning latency of a preset."""
    from wmil_core.bench import speed

    suffix = ("-compiled" if args.compile else "") + (
        "-vs-per-sample-value" if args.per_sample_value
        else "-vs-eager-mish" if args.eager_mish
        else "-vs-float32" if args.float32
        else "-vs-autograd-mish" if args.autograd_mish else "")
    out = args.out or f"bench/speed-{args.preset}{suffix}.json"
    r = speed(args.preset, args.task, args.obs, args.updates, args.plans, args.threads,
              out=out, compile=args.compile, autograd_mish=args.autograd_mish,
              overrides=args.agent, per_sample_value=args.per_sample_value,
              eager_mish=args.eager_mish, float32=args.float32)
    print(f"preset {r['preset']}"
          + (f" with {json.dumps(r['agent_overrides'])}" if r["agent_overrides"] else "")
          + f" on {r['task']} ({r['obs']}), {r['threads']} threads, "
          f"batch {r['batch_per_buffer']}+{r['batch_per_buffer']}, planner {r['planner']}"
          + (f", torch.compile'd (warm-up {r['warmup_s']:.0f} s)" if r["compiled"] else ""))
    print(f"  update: p50 {r['update']['p50_ms']:.1f} ms  p99 {r['update']['p99_ms']:.1f} ms  "
          f"({r['updates_per_s']:.2f} updates/s)")
    print(f"  plan:   p50 {r['plan']['p50_ms']:.1f} ms  p99 {r['plan']['p99_ms']:.1f} ms")
    if r["baseline"]:  # the twin timed alternating with the agent, and what it measures
        label, gain, keys = SPEED_BASELINES[r["baseline"]]
        e, x = r[r["baseline"]], r[f"speedup_vs_{r['baseline']}"]
        print(f"  {label}, alternating with it: "
              + ", ".join(f"{k} p50 {e[k]['p50_ms']:.1f} ms" for k in keys)
              + f"; {gain} speed-up (median of paired ratios) "
              + ", ".join(f"{k} {x[k]['median_paired']:.2f}x" for k in keys))
    print(f"wrote {out}")
    return 0


def cmd_bench_collect(args: argparse.Namespace) -> int:
    """Demo-collection speed against raw dm_control, measured in the same run."""
    from wmil_core.bench import collect

    out = args.out or "bench/collect.json"
    r = collect(args.task, args.episodes, args.rounds, out=out)
    print(f"{r['task']}: collection {r['collect_agent_steps_per_s']:.0f} env steps/s "
          f"(= {r['collect_control_steps_per_s']:.0f} control steps/s at action repeat "
          f"{r['action_repeat']}); raw dm_control {r['raw_dm_control_steps_per_s']:.0f} steps/s; "
          f"efficiency {r['efficiency']:.2f} (medians of {r['rounds']} rounds)")
    print(f"wrote {out}")
    return 0


# -- wmil demo (the main job) ----------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    """The main job: demos, IQ-MPC, BC, ONNX export, ROS 2 closed loop, scores."""
    from wmil.main_job import DemoJob, run_demo

    job = DemoJob(**{f.name: getattr(args, f.name) for f in dataclasses.fields(DemoJob)
                     if getattr(args, f.name, None) is not None})
    run_demo(job)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``wmil`` with every subcommand."""
    p = argparse.ArgumentParser(prog="wmil", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("tasks", help="list every registered task")
    t.add_argument("filter", nargs="?", default="", help="substring of task names (e.g. jaco/)")
    t.add_argument("--json", action="store_true", help="print JSON instead of a table")
    t.set_defaults(func=cmd_tasks)

    e = sub.add_parser("expert", help="scripted and trained expert demonstrators")
    esub = e.add_subparsers(dest="expert_command", required=True, metavar="ACTION")
    ee = esub.add_parser("eval", help="measure an expert's return and success")
    ee.add_argument("--task", required=True)
    ee.add_argument("--episodes", type=int, default=10)
    ee.add_argument("--seed", type=int, default=0)
    ee.add_argument("--expert", default=None, help="expert name (default: the task's)")
    ee.add_argument("--json", default=None, help="also write the result to this JSON file")
    ee.set_defaults(func=cmd_expert_eval)
    et = esub.add_parser("train", help="train a SAC expert on the task's reward")
    et.add_argument("--config", default=None, help="YAML with ExpertTrainConfig fields")
    et.add_argument("--task", default=None)
    et.add_argument("--steps", type=int, default=None, help="environment steps")
    et.add_argument("--seed-steps", dest="seed_steps", type=int, default=None)
    et.add_argument("--eval-every", dest="eval_every", type=int, default=None)
    et.add_argument("--eval-episodes", dest="eval_episodes", type=int, default=None)
    et.add_argument("--checkpoint-every", dest="checkpoint_every", type=int, default=None)
    et.add_argument("--episode-length", dest="episode_length", type=int, default=None)
    et.add_argument("--sac", default=None, help='SAC overrides as JSON, e.g. \'{"lr": 1e-3}\'')
    et.add_argument("--seed", type=int, default=None)
    et.add_argument("--device", default=None, help="auto | cpu | cuda")
    et.add_argument("--threads", type=int, default=None)
    et.add_argument("--out", default=None,
                    help="expert directory (default: models/experts/<domain-task>/)")
    et.add_argument("--resume", default=None, metavar="DIR", help="continue a killed run")
    et.set_defaults(func=cmd_expert_train)

    d = sub.add_parser("demos", help="demonstration datasets")
    dsub = d.add_subparsers(dest="demos_command", required=True, metavar="ACTION")
    dc = dsub.add_parser("collect", help="record expert demonstrations to HDF5")
    dc.add_argument("--config", default=None, help="YAML with CollectConfig fields")
    dc.add_argument("--task", default=None)
    dc.add_argument("--episodes", type=int, default=None)
    dc.add_argument("--obs", default=None, choices=["state", "pixels", "pixels+joints"])
    dc.add_argument("--out", default=None, help="output .h5 file")
    dc.add_argument("--seed", type=int, default=None)
    dc.add_argument("--expert", default=None)
    dc.add_argument("--image-size", dest="image_size", type=int, default=None)
    dc.add_argument("--frames", type=int, default=None)
    dc.set_defaults(func=cmd_demos_collect)
    di = dsub.add_parser("info", help="validate and summarise a demo file")
    di.add_argument("file")
    di.add_argument("--task", default=None, help="also require the file to be for this task")
    di.add_argument("--json", action="store_true")
    di.set_defaults(func=cmd_demos_info)
    db = dsub.add_parser("import-bag", help="convert rosbag2 recordings (MCAP, sqlite3)")
    db.add_argument("bag", nargs="+", help="bag directories or files")
    db.add_argument("--out", required=True)
    db.add_argument("--task", required=True, help="task whose joints and action bounds to use")
    db.add_argument("--obs", default=None, choices=["state", "pixels", "pixels+joints"])
    db.add_argument("--image-topic", default="/camera/image_raw")
    db.add_argument("--joint-topic", default="/joint_states")
    db.add_argument("--features-topic", default="/wmil/features")
    db.add_argument("--command-topic", default="/wmil/commands")
    db.add_argument("--split-gap", type=float, default=None,
                    help="start a new episode where commands pause longer than this (s)")
    db.set_defaults(func=cmd_demos_import_bag)

    tr = sub.add_parser("train", help="train IQ-MPC from demos (offline, then online)")
    tr.add_argument("--config", default=None, help="YAML with TrainConfig fields")
    tr.add_argument("--task", default=None)
    tr.add_argument("--demos", default=None, help="demo file (.h5)")
    tr.add_argument("--method", default=None, help="iqmpc | bc | iql-sac | gail-sac")
    tr.add_argument("--preset", default=None, help="paper | cpu | tdmpc2-1m")
    tr.add_argument("--offline-steps", dest="offline_steps", type=int, default=None)
    tr.add_argument("--steps", type=int, default=None, help="online environment steps")
    tr.add_argument("--seed-steps", dest="seed_steps", type=int, default=None)
    tr.add_argument("--eval-every", dest="eval_every", type=int, default=None)
    tr.add_argument("--eval-episodes", dest="eval_episodes", type=int, default=None)
    tr.add_argument("--checkpoint-every", dest="checkpoint_every", type=int, default=None)
    tr.add_argument("--demo-episodes", dest="demo_episodes", type=int, default=None)
    tr.add_argument("--demo-symmetry", dest="demo_symmetry", action="store_const", const=True,
                    default=None, help="turn each demo batch by the task's declared symmetry "
                                       "(reacher: a random rotation about the shoulder)")
    tr.add_argument("--behaviour-symmetry", dest="behaviour_symmetry", action="store_const",
                    const=True, default=None,
                    help="turn each behaviour batch by it as well")
    tr.add_argument("--symmetry-max-angle", dest="symmetry_max_angle", type=float, default=None,
                    help="turns uniform in [-X, X] radians (default: the task's declaration)")
    tr.add_argument("--symmetry-mirror", dest="symmetry_mirror", action="store_const",
                    const=True, default=None,
                    help="reflect half the turned batches by the task's declared mirror "
                         "(reacher: the arm bent the other way)")
    tr.add_argument("--circular-joints", dest="circular_joints", action="store_const",
                    const=True, default=None,
                    help="encode unlimited hinge joints by their sine and cosine")
    tr.add_argument("--canonical-frame", dest="canonical_frame", action="store_const",
                    const=True, default=None,
                    help="read the state in the frame turning with the task's symmetry hinge "
                         "(the Jaco's first joint)")
    tr.add_argument("--hindsight-goals", dest="hindsight_goals", type=float, default=None,
                    metavar="P", help="give a share P of demo sub-trajectories a goal their "
                                      "episode reached later (the task's declared goal)")
    tr.add_argument("--seed", type=int, default=None)
    tr.add_argument("--device", default=None, help="auto | cpu | cuda")
    tr.add_argument("--threads", type=int, default=None)
    tr.add_argument("--compile", action="store_true",
                    help="torch.compile IQ-MPC's update and planner (pays off in long runs)")
    tr.add_argument("--out", default=None, help="run directory")
    tr.add_argument("--resume", default=None, metavar="RUN", help="continue a killed run")
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="evaluate a run, checkpoint or model bundle")
    ev.add_argument("run", help="run directory, checkpoint file or bundle directory")
    ev.add_argument("--episodes", type=int, default=10)
    ev.add_argument("--out", default=None, help="JSON output (default: RUN/eval-<step>.json)")
    ev.add_argument("--seed", type=int, default=None,
                    help="first episode seed (default: as training evaluates; bundles 10000); "
                         "the demos' seeds (0 for `wmil demos collect`) replay demonstrated "
                         "episodes")
    ev.add_argument("--samples", type=int, default=None,
                    help="MPPI samples (policy-prior samples and elites stay as trained)")
    ev.add_argument("--iterations", type=int, default=None, help="MPPI iterations")
    ev.add_argument("--horizon", type=int, default=None, help="MPPI horizon")
    ev.add_argument("--max-std", dest="max_std", type=float, default=None,
                    help="upper clamp of MPPI's sampling std, in action units (paper: 2)")
    ev.add_argument("--prior", action="store_true",
                    help="runs and checkpoints: act with the policy prior's mean, no planning")
    ev.add_argument("--online", action="store_true",
                    help="runs and checkpoints trained with agent ema > 0: score the online "
                         "networks instead of their averaged copy")
    ev.add_argument("--threads", type=int, default=None,
                    help="onnxruntime threads (bundles) or torch threads (checkpoints)")
    ev.add_argument("--shards", type=int, default=None,
                    help="bundles: sample blocks on parallel sessions (see the node parameter)")
    ev.add_argument("--record", action="store_true",
                    help="bundles: store the result in the manifest (key evaluation)")
    ev.set_defaults(func=cmd_eval)

    b = sub.add_parser("bench", help="benchmarks (print and save JSON)")
    bsub = b.add_subparsers(dest="bench_command", required=True, metavar="BENCH")
    bs = bsub.add_parser("speed", help="IQ-MPC updates/s and planning latency of a preset")
    bs.add_argument("--preset", default="cpu")
    bs.add_argument("--task", default="dmc/reacher-easy")
    bs.add_argument("--obs", default="state", choices=["state", "pixels", "pixels+joints"])
    bs.add_argument("--updates", type=int, default=20)
    bs.add_argument("--plans", type=int, default=50)
    bs.add_argument("--threads", type=int, default=0)
    bs.add_argument("--compile", action="store_true", help="torch.compile update and planner")
    bs.add_argument("--agent", type=json_object, default={},
                    help='IQ-MPC overrides of the preset as JSON, e.g. \'{"grad_pen": 0.6}\'')
    bs.add_argument("--eager-mish", action="store_true",
                    help="also time a twin agent whose Mish runs as eager element-wise ops "
                         "instead of the fused kernels, alternating")
    bs.add_argument("--autograd-mish", action="store_true",
                    help="also time a twin agent using autograd's Mish backward, alternating")
    bs.add_argument("--per-sample-value", dest="per_sample_value", action="store_true",
                    help="also time a twin agent (compiled alike) whose planner values each "
                         "sample from its own copy of the start, alternating")
    bs.add_argument("--float32", action="store_true",
                    help="with --agent '{\"precision\": \"bfloat16\"}': also time a float32 "
                         "twin (compiled alike), alternating")
    bs.add_argument("--out", default=None)
    bs.set_defaults(func=cmd_bench_speed)

    bc = bsub.add_parser("collect", help="demo collection speed against raw dm_control")
    bc.add_argument("--task", default="dmc/cartpole-swingup")
    bc.add_argument("--episodes", type=int, default=10)
    bc.add_argument("--rounds", type=int, default=3)
    bc.add_argument("--out", default=None)
    bc.set_defaults(func=cmd_bench_collect)

    from wmil.stack import add_command as add_stack_command
    from wmil_core.cli_export import add_commands as add_export_commands

    add_export_commands(sub, bsub)
    from wmil_core.bench_tdmpc2 import add_command as add_tdmpc2_bench

    add_tdmpc2_bench(bsub)
    from wmil_core.bench_imitation import add_command as add_imitation_bench

    add_imitation_bench(bsub)
    from wmil_core.reward_probe import add_command as add_reward_probe

    add_reward_probe(bsub)

    add_stack_command(sub)

    m = sub.add_parser("demo", help="the main job on the default task")
    m.add_argument("--task", default=None, help="default dmc/reacher-easy")
    m.add_argument("--demos", type=int, default=None, help="expert episodes (default 10)")
    m.add_argument("--seed", type=int, default=None)
    m.add_argument("--offline-steps", dest="offline_steps", type=int, default=None)
    m.add_argument("--steps", type=int, default=None, help="online environment steps")
    m.add_argument("--seed-steps", dest="seed_steps", type=int, default=None)
    m.add_argument("--bc-steps", dest="bc_steps", type=int, default=None)
    m.add_argument("--episodes", type=int, default=None, help="evaluation episodes (10)")
    m.add_argument("--shipped", default=None, help="shipped bundle to run too ('' skips)")
    m.add_argument("--no-ros", dest="ros", action="store_const", const=False, default=None,
                   help="skip the ROS 2 closed loop")
    m.add_argument("--out", default=None, help="output directory (default runs/demo)")
    m.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``wmil`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValueError as exc:  # user mistakes: one line naming the problem
        print(f"wmil: error: {exc}", file=sys.stderr)
        return 2
    except FloatingPointError as exc:  # training diverged; the last checkpoint is intact
        print(f"wmil: error: training stopped: {exc} (the last checkpoint is kept)",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("wmil: interrupted: no partial file was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
