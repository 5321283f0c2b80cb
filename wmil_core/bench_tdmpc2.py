"""``wmil bench tdmpc2``: IQ-MPC's update and planning cost against TD-MPC2's own code.

TD-MPC2 is imported at run time from a source tree the user names (``--src``); nothing of it
is part of wmil. Its code targets CUDA (``torch.device('cuda:0')``, ``capturable=True`` Adam),
so it is run on the CPU through a shim of the ``torch`` name in two of its modules (see
:func:`_cpu_torch`); its files are not changed.

The machine's speed drifts, so both agents are timed in one process, alternating one call of
each (TD-MPC2, wmil at batch 128+128, wmil at 256+256, then again), after a warm-up. Reported:
median and p99 per call, and TD-MPC2 / wmil ratios (of the medians, and the median of the
ratios of calls made side by side).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import io
import json
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from wmil_core.config import atomic_write
from wmil_core.machine import machine_info
from wmil_core.timing import latency_stats, paired_ratios

SIZES = {"1m": (1, "tdmpc2-1m"), "5m": (5, "paper")}  # size -> (TD-MPC2 model_size, preset)
HORIZON = 3
TDMPC2_BATCH = 256


# -- importing TD-MPC2 ---------------------------------------------------------------------------
def _source_dir(src: str | Path) -> Path:
    """The folder holding ``tdmpc2.py`` and ``common/`` (``src`` itself or ``src/tdmpc2``)."""
    root = Path(src).expanduser()
    for d in (root, root / "tdmpc2"):
        if (d / "tdmpc2.py").is_file() and (d / "common" / "world_model.py").is_file():
            return d.resolve()
    raise ValueError(f"{src}: no TD-MPC2 source here (expected tdmpc2.py and common/ in it or "
                     "in its tdmpc2/ folder)")


def _cpu_torch() -> types.ModuleType:
    """A copy of the ``torch`` namespace for TD-MPC2's modules (plain module-dict lookups, so no
    cost per call) with two changes:

    * ``device('cuda...')`` is ``None``: tensors made with ``device=None`` land on the CPU, and
      ``model.to(None)`` leaves every tensor where it is. (``.to('cpu')`` would fail: with
      tensordict 0.15 the Q-ensemble's module copies keep "meta" placeholder parameters, which
      ``Module.to`` refuses to copy to any device.)
    * ``optim.Adam`` drops ``capturable=True`` (for CUDA-graph capture; an error on the CPU).
    """
    import torch
    real_device = torch.device

    def device(spec: Any = "cpu", index: int | None = None) -> torch.device | None:
        if isinstance(spec, str) and spec.startswith("cuda"):
            return None
        return real_device(spec) if index is None else real_device(spec, index)

    def adam(*args: Any, capturable: bool = False, **kwargs: Any) -> torch.optim.Adam:
        return torch.optim.Adam(*args, **kwargs)

    optim = types.ModuleType("torch.optim")
    optim.__dict__.update(torch.optim.__dict__)
    optim.Adam = adam  # type: ignore[attr-defined]
    shim = types.ModuleType("torch")
    shim.__dict__.update(torch.__dict__)
    shim.device = device  # type: ignore[attr-defined]
    shim.optim = optim  # type: ignore[attr-defined]
    return shim


def load_tdmpc2(src: str | Path) -> tuple[type, dict[int, dict[str, Any]], dict[str, Any]]:
    """(the TDMPC2 class running on the CPU, its MODEL_SIZE table, its config.yaml defaults)."""
    d = _source_dir(src)
    if importlib.util.find_spec("tensordict") is None:
        raise ValueError("tensordict is not installed (TD-MPC2 needs it): "
                         "pip install -r requirements-bench.txt")
    for name in ("common", "tdmpc2"):
        mod = sys.modules.get(name)
        if mod is not None and not str(getattr(mod, "__file__", "")).startswith(str(d)):
            raise ValueError(f"a module named {name!r} from {mod.__file__} is already imported; "
                             "TD-MPC2's cannot be loaded beside it")
    sys.path.insert(0, str(d))
    try:
        common = importlib.import_module("common")
        scale = importlib.import_module("common.scale")
        agent = importlib.import_module("tdmpc2")
    except ImportError as exc:
        raise ValueError(f"{d}: TD-MPC2 does not import ({exc})") from None
    finally:
        sys.path.remove(str(d))
    shim = _cpu_torch()
    agent.torch = shim  # type: ignore[attr-defined]
    scale.torch = shim  # type: ignore[attr-defined]
    defaults = yaml.safe_load((d / "config.yaml").read_text())
    return agent.TDMPC2, common.MODEL_SIZE, defaults


class _Cfg(types.SimpleNamespace):
    """TD-MPC2's config object: attributes, plus ``get`` as in its dataclass."""

    def get(self, key: str, default: Any = None) -> Any:  # noqa: D102
        return getattr(self, key, default)


def _number(v: Any) -> Any:
    """YAML 1.1 reads ``3e-4`` as a string (OmegaConf does not): make such values numbers."""
    if isinstance(v, str):
        try:
            f = float(v)
        except ValueError:
            return v
        return int(f) if f.is_integer() and "e" not in v.lower() and "." not in v else f
    return v


def tdmpc2_config(defaults: dict[str, Any], model_size: dict[str, Any], task: str, obs_dim: int,
                  action_dim: int, episode_length: int) -> _Cfg:
    """Its ``config.yaml`` defaults, one model size and the fields its parser derives."""
    data = {k: _number(v) for k, v in defaults.items() if k != "defaults"}
    data.update(model_size)
    data.update(
        task=task, obs="state", obs_shape={"state": (obs_dim,)}, action_dim=action_dim,
        episode_length=episode_length, multitask=False, task_dim=0, tasks=[task],
        episodic=False, compile=False, batch_size=TDMPC2_BATCH, horizon=HORIZON,
        bin_size=(data["vmax"] - data["vmin"]) / (data["num_bins"] - 1),
        task_title=task, seed_steps=0, work_dir=".",
    )
    return _Cfg(**data)


class _FakeBuffer:
    """Stands in for TD-MPC2's replay buffer: ``sample()`` cycles through fixed batches."""

    def __init__(self, batches: list[tuple[Any, ...]]) -> None:
        self.batches, self.i = batches, 0

    def sample(self) -> tuple[Any, ...]:  # noqa: D102
        self.i = (self.i + 1) % len(self.batches)
        return self.batches[self.i]


# -- timing -----------------------------------------------------------------------------------
def matmul_gflops(n: int = 512, reps: int = 20) -> float:
    """Achieved float32 GFLOP/s of an n x n matmul (median of ``reps``) at the current threads."""
    import torch
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        ts.append(time.perf_counter() - t)
    return 2 * n**3 / float(np.median(ts)) / 1e9


def _timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return 1000 * (time.perf_counter() - t)


def compare(src: str, size: str = "1m", task: str = "dmc/reacher-easy", updates: int = 20,
            plans: int = 30, threads: int = 1, out: str | Path | None = None,
            warmup: int = 3, seed: int = 0, compile: bool | str = False,
            precision: str = "float32") -> dict[str, Any]:
    """Time TD-MPC2 and wmil IQ-MPC updates and plans at the same sizes, alternating calls.

    TD-MPC2 updates on 256 sub-trajectories; wmil on 128+128 (expert+behaviour: the same
    total) and on 256+256 (the paper's per-buffer batch). Both plan 512 samples x 6
    iterations x horizon 3 from the same observations, ``eval_mode=True``. ``compile``:
    wmil with ``torch.compile`` (compiled during the warm-up, which is not timed); TD-MPC2
    stays eager, as its CPU runs are. ``precision``: wmil's (IQMPCConfig.precision; TD-MPC2
    runs float32, as its code does).
    """
    import torch

    from wmil_core.agents.iqmpc import IQMPC
    from wmil_core.buffer import Batch
    from wmil_core.presets import agent_config
    from wmil_core.tasks import make_env

    if size not in SIZES:
        raise ValueError(f"size: must be one of {', '.join(SIZES)}, got {size!r}")
    if updates < 1 or plans < 1 or threads < 1:
        raise ValueError("updates, plans and threads: must be >= 1")
    tdmpc2_cls, model_sizes, defaults = load_tdmpc2(src)
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gflops_start = matmul_gflops()

    env = make_env(task, "state", seed=seed)
    spec = env.obs_spec()
    obs_shapes = {k: tuple(v["shape"]) for k, v in spec.items()}
    if any(len(s) != 1 for s in obs_shapes.values()):
        raise ValueError(f"{task}: state observations must be vectors")
    keys = list(obs_shapes)
    obs_dim = sum(s[0] for s in obs_shapes.values())
    a_dim = int(env.action_space.shape[0])

    model_size, preset = SIZES[size]
    cfg = tdmpc2_config(defaults, model_sizes[model_size], task, obs_dim, a_dim,
                        env.episode_length)
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its discount
        td = tdmpc2_cls(cfg)
    wcfg = agent_config(preset, {"batch_size": TDMPC2_BATCH, "planner": {"horizon": HORIZON},
                                 "compile": compile, "precision": precision})
    agent = IQMPC(obs_shapes, a_dim, env.episode_length, wcfg, seed=seed)
    p, m = wcfg.planner, wcfg.model
    same = {"latent_dim": cfg.latent_dim == m.latent_dim, "mlp_dim": cfg.mlp_dim == m.mlp_dim,
            "enc_dim": cfg.enc_dim == m.enc_dim, "num_q": cfg.num_q == m.num_q,
            "planner": (cfg.num_samples, cfg.iterations, cfg.horizon, cfg.num_elites,
                        cfg.num_pi_trajs) == (p.num_samples, p.iterations_for(a_dim), p.horizon,
                                              p.num_elites, p.num_pi_trajs)}
    if not all(same.values()):
        raise ValueError(f"TD-MPC2 and wmil sizes differ: {same}")

    def randn(*shape: int) -> torch.Tensor:
        return torch.from_numpy(rng.standard_normal(shape).astype(np.float32))

    def act(n: int) -> torch.Tensor:
        return torch.from_numpy(rng.uniform(-1, 1, (HORIZON, n, a_dim)).astype(np.float32))

    def wbatch(n: int) -> Batch:
        return Batch({k: randn(HORIZON + 1, n, s[0]) for k, s in obs_shapes.items()}, act(n),
                     torch.zeros(HORIZON, n, 1))

    buf = _FakeBuffer([(randn(HORIZON + 1, TDMPC2_BATCH, obs_dim), act(TDMPC2_BATCH),
                        randn(HORIZON, TDMPC2_BATCH, 1), torch.zeros(HORIZON, TDMPC2_BATCH, 1),
                        None) for _ in range(4)])
    small = [(wbatch(TDMPC2_BATCH // 2), wbatch(TDMPC2_BATCH // 2)) for _ in range(4)]
    large = [(wbatch(TDMPC2_BATCH), wbatch(TDMPC2_BATCH)) for _ in range(4)]

    upd: dict[str, list[float]] = {"tdmpc2": [], "wmil_128": [], "wmil_256": []}
    for i in range(warmup + updates):
        e1, b1 = small[i % 4]
        e2, b2 = large[i % 4]
        t = (_timed(lambda: td.update(buf)),
             _timed(lambda: agent.update(e1, b1)),  # noqa: B023
             _timed(lambda: agent.update(e2, b2)))  # noqa: B023
        if i >= warmup:
            for k, v in zip(upd, t):
                upd[k].append(v)

    ob, _ = env.reset(seed=seed)
    ob_t = torch.from_numpy(np.concatenate([np.asarray(ob[k], np.float32) for k in keys]))
    td.act(ob_t, t0=True, eval_mode=True)
    agent.act(ob, t0=True, eval_mode=True)
    pln: dict[str, list[float]] = {"tdmpc2": [], "wmil": []}
    for i in range(warmup + plans):
        ob_t = torch.from_numpy(np.concatenate([np.asarray(ob[k], np.float32) for k in keys]))
        t_td = _timed(lambda: td.act(ob_t, t0=False, eval_mode=True))  # noqa: B023
        box: list[np.ndarray] = []
        t_w = _timed(lambda: box.append(agent.act(ob, t0=False, eval_mode=True)))  # noqa: B023
        if i >= warmup:
            pln["tdmpc2"].append(t_td)
            pln["wmil"].append(t_w)
        ob, _, term, trunc, _ = env.step(box[0])
        if term or trunc:
            ob, _ = env.reset()
    env.close()
    gflops_end = matmul_gflops()

    result: dict[str, Any] = {
        "benchmark": "tdmpc2-compare",
        "size": size,
        "task": task,
        "obs_dim": obs_dim,
        "action_dim": a_dim,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "wmil_compiled": compile,
        "wmil_precision": precision,
        **machine_info(),
        "matmul_gflops_512": {"start": gflops_start, "end": gflops_end},
        "model": {"enc_dim": m.enc_dim, "mlp_dim": m.mlp_dim, "latent_dim": m.latent_dim,
                  "num_q": m.num_q},
        "planner": f"{p.num_samples} samples x {p.iterations_for(a_dim)} iterations x "
                   f"horizon {p.horizon}",
        "batch": {"tdmpc2": TDMPC2_BATCH, "wmil_128": "128+128", "wmil_256": "256+256"},
        "update": {k: latency_stats(v) for k, v in upd.items()},
        "plan": {k: latency_stats(v) for k, v in pln.items()},
        "ratio_tdmpc2_over_wmil": {
            "update_128": paired_ratios(upd["tdmpc2"], upd["wmil_128"]),
            "update_256": paired_ratios(upd["tdmpc2"], upd["wmil_256"]),
            "plan": paired_ratios(pln["tdmpc2"], pln["wmil"]),
        },
    }
    if out:
        atomic_write(out, json.dumps(result, indent=2))
    return result


# -- command -----------------------------------------------------------------------------------
def print_table(r: dict[str, Any]) -> None:
    """The result as a short table."""
    g = r["matmul_gflops_512"]
    print(f"TD-MPC2 vs wmil IQ-MPC, size {r['size']} (enc {r['model']['enc_dim']}, mlp "
          f"{r['model']['mlp_dim']}, latent {r['model']['latent_dim']}, {r['model']['num_q']} Q), "
          f"{r['task']}, {r['threads']} threads, matmul {g['start']:.0f}/{g['end']:.0f} GFLOP/s"
          + {True: ", wmil torch.compile'd", "planner": ", wmil's planner torch.compile'd"}.get(
              r.get("wmil_compiled"), ", both eager")
          + f", wmil {r.get('wmil_precision', 'float32')}")
    ratio = r["ratio_tdmpc2_over_wmil"]
    rows = [("update", "TD-MPC2 (256)", r["update"]["tdmpc2"], None),
            ("update", "wmil 128+128", r["update"]["wmil_128"], ratio["update_128"]),
            ("update", "wmil 256+256", r["update"]["wmil_256"], ratio["update_256"]),
            ("plan", "TD-MPC2", r["plan"]["tdmpc2"], None),
            ("plan", "wmil", r["plan"]["wmil"], ratio["plan"])]
    print(f"  {'':7}{'':15}{'p50 ms':>9}{'p99 ms':>9}  TD-MPC2/wmil (medians, paired)")
    for what, who, s, q in rows:
        tail = f"  {q['of_medians']:.2f}x, {q['median_paired']:.2f}x" if q else ""
        print(f"  {what:7}{who:15}{s['p50_ms']:9.1f}{s['p99_ms']:9.1f}{tail}")


def cmd_bench_tdmpc2(args: argparse.Namespace) -> int:
    """Run :func:`compare` and print its table."""
    tail = {True: "-compiled", "planner": "-compiled-planner"}.get(args.compile, "") + (
        f"-{args.precision}" if args.precision != "float32" else "")
    out = args.out or f"bench/tdmpc2-compare-{args.size}{tail}.json"
    r = compare(args.src, args.size, args.task, args.updates, args.plans, args.threads, out=out,
                compile=args.compile, precision=args.precision)
    print_table(r)
    print(f"wrote {out}")
    return 0


def _compile_arg(value: str) -> bool | str:
    """``--compile`` takes no value (update and planner) or ``planner``."""
    if value != "planner":
        raise argparse.ArgumentTypeError(f"expected 'planner' or no value, got {value!r}")
    return value


def add_command(bench_sub: Any) -> argparse.ArgumentParser:
    """Register ``wmil bench tdmpc2`` on the ``bench`` subparsers object."""
    p = bench_sub.add_parser("tdmpc2", help="IQ-MPC update/plan speed against TD-MPC2's code")
    p.add_argument("--src", required=True,
                   help="TD-MPC2 source: its repository's tdmpc2/ folder (or the folder above)")
    p.add_argument("--size", default="1m", choices=sorted(SIZES))
    p.add_argument("--task", default="dmc/reacher-easy")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--updates", type=int, default=20)
    p.add_argument("--plans", type=int, default=30)
    p.add_argument("--compile", nargs="?", const=True, default=False, type=_compile_arg,
                   help="torch.compile wmil's update and planner, or with 'planner' the "
                        "planner alone (TD-MPC2 stays eager)")
    p.add_argument("--precision", default="float32", choices=["float32", "bfloat16"],
                   help="wmil's matmul precision (IQMPCConfig.precision); TD-MPC2: float32")
    p.add_argument("--out", default=None,
                   help="JSON (default: bench/tdmpc2-compare-SIZE[-compiled][-bfloat16].json)")
    p.set_defaults(func=cmd_bench_tdmpc2)
    return p


if __name__ == "__main__":  # python -m wmil_core.bench_tdmpc2 --src PATH [...]
    _parser = argparse.ArgumentParser(prog="python -m wmil_core.bench_tdmpc2")
    add_command(_parser.add_subparsers(dest="bench_command", required=True))
    _args = _parser.parse_args(["tdmpc2", *sys.argv[1:]])
    try:
        sys.exit(_args.func(_args))
    except ValueError as _exc:
        print(f"wmil: error: {_exc}", file=sys.stderr)
        sys.exit(2)
