"""Export a trained agent as a torch-free model bundle (``manifest.json`` + ONNX graphs).

Graphs (opset 17, dynamic batch axis ``B``; ``N`` candidates in the fused graph):

- ``encoder.onnx``: one input per observation key (``joints``/``features`` float32 (B, n),
  ``image`` uint8 (B, H, W, C)) -> ``z`` (B, L)
- ``dynamics.onnx``: ``z`` (B, L), ``a`` (B, A) -> ``z_next`` (B, L)
- ``q.onnx``: ``z``, ``a``, ``heads`` int64 (K,) -> ``q`` (K, B, 1), the selected heads
- ``pi.onnx``: ``z``, ``eps`` (B, A) -> ``action``, ``log_pi`` (B, 1), ``mean_action``
- ``value.onnx``: ``z0`` (1, L), the start all samples share (manifest ``graphs.value.start``
  ``shared``; older bundles: ``per_sample``, z0 (N, L)), ``actions`` (H, N, A),
  ``value_eps`` (H+1, N, A), ``heads`` (H+1, 2) int64 -> ``value`` (N, 1); with two Q heads
  (manifest ``graphs.value.q_heads`` ``unrolled``) it computes both and leaves ``heads`` unread

``value.onnx`` computes ``wmil_core.planning.trajectory_value`` for the bundle's horizon, with
gamma and beta baked in (:class:`ValueGraph`; ``q.onnx`` goes through :class:`QHeads`: both
restate torch code the tracer cannot export, and are checked against the originals).

The export is written to a temporary directory beside the target, checked (``onnx.checker``;
every graph against torch at batch 1 and N, largest absolute difference <= 1e-4, relative
where outputs exceed 1 in magnitude) and only then
renamed into place: a failed or interrupted export leaves nothing behind.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import io
import shutil
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import Tensor, nn

from wmil_core.config import atomic_write, staging_dir, to_dict
from wmil_core.nn.layers import QEnsemble, simnorm
from wmil_core.planning import returns_from, shared_trajectory_value, trajectory_value
from wmil_core.runtime.bundle import (
    FORMAT_VERSION,
    GRAPH_IO,
    VALUE_HEADS,
    VALUE_STARTS,
    max_abs_diff,
    scaled_diff,
    seal_bundle,
)
from wmil_core.world_model import WorldModel

OPSET = 17
TOLERANCE = 1e-4  # largest difference allowed between ONNX and torch (scaled_diff)
META_KEYS = {"name", "task", "obs_mode", "joint_names", "action_low", "action_high",
             "training", "source"}


# -- the graphs as modules -----------------------------------------------------------------------
def export_copy(model: WorldModel) -> WorldModel:
    """A CPU, eval-mode copy of ``model`` (the caller's model keeps its device and mode).

    Its activations are :func:`wmil_core.nn.layers.mish`, which ONNX runs without Softplus.
    """
    return copy.deepcopy(model).cpu().eval()


class EncoderGraph(nn.Module):
    """h: one input per observation key (in ``keys`` order) -> z."""

    def __init__(self, model: WorldModel, keys: list[str]) -> None:
        super().__init__()
        self.model, self.keys = model, keys

    def forward(self, *obs: Tensor) -> Tensor:  # noqa: D102
        return self.model.encode(dict(zip(self.keys, obs)))


class DynamicsGraph(nn.Module):
    """d: (z, a) -> z'."""

    def __init__(self, model: WorldModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, z: Tensor, a: Tensor) -> Tensor:  # noqa: D102
        return self.model.next(z, a)


class QHeads(nn.Module):
    """``QEnsemble.forward(x, heads)`` (eval mode) written for the ONNX tracer.

    The ensemble normalises with ``F.layer_norm(v, v.shape[-1:])``, a traced, non-constant
    shape that the TorchScript exporter refuses; ``QEnsemble.rest`` (the layers after the
    first) uses its width as a Python int. The export check compares the graph with the
    ensemble itself, so any drift fails the export.
    """

    def __init__(self, q: QEnsemble) -> None:
        super().__init__()
        self.q = q

    def forward(self, x: Tensor, heads: Tensor) -> Tensor:  # noqa: D102
        l1 = self.q.l1  # (B, in) -> (K, B, hidden)
        return self.q.rest(torch.matmul(x, l1.weight[heads]) + l1.bias[heads], heads)


def accurate_tanh(x: Tensor) -> Tensor:
    """tanh(x) as sign(x) (1 - 2 / (e^(2|x|) + 1)): within 1.2e-7 of tanh everywhere.

    Where tanh saturates, pi's log(1 - a^2 + 1e-6) turns a last-place difference in ``a``
    into up to 0.35 of log pi. onnxruntime's Tanh differs from torch's in the last place for
    38% of |x| > 5; this form, 0.02% (measured over [-12, 12]).
    """
    t = 1.0 - 2.0 / (torch.exp(2.0 * x.abs()) + 1.0)  # e^(2|x|) = inf gives exactly 1
    return torch.where(x < 0, -t, t)


class TraceableModel(nn.Module):
    """The planning interface of a WorldModel (``next``, ``next_z_part``, ``next_from``,
    ``pi``, ``pi_sample``, ``Q_heads``, ``Q_at``), traceable, with :func:`accurate_tanh` in the
    policy prior. ``every_head``: ``Q_at`` computes both heads of a two-head ensemble one at a
    time (``QEnsemble.at`` unrolled), else it gathers the heads it is given."""

    def __init__(self, model: WorldModel, every_head: bool = False) -> None:
        super().__init__()
        self.model = model
        self.q_heads = QHeads(model._Qs)
        self.every_head = every_head

    def next(self, z: Tensor, a: Tensor) -> Tensor:  # noqa: D102
        return self.model.next(z, a)

    def next_z_part(self, z: Tensor) -> Tensor:  # noqa: D102
        return self.model.next_z_part(z)

    def next_from(self, zw: Tensor, a: Tensor) -> Tensor:  # noqa: D102
        return self.model.next_from(zw, a)

    def pi(self, z: Tensor, eps: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``WorldModel.pi(z, eps=eps)``: (tanh(mean), action, log pi)."""
        m = self.model
        mu, log_std = m._pi_params(z)
        u = mu + eps * log_std.exp()
        return accurate_tanh(mu), accurate_tanh(u), m._squashed_log_prob(eps, log_std, u)

    def pi_sample(self, z: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:  # noqa: D102
        _, a, log_pi = self.pi(z, eps)
        return a, log_pi

    def Q_heads(self, z: Tensor, a: Tensor, heads: Tensor) -> Tensor:  # noqa: D102, N802
        return self.q_heads(torch.cat([z, a], -1), heads)

    def Q_at(self, z: Tensor, actions: list[Tensor], heads: Tensor) -> Tensor:  # noqa: D102, N802
        return self.model._Qs.at(z, actions, heads, unrolled=self.every_head)


class QGraph(nn.Module):
    """Q of the selected heads: (z, a, heads (K,)) -> (K, B, 1)."""

    def __init__(self, model: WorldModel) -> None:
        super().__init__()
        self.model = TraceableModel(model)

    def forward(self, z: Tensor, a: Tensor, heads: Tensor) -> Tensor:  # noqa: D102
        return self.model.Q_heads(z, a, heads)


class PiGraph(nn.Module):
    """Policy prior with given noise: (z, eps) -> (action, log pi, tanh(mean))."""

    def __init__(self, model: WorldModel, traceable: bool = True) -> None:
        super().__init__()
        self.model = model
        self.traceable = TraceableModel(model) if traceable else None

    def forward(self, z: Tensor, eps: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # noqa: D102
        if self.traceable is not None:
            mean_action, action, log_pi = self.traceable.pi(z, eps)
        else:  # the reference: WorldModel.pi itself
            mean_action, action, log_pi, _ = self.model.pi(z, eps=eps)
        return action, log_pi, mean_action


class ValueGraph(nn.Module):
    """``planning.trajectory_value`` for a fixed horizon, gamma and beta, written for the tracer.

    Per sample (``z0`` (N, L)): the same steps in the same order, on :class:`TraceableModel`;
    besides, the stacked Q batch is sliced with the traced ``N`` where ``trajectory_value``
    calls ``split(n)`` (which the exporter would bake in as a constant). The export check
    compares it with ``trajectory_value`` on the untouched model.

    ``shared_start``: ``z0`` is one row (1, L), the latent every MPPI sample starts from, and
    the graph is ``planning.shared_trajectory_value`` (the training planner's value function):
    the work that depends on z_0 alone is done once, and from step 1 on Q(z_t, a_t) and
    Q(z_t, pi) share the latent's part of the Q heads' first layer. Same returns, fewer FLOPs
    (:func:`wmil_core.runtime.flops.planner_flops`).

    ``every_head`` (two-head ensembles): both heads, each as its own chain of fused operators
    (``QEnsemble.head_rest``), whatever order ``heads`` names them in; the min and the mean of
    two heads do not depend on it.
    """

    def __init__(self, model: WorldModel, gamma: float, beta: float, horizon: int,
                 shared_start: bool = False, every_head: bool = False) -> None:
        super().__init__()
        if every_head and model.cfg.num_q != 2:
            raise ValueError(f"every_head: needs an ensemble of two Q heads, "
                             f"got {model.cfg.num_q}")
        self.model = TraceableModel(model, every_head=every_head)
        self.gamma, self.beta, self.horizon = gamma, beta, horizon
        self.shared_start = shared_start

    def forward(self, z0: Tensor, actions: Tensor, value_eps: Tensor,  # noqa: D102
                heads: Tensor) -> Tensor:
        m = self.model
        gamma, beta = self.gamma, self.beta
        if self.shared_start:
            return shared_trajectory_value(m, z0, actions, gamma, beta, value_eps, heads)
        _, log_pi = m.pi_sample(z0, value_eps[0])  # entropy term at z_0
        q_za = self._q_at(z0, [actions[0]], heads[0]).amin(0)  # Q(z_0, a_0): (N, 1)
        return returns_from(m, m.next(z0, actions[0]), q_za, log_pi, actions, gamma, beta,
                            value_eps, heads, self._q_at)

    def _q_at(self, z: Tensor, actions: list[Tensor], heads: Tensor) -> Tensor:
        """Q of ``heads`` at the N latents ``z`` for each (N, A) batch of ``actions``, the
        batches one after the other along the rows, each row whole: (K, len(actions) N, 1)."""
        x = torch.cat([torch.cat([z] * len(actions)), torch.cat(actions)], -1)
        if self.model.every_head:  # both heads, whichever order ``heads`` names them in
            return self.model.model._Qs.every_head(x)
        return self.model.q_heads(x, heads)


def resolve_value_heads(value_heads: str, num_q: int) -> str:
    """``gathered`` or ``unrolled`` for ``value_heads`` (``auto``: unrolled for two heads).

    ``gathered``: value.onnx gathers the two heads ``heads`` names from the ensemble at every
    step (batched matmuls), as ``trajectory_value`` does. ``unrolled`` (two-head ensembles
    only): it computes both heads, whichever order ``heads`` gives them in (the min and the mean
    of two do not depend on it), each as its own chain of fused operators.
    """
    if value_heads == "auto":
        return "unrolled" if num_q == 2 else "gathered"
    if value_heads not in VALUE_HEADS:
        raise ValueError(f"value_heads: must be auto or one of {', '.join(VALUE_HEADS)}, "
                         f"got {value_heads!r}")
    if value_heads == "unrolled" and num_q != 2:
        raise ValueError(f"value_heads: unrolled needs an ensemble of two Q heads, got {num_q}")
    return value_heads


@dataclasses.dataclass
class GraphSpec:
    """One graph to export: its module, names, dynamic axes, a random-input maker, and the
    torch reference (the trained model's own methods) it is checked against."""

    module: nn.Module
    inputs: list[str]
    outputs: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    make_inputs: Callable[[int, torch.Generator], tuple[Tensor, ...]]
    reference: Callable[..., Any]
    compare: Callable[[list[np.ndarray], tuple[Tensor, ...]], float] | None = None


def compare_pi(got: list[np.ndarray], ref: tuple[Tensor, ...]) -> float:
    """Largest difference of pi's outputs (action, log pi, tanh(mean)) from torch's."""
    action, log_pi, mean_action = got
    ref_action, ref_log_pi, ref_mean = ref
    return max(max_abs_diff(action, ref_action.numpy()),
               max_abs_diff(mean_action, ref_mean.numpy()),
               max_abs_diff(log_pi, ref_log_pi.numpy()))


def graph_specs(model: WorldModel, reference: WorldModel,
                obs_shapes: Mapping[str, tuple[int, ...]], gamma: float, beta: float,
                horizon: int, value_start: str = "shared",
                value_heads: str = "auto") -> dict[str, GraphSpec]:
    """The five graphs of a bundle: traced from ``model`` (an :func:`export_copy`), checked
    against ``reference`` (the untouched model, eval mode, on the CPU).

    ``value_start``: ``shared`` (value.onnx takes the one start row MPPI's samples share) or
    ``per_sample`` (one row per sample, the layout of bundles before 2026-11-30).
    """
    if value_start not in VALUE_STARTS:
        raise ValueError(f"value_start: must be one of {', '.join(VALUE_STARTS)}, "
                         f"got {value_start!r}")
    shared = value_start == "shared"
    lat, a_dim, num_q = model.cfg.latent_dim, model.action_dim, model.cfg.num_q
    value_heads = resolve_value_heads(value_heads, num_q)
    group = model.cfg.simnorm_dim
    keys = list(obs_shapes)

    def latent(shape: tuple[int, ...], g: torch.Generator) -> Tensor:
        return simnorm(3 * torch.randn(*shape, lat, generator=g), group)

    def uniform(shape: tuple[int, ...], g: torch.Generator) -> Tensor:
        return 2 * torch.rand(*shape, a_dim, generator=g) - 1

    def heads(rows: int, k: int, g: torch.Generator) -> Tensor:
        return torch.stack([torch.randperm(num_q, generator=g)[:k] for _ in range(rows)])

    def obs(b: int, g: torch.Generator) -> tuple[Tensor, ...]:
        return tuple(
            torch.randint(0, 256, (b, *obs_shapes[k]), generator=g, dtype=torch.uint8)
            if k == "image" else torch.randn(b, *obs_shapes[k], generator=g) for k in keys)

    batch = {0: "B"}
    names = GRAPH_IO
    specs = {
        "encoder": GraphSpec(EncoderGraph(model, keys), keys, ["z"],
                             {k: batch for k in [*keys, "z"]}, obs,
                             reference=EncoderGraph(reference, keys)),
        "dynamics": GraphSpec(DynamicsGraph(model), *map(list, names["dynamics"]),
                              {"z": batch, "a": batch, "z_next": batch},
                              lambda b, g: (latent((b,), g), uniform((b,), g)),
                              reference=reference.next),
        # batch 1 with two heads, batch N with every head in a random order
        "q": GraphSpec(QGraph(model), *map(list, names["q"]),
                       {"z": batch, "a": batch, "heads": {0: "K"}, "q": {0: "K", 1: "B"}},
                       lambda b, g: (latent((b,), g), uniform((b,), g),
                                     heads(1, 2 if b == 1 else num_q, g)[0]),
                       reference=reference.Q_heads),
        "pi": GraphSpec(PiGraph(model), *map(list, names["pi"]),
                        {k: batch for k in ["z", "eps", "action", "log_pi", "mean_action"]},
                        lambda b, g: (latent((b,), g), torch.randn(b, a_dim, generator=g)),
                        reference=PiGraph(reference, traceable=False), compare=compare_pi),
        # shared: one start row for the N samples (graphs.value.start); per_sample: N rows
        "value": GraphSpec(ValueGraph(model, gamma, beta, horizon, shared_start=shared,
                                      every_head=value_heads == "unrolled"),
                           *map(list, names["value"]),
                           {**({} if shared else {"z0": {0: "N"}}),
                            "actions": {1: "N"}, "value_eps": {1: "N"}, "value": {0: "N"}},
                           lambda b, g: (latent((1 if shared else b,), g),
                                         uniform((horizon, b), g),
                                         torch.randn(horizon + 1, b, a_dim, generator=g),
                                         heads(horizon + 1, 2, g)),
                           reference=lambda z0, acts, eps, hs: trajectory_value(
                               reference, z0.expand(acts.shape[1], -1), acts, gamma, beta,
                               eps, hs)),  # expand: a no-op for per-sample rows
    }
    for spec in specs.values():
        spec.module.eval()
        if isinstance(spec.reference, nn.Module):
            spec.reference.eval()
    return specs


def export_graph(spec: GraphSpec, path: Path, opset: int = OPSET) -> None:
    """Trace ``spec.module`` to ONNX at ``path`` and run ``onnx.checker`` on it."""
    example = spec.make_inputs(3, torch.Generator().manual_seed(1))  # batch 3: nothing folds
    # eval mode, and the wrapper too: the exporter restores the wrapper's own mode afterwards,
    # recursively, and a wrapper left in training mode would switch on ShiftAug and dropout
    spec.module.eval()
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(spec.module, example, buf, dynamo=False, opset_version=opset,
                          input_names=spec.inputs, output_names=spec.outputs,
                          dynamic_axes=spec.dynamic_axes, do_constant_folding=True)
    model = onnx.load_from_string(buf.getvalue())
    _restore_unread_inputs(model, spec, example)
    onnx.checker.check_model(model, full_check=True)
    atomic_write(path, model.SerializeToString())


def _restore_unread_inputs(model: onnx.ModelProto, spec: GraphSpec,
                           example: tuple[Tensor, ...]) -> None:
    """Declare again the inputs the tracer dropped because the graph never reads them.

    The graphs' inputs are fixed per graph (``GRAPH_IO``) and every runtime feeds all of
    them; an unread input (``heads`` of an unrolled value graph) stays declared, in place.
    """
    declared = {i.name for i in model.graph.input}
    for pos, (name, value) in enumerate(zip(spec.inputs, example)):
        if name in declared:
            continue
        axes = spec.dynamic_axes.get(name, {})
        shape = [axes.get(d, size) for d, size in enumerate(value.shape)]
        elem = onnx.helper.np_dtype_to_tensor_dtype(value.numpy().dtype)
        model.graph.input.insert(pos, onnx.helper.make_tensor_value_info(name, elem, shape))


def check_graph(spec: GraphSpec, path: Path, batches: tuple[int, ...],
                seed: int = 0) -> dict[str, float]:
    """Difference between the ONNX graph and torch per batch size: the largest absolute
    difference, divided by the output's magnitude where that exceeds 1
    (:func:`wmil_core.runtime.bundle.scaled_diff`).

    ``raw:<batch>`` entries hold the plain largest absolute difference of every output
    (information only).
    """
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 4
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    out: dict[str, float] = {}
    for b in batches:
        inputs = spec.make_inputs(b, torch.Generator().manual_seed(seed + b))
        with torch.no_grad():
            ref = spec.reference(*inputs)
        ref = ref if isinstance(ref, tuple) else (ref,)
        try:
            got = sess.run(None, {n: x.numpy() for n, x in zip(spec.inputs, inputs)})
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ValueError(f"export check failed: {path.name} does not run at batch {b} "
                             f"({msg})") from None
        raw = max(max_abs_diff(g, r.numpy()) for g, r in zip(got, ref))
        out[str(b)] = (max(scaled_diff(g, r.numpy()) for g, r in zip(got, ref))
                       if spec.compare is None else spec.compare(got, ref))
        out[f"raw:{b}"] = raw
    return out


# -- the bundle ------------------------------------------------------------------------------------
def _obs_mode(keys: set[str]) -> str:
    if "image" not in keys:
        return "state"
    return "pixels+joints" if "joints" in keys else "pixels"


def build_manifest(agent: Any, meta: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest of ``agent`` without ``files`` and ``export`` (see DESIGN.md, Artefacts)."""
    unknown = sorted(set(meta) - META_KEYS)
    if unknown:
        known = ", ".join(sorted(META_KEYS))
        raise ValueError(f"meta: unknown key {unknown[0]!r} (known: {known})")
    for key in ("task", "action_low", "action_high"):
        if key not in meta:
            raise ValueError(f"meta: missing key {key!r}")
    shapes = {k: [int(s) for s in v] for k, v in agent.obs_shapes.items()}
    spec = {k: {"shape": shapes[k], "dtype": "uint8" if k == "image" else "float32"}
            for k in shapes}
    observation: dict[str, Any] = {"spec": spec,
                                   "joint_names": list(meta.get("joint_names") or [])}
    if "image" in shapes:
        h, _, c = shapes["image"]
        observation["image"] = {"size": h, "frames": c // 3}
    low = np.asarray(meta["action_low"], dtype=np.float64).reshape(-1)
    high = np.asarray(meta["action_high"], dtype=np.float64).reshape(-1)
    a_dim = int(agent.action_dim)
    if low.shape != (a_dim,) or high.shape != (a_dim,):
        raise ValueError(f"meta: action_low/action_high must have {a_dim} values")
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(low < high)):
        raise ValueError("meta: action bounds must be finite with action_low < action_high")
    cfg = agent.cfg
    return {
        "format_version": FORMAT_VERSION,
        "name": meta.get("name"),
        "task": meta["task"],
        "obs_mode": meta.get("obs_mode") or _obs_mode(set(shapes)),
        "observation": observation,
        "action": {"dim": a_dim, "low": low.tolist(), "high": high.tolist()},
        "planner": to_dict(cfg.planner),
        "mpc": bool(cfg.mpc),
        "gamma": float(agent.gamma),
        "beta": float(cfg.beta),
        "num_q": int(cfg.model.num_q),
        "latent_dim": int(cfg.model.latent_dim),
        "model": to_dict(cfg.model),
        "training": dict(meta.get("training") or {}),
        "source": meta.get("source"),
    }


def export_agent(agent: Any, out_dir: str | Path, meta: Mapping[str, Any],
                 batch_check: int = 64, overwrite: bool = False,
                 value_start: str = "shared", value_heads: str = "auto") -> Path:
    """Write ``agent`` (an ``IQMPC``) as a bundle at ``out_dir``; returns ``out_dir``.

    ``value_start``, ``value_heads``: the layout of value.onnx (see :func:`graph_specs`).

    ``meta``: ``task``, ``action_low``/``action_high`` (actuator units), ``joint_names``, and
    optionally ``name``, ``obs_mode``, ``training`` ({step, updates, evaluation}), ``source``.
    Every graph is checked against torch at batch 1 and ``batch_check``; a difference above
    1e-4, or any failure, raises and leaves no directory behind.
    """
    out_dir = Path(out_dir)
    if batch_check < 2:
        raise ValueError(f"batch_check: must be >= 2, got {batch_check}")
    manifest = build_manifest(agent, meta)
    manifest["name"] = manifest["name"] or out_dir.name
    # copies: the caller's model is left untouched (mode, device, weights)
    # the networks evaluation plans with: the averaged copy when the agent keeps one
    model = agent.deploy_model
    reference = copy.deepcopy(model).cpu().eval()
    horizon = agent.cfg.planner.horizon
    value_heads = resolve_value_heads(value_heads, model.cfg.num_q)
    specs = graph_specs(export_copy(model), reference, agent.obs_shapes,
                        float(agent.gamma), float(agent.cfg.beta), horizon, value_start,
                        value_heads)
    tmp = staging_dir(out_dir, overwrite)
    try:
        graphs: dict[str, Any] = {}
        diffs: dict[str, dict[str, float]] = {}
        for name, spec in specs.items():
            path = tmp / f"{name}.onnx"
            export_graph(spec, path)
            diffs[name] = check_graph(spec, path, (1, batch_check))
            graphs[name] = {"file": path.name, "inputs": spec.inputs, "outputs": spec.outputs}
        graphs["value"]["horizon"] = horizon
        graphs["value"]["start"] = value_start
        graphs["value"]["q_heads"] = value_heads
        checked = {n: {b: v for b, v in d.items() if not b.startswith("raw:")}
                   for n, d in diffs.items()}
        worst = max(max(d.values()) for d in checked.values())
        manifest["graphs"] = graphs
        manifest["export"] = {
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "opset": OPSET,
            "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
            "check": {"batches": [1, batch_check], "tolerance": TOLERANCE,
                      "measure": "max |onnx - torch| / max(1, max |torch|) (raw: unscaled)",
                      "max_abs_diff": diffs, "worst": worst, "passed": worst <= TOLERANCE},
        }
        if not worst <= TOLERANCE:
            bad = max(checked, key=lambda n: max(checked[n].values()))
            raise ValueError(f"export check failed: {bad}.onnx differs from torch by "
                             f"{max(checked[bad].values()):.3g} > {TOLERANCE:g}")
        seal_bundle(tmp, manifest, out_dir, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


# -- from a run directory or checkpoint ------------------------------------------------------------
def load_trained(run_or_checkpoint: str | Path) -> tuple[Any, dict[str, Path | None]]:
    """(trainer, {checkpoint, run}) of a run directory or checkpoint file, agent loaded.

    The trainer is built from the run's ``config.yaml`` (a loose checkpoint: the config saved
    in it) with a minimal behaviour buffer, nothing of which is restored; it gives the task's
    joint names and action bounds, the training step and the evaluation history.
    """
    from wmil_core.config import from_dict
    from wmil_core.presets import agent_config
    from wmil_core.train import TrainConfig, Trainer, load_run_config

    src = Path(run_or_checkpoint)
    ckpt = src if src.is_file() else src / "checkpoints" / "latest.pt"
    if not ckpt.is_file():
        raise ValueError(f"{ckpt}: no such checkpoint (expected a run directory or a .pt file)")
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        agent_state = state["agent"]
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is one user error
        raise ValueError(f"{ckpt}: corrupt or incompatible checkpoint ({exc})") from None
    run = run_of(ckpt)
    cfg = (load_run_config(run) if run is not None
           else from_dict(TrainConfig, dict(state["config"])))
    horizon = agent_config(cfg.preset, cfg.agent).planner.horizon
    cfg = dataclasses.replace(cfg, device="cpu", threads=0, buffer_size=horizon + 1)
    trainer = Trainer(cfg, run or ckpt.parent, progress=False)  # writes nothing there
    try:
        trainer.agent.load_state_dict(agent_state)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"{ckpt}: does not fit the run's agent config ({exc})") from None
    trainer.step = int(state.get("step", 0))
    trainer.history = list(state.get("history", []))
    return trainer, {"checkpoint": ckpt.resolve(), "run": run.resolve() if run else None}


def run_of(checkpoint: Path) -> Path | None:
    """The run directory of ``<run>/checkpoints/<file>.pt`` (None for a loose checkpoint)."""
    run = checkpoint.parent.parent
    if checkpoint.parent.name == "checkpoints" and (run / "config.yaml").is_file():
        return run
    return None


EVAL_KEYS = ("step", "episodes", "normalized_score", "return_mean", "return_std",
             "success_rate", "reward_correlation")


def export_bundle(run_or_checkpoint: str | Path, out_dir: str | Path, name: str | None = None,
                  batch_check: int = 64, overwrite: bool = False,
                  value_start: str = "shared", value_heads: str = "auto") -> Path:
    """Export the latest checkpoint of a run (or a checkpoint file) as a bundle at ``out_dir``.

    The manifest records the task, joint names, action bounds, training step, the last
    evaluation and the source checkpoint; see :func:`export_agent`.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:  # before the costly part
        raise ValueError(f"{out_dir}: exists already (overwrite it with --overwrite)")
    trainer, paths = load_trained(run_or_checkpoint)
    env = trainer.env
    last = trainer.history[-1] if trainer.history else None
    evaluation = {k: last[k] for k in EVAL_KEYS if k in last} if last else None
    meta = {
        "name": name or (paths["run"].name if paths["run"] else None),  # None: out_dir's
        "task": trainer.cfg.task,
        "obs_mode": trainer.obs_mode,
        "joint_names": list(env.joint_names),
        "action_low": np.asarray(env.action_low).tolist(),
        "action_high": np.asarray(env.action_high).tolist(),
        "training": {"step": trainer.step, "updates": trainer.agent.updates,
                     "evaluation": evaluation, "expert_return": trainer.expert_return},
        "source": {"run": str(paths["run"]) if paths["run"] else None,
                   "checkpoint": str(paths["checkpoint"])},
    }
    try:
        return export_agent(trainer.agent, out_dir, meta, batch_check, overwrite, value_start,
                            value_heads)
    finally:
        env.close()
        trainer.eval_env.close()
