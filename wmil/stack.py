"""``wmil stack``: the simulator and planner nodes in one process, over real ROS 2 topics.

:func:`run_stack` starts ``wmil_sim`` and ``wmil_planner`` (more nodes can be added, e.g. the
learner) on one multi-threaded executor with the parameters of ``config/wmil.yaml`` (the file
the launch file reads) and returns the statistics of the first ``episodes`` episodes from
``/wmil/episode`` with the planner's latency. In ``lockstep`` simulation the planner plans
once per observation (``trigger: observation``), so results do not depend on machine speed.

rclpy is imported only when the stack runs, so :func:`add_command` costs nothing to the CLI.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from wmil.model import PlannerFactory

SIM, PLANNER = "wmil_sim", "wmil_planner"
_ALIASES = {"sim": SIM, "planner": PLANNER}


@dataclasses.dataclass
class StackResult:
    """What a stack run measured."""

    episodes: list[dict[str, Any]]  # the /wmil/episode JSON objects, in order
    latency: dict[str, float]  # the planner's latency_summary(): plan and command p50/p99, ms
    swaps: int = 0  # model updates the planner swapped in

    @property
    def mean_return(self) -> float:
        """Mean episode return (NaN without episodes)."""
        rets = [float(e["return"]) for e in self.episodes]
        return sum(rets) / len(rets) if rets else math.nan


def default_params_file() -> Path:
    """``config/wmil.yaml`` of this source tree, else of the installed package's share dir."""
    repo = Path(__file__).resolve().parent.parent / "config" / "wmil.yaml"
    if repo.is_file():
        return repo
    try:
        from ament_index_python.packages import get_package_share_directory

        share = Path(get_package_share_directory("wmil")) / "config" / "wmil.yaml"
        if share.is_file():
            return share
    except (ImportError, LookupError):
        pass
    raise ValueError("config/wmil.yaml: not found in the source tree or the wmil share directory")


def file_parameters(path: str | Path, node: str) -> dict[str, Any]:
    """The parameters a ROS 2 parameter file gives ``node`` (``/**`` first, then its own)."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read the parameter file ({exc})") from None
    out: dict[str, Any] = {}
    for key in ("/**", node, "/" + node):
        section = data.get(key) if isinstance(data, dict) else None
        if isinstance(section, dict):
            out.update(section.get("ros__parameters") or {})
    return out


def _overrides(config: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {SIM: {}, PLANNER: {}}
    for key, params in (config or {}).items():
        node = _ALIASES.get(key, key)
        if not isinstance(params, Mapping):
            raise ValueError(f"stack config: {key} must map parameter names to values")
        out.setdefault(node, {}).update(params)
    return out


DEFAULT_MODEL = "reacher-easy"  # the shipped bundle under models/


def run_stack(config: Mapping[str, Mapping[str, Any]] | None = None, *, episodes: int = 1,
              params_file: str | Path | None = None, timeout: float | None = None,
              planner_factory: PlannerFactory | None = None, domain_id: int | None = None,
              extra_nodes: Sequence[Callable[..., Any]] = (),
              on_episode: Callable[[dict[str, Any]], None] | None = None) -> StackResult:
    """Run sim and planner until ``episodes`` episodes ended; returns their statistics.

    Args:
        config: parameter overrides per node, ``{"wmil_planner": {...}, "wmil_sim": {...}}``
            (``planner``/``sim`` also accepted), over the parameter file.
        episodes: episodes to run (sets the sim's ``episodes``).
        params_file: node parameter YAML (default :func:`default_params_file`).
        timeout: give up after this many seconds (TimeoutError); None waits.
        planner_factory: the planner node's model loader (default: the onnxruntime runtime).
        domain_id: ROS_DOMAIN_ID of this run (default: the environment's).
        extra_nodes: more node factories ``f(context=..., cli_args=...) -> Node`` to run.
        on_episode: called with each episode's statistics as it ends.

    The sim's task and observation mode default to the model's; in lockstep the planner's
    trigger defaults to ``observation``.
    """
    try:
        import rclpy
    except ImportError:
        raise ValueError("wmil stack needs ROS 2: rclpy is not importable (source your ROS "
                         "setup, or install the rclpy wheels)") from None
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.task import Future
    from std_msgs.msg import String

    from wmil.planner_node import PlannerNode
    from wmil.ros_io import RELIABLE_QOS
    from wmil.sim_node import SimNode

    if episodes < 1:
        raise ValueError(f"episodes: must be >= 1, got {episodes}")
    params_file = Path(params_file) if params_file is not None else default_params_file()
    over = _overrides(config)
    sim_over, plan_over = over[SIM], over[PLANNER]
    sim_file = file_parameters(params_file, SIM)
    if sim_over.get("mode", sim_file.get("mode", "lockstep")) == "lockstep":
        plan_over.setdefault("trigger", "observation")
    sim_over["episodes"] = int(episodes)
    cli_args = ["--ros-args", "--params-file", str(params_file)]

    def params(values: Mapping[str, Any]) -> list[Parameter]:
        return [Parameter(k, value=v) for k, v in values.items()]

    results: list[dict[str, Any]] = []
    done = Future()
    context = rclpy.Context()
    nodes: list[Any] = []
    with rclpy.init(context=context, domain_id=domain_id):
        # one executor thread: planning runs on the planner's control thread, training on
        # the learner's, and every callback is short
        executor = SingleThreadedExecutor(context=context)
        try:
            kw = {} if planner_factory is None else {"planner_factory": planner_factory}
            planner = PlannerNode(context=context, cli_args=cli_args,
                                  parameter_overrides=params(plan_over), **kw)
            nodes.append(planner)
            info = planner.model.info
            if not sim_over.get("task", sim_file.get("task")):
                sim_over["task"] = info.task
            if not sim_over.get("obs_mode", sim_file.get("obs_mode")) and info.obs_mode:
                sim_over["obs_mode"] = info.obs_mode
            collector = Node("wmil_stack", context=context)
            nodes.append(collector)

            def on_message(msg: String) -> None:
                stats = json.loads(msg.data)
                results.append(stats)
                if on_episode is not None:
                    on_episode(stats)
                if len(results) >= episodes and not done.done():
                    done.set_result(True)

            topic = sim_over.get("episode_topic", sim_file.get("episode_topic", "/wmil/episode"))
            collector.create_subscription(String, topic, on_message, RELIABLE_QOS)
            for make in extra_nodes:
                nodes.append(make(context=context, cli_args=cli_args))
            nodes.append(SimNode(context=context, cli_args=cli_args,
                                 parameter_overrides=params(sim_over)))
            for node in nodes:
                executor.add_node(node)
            executor.spin_until_future_complete(done, timeout_sec=timeout)
            if not done.done():
                raise TimeoutError(f"stack: {len(results)} of {episodes} episodes ended within "
                                   f"{timeout} s")
            latency = planner.latency_summary()
            swaps = planner.swaps
        except ExternalShutdownException:
            raise KeyboardInterrupt from None
        finally:
            executor.shutdown()
            for node in reversed(nodes):
                node.destroy_node()
    return StackResult(episodes=results[:episodes], latency=latency, swaps=swaps)


# -- command line ---------------------------------------------------------------------------------
def add_command(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``stack`` on the ``wmil`` CLI's subparsers; its handler is :func:`cmd_stack`."""
    p = subparsers.add_parser(
        "stack", help="simulator and planner ROS 2 nodes in one process (evaluation)",
        description="Run wmil_sim and wmil_planner on real ROS 2 topics until the episodes end; "
                    "print each episode's return and the planner's latency.")
    p.add_argument("--model", default=None,
                   help="model bundle directory (default: the shipped models/reacher-easy)")
    p.add_argument("--task", help="registry task (default: the model's)")
    p.add_argument("--episodes", type=int, default=1, help="episodes to run (default 1)")
    p.add_argument("--seed", type=int, help="episode i uses seed + i (default: config, 0)")
    p.add_argument("--episode-length", type=int, help="agent steps per episode")
    p.add_argument("--sim-mode", choices=["lockstep", "realtime"], help="default: config")
    p.add_argument("--rate", type=float, help="planner rate, Hz (trigger timer)")
    p.add_argument("--params", help="node parameter YAML (default: config/wmil.yaml)")
    p.add_argument("--timeout", type=float, help="give up after this many seconds")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=cmd_stack)
    return p


def cmd_stack(args: argparse.Namespace) -> int:
    """Run :func:`run_stack` from parsed ``wmil stack`` arguments and print the results."""
    sim: dict[str, Any] = {}
    from wmil_core.paths import models_dir

    model = args.model or str(models_dir() / DEFAULT_MODEL)
    planner: dict[str, Any] = {"model_dir": model}
    if args.task:
        sim["task"] = args.task
    if args.seed is not None:
        sim["seed"] = int(args.seed)
    if args.episode_length is not None:
        sim["episode_length"] = int(args.episode_length)
    if args.sim_mode:
        sim["mode"] = args.sim_mode
    if args.rate is not None:
        planner["rate"] = float(args.rate)
    try:
        result = run_stack({SIM: sim, PLANNER: planner}, episodes=args.episodes,
                           params_file=args.params, timeout=args.timeout,
                           on_episode=None if args.json else _print_episode)
    except TimeoutError as exc:
        print(f"wmil: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"episodes": result.episodes, "latency_ms": result.latency}, indent=2))
        return 0
    lat = result.latency
    print(f"mean return {result.mean_return:.3f} over {len(result.episodes)} episodes; "
          f"planning p50 {lat['plan_p50_ms']:.1f} ms, p99 {lat['plan_p99_ms']:.1f} ms; "
          f"input -> command p50 {lat['command_p50_ms']:.1f} ms, p99 "
          f"{lat['command_p99_ms']:.1f} ms")
    return 0


def _print_episode(stats: Mapping[str, Any]) -> None:
    print(f"episode {stats['episode']} (seed {stats['seed']}): return {stats['return']:.3f}, "
          f"{stats['steps']} steps, success {stats['success']}", flush=True)
