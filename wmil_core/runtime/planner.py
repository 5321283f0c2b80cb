"""The deployed planner: a bundle's ONNX graphs on onnxruntime, MPPI in numpy.

:class:`Planner` validates each observation, encodes it, plans with the same MPPI as the torch
agent (warm-started from the previous step's mean) and returns the action in [-1, 1]^A;
:func:`to_actuator` maps it to actuator units with the manifest's bounds.
"""

from __future__ import annotations

import dataclasses
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

from wmil_core.runtime.bundle import GRAPH_IO, Bundle, ObsKey
from wmil_core.runtime.mppi import (
    F32,
    PlannerConfig,
    PlanNoise,
    PlanResult,
    as_noise,
    check_noise,
    plan,
    sample_noise,
)

PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
ValueGraph = Literal["auto", "fused", "split"]
_ORT_DTYPES = {"float32": "tensor(float)", "uint8": "tensor(uint8)", "int64": "tensor(int64)"}


def default_providers() -> list[str]:
    """TensorRT, CUDA, CPU: those of them that this onnxruntime build offers, in that order."""
    available = ort.get_available_providers()
    return [p for p in PROVIDER_ORDER if p in available]


def check_obs(obs: Mapping[str, Any], spec: Mapping[str, ObsKey]) -> dict[str, np.ndarray]:
    """Validate one observation against the spec; returns arrays with a batch axis of 1.

    Raises ValueError naming the key for a missing or unexpected key, a wrong shape or dtype,
    or a non-finite value.
    """
    if not isinstance(obs, Mapping):
        raise ValueError(f"observation: expected a mapping of {', '.join(spec)}")
    for key in obs:
        if key not in spec:
            raise ValueError(f"observation: unexpected key {key!r} (expected {', '.join(spec)})")
    out = {}
    for key, want in spec.items():
        if key not in obs:
            raise ValueError(f"observation: missing key {key!r}")
        value = obs[key]
        if not isinstance(value, np.ndarray):
            raise ValueError(f"observation {key!r}: expected a numpy array, got "
                             f"{type(value).__name__}")
        if value.shape != want.shape:
            raise ValueError(f"observation {key!r}: shape {value.shape}, expected {want.shape}")
        if value.dtype != np.dtype(want.dtype):
            raise ValueError(f"observation {key!r}: dtype {value.dtype}, expected {want.dtype}")
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise ValueError(f"observation {key!r}: has a non-finite value (NaN or inf)")
        out[key] = np.ascontiguousarray(value)[None]
    return out


# planner settings by their node-parameter names -> PlannerConfig fields
SETTINGS = {"samples": "num_samples", "iterations": "iterations", "horizon": "horizon",
            "max_std": "max_std"}
FLOAT_SETTINGS = {"max_std"}


def with_settings(config: PlannerConfig, settings: Mapping[str, float] | None) -> PlannerConfig:
    """``config`` with overrides named as the planner node's parameters (``samples``,
    ``iterations``, ``horizon``; 0 or missing keeps the value) or ``max_std``, the sampling
    std's upper clamp (``wmil eval`` only). A bad name or value raises ValueError naming it."""
    unknown = sorted(set(settings or {}) - set(SETTINGS))
    if unknown:
        raise ValueError(f"planner settings: unknown {unknown} (known: {', '.join(SETTINGS)})")
    over = {SETTINGS[k]: float(v) if k in FLOAT_SETTINGS else int(v)
            for k, v in (settings or {}).items() if v}
    try:
        return dataclasses.replace(config, **over) if over else config
    except (TypeError, ValueError) as exc:
        raise ValueError(f"planner settings: {exc}") from None


def planner_for(bundle: Bundle, providers: Sequence[str] | None = None,
                threads: int | None = None, settings: Mapping[str, int] | None = None,
                seed: int = 0) -> Planner:
    """A :class:`Planner` configured by node-parameter names: ``samples``, ``iterations``,
    ``horizon`` (see :func:`with_settings`) and ``shards`` (0 or missing: 1)."""
    settings = dict(settings or {})
    shards = int(settings.pop("shards", 0) or 1)
    return Planner(bundle, providers=list(providers) if providers else None, threads=threads,
                   config=with_settings(bundle.planner, settings), seed=seed, shards=shards)


def to_actuator(action: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Map an action in [-1, 1]^A to actuator units (float64), clipped to [low, high]."""
    a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
    return np.clip(low + (a + 1.0) * 0.5 * (high - low), low, high)


class OrtModel:
    """The bundle's graphs as numpy functions (the :class:`~.mppi.PlanningModel` protocol)."""

    def __init__(self, bundle: Bundle, providers: Sequence[str] | None = None,
                 threads: int | None = None) -> None:
        available = ort.get_available_providers()
        providers = list(providers) if providers is not None else default_providers()
        for p in providers:
            if p not in available:
                raise ValueError(f"providers: {p!r} is not available (available: "
                                 f"{', '.join(available)})")
        if not providers:
            raise ValueError("providers: at least one execution provider is needed")
        if threads is not None and threads < 0:
            raise ValueError(f"threads: must be >= 0, got {threads}")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.inter_op_num_threads = 1
        if threads:
            opts.intra_op_num_threads = threads
        # idle intra-op threads sleep instead of spinning between runs: a spinning pool
        # takes the cores from whatever runs next (other nodes, the simulator, torch)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        self.providers = providers
        self.action_dim = bundle.action_dim
        self.sessions: dict[str, ort.InferenceSession] = {}
        for name, data in bundle.graphs.items():
            fname = bundle.manifest["graphs"][name]["file"]
            try:
                self.sessions[name] = ort.InferenceSession(data, opts, providers=providers)
            except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
                msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise ValueError(f"{bundle.path / fname}: onnxruntime cannot load it ({msg})"
                                 ) from None
            self._check_io(bundle, name, fname)
        self._run = {name: s.run for name, s in self.sessions.items()}

    def _check_io(self, bundle: Bundle, name: str, fname: str) -> None:
        sess = self.sessions[name]
        inputs = [i.name for i in sess.get_inputs()]
        outputs = [o.name for o in sess.get_outputs()]
        if name == "encoder":  # one input per observation key, in any order
            want_in = tuple(k for k in inputs if k in bundle.obs_spec)
            if set(want_in) != set(bundle.obs_spec):
                want_in = tuple(bundle.obs_spec)
            want_out = ("z",)
            for i in sess.get_inputs():
                key = bundle.obs_spec.get(i.name)
                if key is not None and (i.type != _ORT_DTYPES[key.dtype]
                                        or tuple(i.shape[1:]) != key.shape):
                    raise ValueError(f"{bundle.path / fname}: input {i.name!r} is {i.type} "
                                     f"{i.shape}, the manifest says {key.dtype} {key.shape}")
        else:
            want_in, want_out = GRAPH_IO[name]
        if tuple(inputs) != want_in or tuple(outputs) != want_out:
            raise ValueError(f"{bundle.path / fname}: inputs {inputs} and outputs {outputs}, "
                             f"expected {list(want_in)} and {list(want_out)}")

    def encode(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """h(o) -> z for a batch of (already validated) observations."""
        return self._run["encoder"](None, dict(obs))[0]

    def next(self, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        """d(z, a) -> z'."""
        return self._run["dynamics"](None, {"z": z, "a": _f32(a)})[0]

    def pi_sample(self, z: np.ndarray, eps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(action, log pi) of the policy prior for Gaussian noise ``eps``."""
        a, log_pi, _ = self._run["pi"](None, {"z": z, "eps": _f32(eps)})
        return a, log_pi

    def pi_mean(self, z: np.ndarray) -> np.ndarray:
        """tanh of the policy prior's mean: its deterministic action."""
        eps = np.zeros((z.shape[0], self.action_dim), dtype=F32)
        return self._run["pi"](None, {"z": z, "eps": eps})[2]

    def q_heads(self, z: np.ndarray, a: np.ndarray, heads: np.ndarray) -> np.ndarray:
        """Q of the given heads: (len(heads), B, 1)."""
        return self._run["q"](None, {"z": z, "a": _f32(a),
                                     "heads": np.ascontiguousarray(heads, dtype=np.int64)})[0]

    def value(self, z0: np.ndarray, actions: np.ndarray, value_eps: np.ndarray,
              heads: np.ndarray) -> np.ndarray:
        """The fused ``value.onnx``: returns G of every action sequence, (N, 1)."""
        return self._run["value"](None, {
            "z0": z0, "actions": _f32(actions), "value_eps": _f32(value_eps),
            "heads": np.ascontiguousarray(heads, dtype=np.int64)})[0]


def _f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=F32)


class Planner:
    """MPPI over a bundle's graphs on onnxruntime; remembers the previous mean (warm start).

    Args:
        bundle: a loaded bundle (:func:`~wmil_core.runtime.load_bundle`).
        providers: onnxruntime execution providers in order of preference (default:
            TensorRT, CUDA, CPU, whichever are available).
        threads: intra-op threads of each session (None: onnxruntime's default).
        config: planner settings (default: the bundle's ``planner``).
        seed: seed of the numpy noise generator.
        value_graph: ``fused`` (value.onnx), ``split`` (dynamics, pi and q graphs stepped in
            numpy) or ``auto``: time both once and keep the faster (fused only when its baked
            horizon equals the planner's).
        shards: split the samples of each MPPI iteration into this many contiguous blocks,
            each valued by its own copy of the sessions on its own thread (onnxruntime runs
            of one session do not overlap). Returns are row-wise, so the action is the same;
            on a 2-core CPU ``shards=2, threads=1`` scales better than ``threads=2``.
    """

    def __init__(self, bundle: Bundle, providers: Sequence[str] | None = None,
                 threads: int | None = None, config: PlannerConfig | None = None,
                 seed: int = 0, value_graph: ValueGraph = "auto", shards: int = 1) -> None:
        if value_graph not in ("auto", "fused", "split"):
            raise ValueError(f"value_graph: must be auto, fused or split, got {value_graph!r}")
        if not isinstance(shards, int) or shards < 1:
            raise ValueError(f"shards: must be an integer >= 1, got {shards!r}")
        self.bundle = bundle
        self.cfg = config if config is not None else bundle.planner
        self.model = OrtModel(bundle, providers, threads)
        self.shards = min(shards, self.cfg.num_samples)
        self._shard_models = [self.model] + [OrtModel(bundle, providers, threads)
                                             for _ in range(self.shards - 1)]
        self._pool: ThreadPoolExecutor | None = None
        if self.shards > 1:
            self._pool = ThreadPoolExecutor(self.shards - 1, thread_name_prefix="wmil_shard")
            weakref.finalize(self, self._pool.shutdown, wait=False)
        self.rng = np.random.default_rng(seed)
        self.prev_mean: np.ndarray | None = None
        self.last: PlanResult | None = None
        self.value_graph_times: dict[str, float] | None = None  # seconds, when auto timed them
        fusable = "value" in bundle.graphs and bundle.value_horizon == self.cfg.horizon
        if value_graph == "fused" and not fusable:
            raise ValueError(f"value_graph: the bundle has no fused value graph for horizon "
                             f"{self.cfg.horizon} (its: {bundle.value_horizon})")
        if value_graph == "auto":
            value_graph = self._faster_value_graph() if fusable else "split"
        self.value_graph: str = value_graph
        self._value = self._value_fn()  # built once: fused or split, one shard or several

    @property
    def providers(self) -> list[str]:
        """The execution providers in use."""
        return list(self.model.providers)

    def _value_fn(self) -> Callable[..., np.ndarray]:
        """G of every action sequence, (N, 1), on the chosen graphs and shards."""
        if self.shards == 1:
            return self._model_value_fn(self.model)
        fns = [self._model_value_fn(m) for m in self._shard_models]
        pool = self._pool
        assert pool is not None

        def sharded(z0: np.ndarray, acts: np.ndarray, eps: np.ndarray,
                    heads: np.ndarray) -> np.ndarray:
            cuts = np.linspace(0, z0.shape[0], len(fns) + 1).astype(int)
            blocks = [(slice(lo, hi), fn) for lo, hi, fn in zip(cuts[:-1], cuts[1:], fns)]
            futures = [pool.submit(fn, z0[sl], acts[:, sl], eps[:, sl], heads)
                       for sl, fn in blocks[1:]]
            sl, fn = blocks[0]
            first = fn(z0[sl], acts[:, sl], eps[:, sl], heads)  # on the calling thread
            return np.concatenate([first, *(f.result() for f in futures)])

        return sharded

    def _fused_value_fn(self, model: OrtModel) -> Callable[..., np.ndarray]:
        """``value.onnx`` on ``model``'s session; a shared-start graph gets one row of z0.

        MPPI values every sample from the same start (:func:`~.mppi.plan` passes N copies
        of it), so the first row stands for all.
        """
        if self.bundle.value_start == "shared":
            return lambda z0, acts, eps, heads: model.value(z0[:1], acts, eps, heads)
        return model.value

    def _model_value_fn(self, model: OrtModel) -> Callable[..., np.ndarray]:
        """G of each action sequence on ``model``'s sessions (fused or split graphs)."""
        if self.value_graph == "fused":
            return self._fused_value_fn(model)
        from wmil_core.runtime.mppi import trajectory_value

        b = self.bundle
        return lambda z0, acts, eps, heads: trajectory_value(model, z0, acts, b.gamma, b.beta,
                                                             eps, heads)

    def _faster_value_graph(self, repeats: int = 9) -> str:
        """Time the fused and the split value computation on one batch; the faster wins.

        The two alternate, so that a change in machine load hits both alike; medians decide.
        """
        from wmil_core.runtime.mppi import trajectory_value

        cfg, b = self.cfg, self.bundle
        rng = np.random.default_rng(0)
        h, n, a = cfg.horizon, cfg.num_samples, b.action_dim
        z0 = np.repeat(rng.random((1, b.latent_dim), dtype=F32), n, axis=0)  # as MPPI's
        acts = rng.uniform(-1, 1, (h, n, a)).astype(F32)
        eps = rng.standard_normal((h + 1, n, a), dtype=F32)
        heads = np.tile(np.arange(2, dtype=np.int64), (h + 1, 1))
        fused = self._fused_value_fn(self.model)
        runs = {
            "fused": lambda: fused(z0, acts, eps, heads),
            "split": lambda: trajectory_value(self.model, z0, acts, b.gamma, b.beta, eps, heads),
        }
        times: dict[str, list[float]] = {name: [] for name in runs}
        for fn in runs.values():
            fn()  # warm-up
        for _ in range(repeats):
            for name, fn in runs.items():
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
        best = {name: float(np.median(ts)) for name, ts in times.items()}
        self.value_graph_times = best
        return min(best, key=best.__getitem__)

    def reset(self) -> None:
        """Forget the warm start (a new episode)."""
        self.prev_mean = None

    def encode(self, obs: Mapping[str, Any]) -> np.ndarray:
        """Validate one observation and encode it: z of shape (1, L)."""
        return self.model.encode(check_obs(obs, self.bundle.obs_spec))

    def sample_noise(self) -> PlanNoise:
        """Draw the noise of one planning step from the planner's generator."""
        return sample_noise(self.cfg, self.bundle.action_dim, self.bundle.num_q, self.rng)

    def act(self, obs: Mapping[str, Any], t0: bool = False, explore: bool = False,
            noise: Any = None) -> np.ndarray:
        """The action in [-1, 1]^A (float32) for one observation.

        ``t0`` marks an episode's first step (no warm start); ``explore`` adds std-scaled
        exploration noise (training only); ``noise`` fixes every random draw (a
        :class:`~.mppi.PlanNoise`, or any object with its fields, e.g. a torch one).
        """
        z = self.encode(obs)
        if not self.bundle.mpc:  # the bundle's agent acts with its policy prior
            if not explore:
                return self.model.pi_mean(z)[0].astype(F32)
            eps = self.rng.standard_normal((1, self.bundle.action_dim), dtype=F32)
            return self.model.pi_sample(z, eps)[0][0].astype(F32)
        if noise is None:
            noise = self.sample_noise()
        else:
            noise = as_noise(noise)
            check_noise(noise, self.cfg, self.bundle.action_dim, self.bundle.num_q)
        if t0:
            self.prev_mean = None
        res = plan(self.model, z, self.cfg, self.bundle.gamma, self.bundle.beta, noise,
                   prev_mean=self.prev_mean, explore=explore, value_fn=self._value)
        self.prev_mean = res.mean
        self.last = res
        return res.action

    def to_actuator(self, action: np.ndarray) -> np.ndarray:
        """Map an action in [-1, 1]^A to actuator units with the manifest's bounds (clipped)."""
        return to_actuator(action, self.bundle.action_low, self.bundle.action_high)
