"""Model bundles: ``manifest.json`` plus ONNX graphs, validated before anything runs.

A bundle directory holds ``manifest.json`` (format version, task, observation spec with joint
names and image size, action bounds, planner defaults, gamma, beta, the export self-check, and
the sha256 of every other file) and the graphs ``encoder.onnx``, ``dynamics.onnx``,
``q.onnx``, ``pi.onnx`` and, optionally, the fused ``value.onnx``. :func:`load_bundle` refuses
a bundle whose format, hashes or observation spec do not check out, with one line naming the
file or key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from wmil_core.machine import int8_saturates
from wmil_core.runtime.mppi import PlannerConfig

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
OBS_KEYS = ("joints", "features", "image")
OBS_DTYPES = {"joints": "float32", "features": "float32", "image": "uint8"}
OBS_MODES = ("state", "pixels", "pixels+joints")
REQUIRED_GRAPHS = ("encoder", "dynamics", "q", "pi")
OPTIONAL_GRAPHS = ("value",)
GRAPH_IO: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {  # inputs, outputs
    "dynamics": (("z", "a"), ("z_next",)),
    "q": (("z", "a", "heads"), ("q",)),
    "pi": (("z", "eps"), ("action", "log_pi", "mean_action")),
    "value": (("z0", "actions", "value_eps", "heads"), ("value",)),
}
VALUE_STARTS = ("per_sample", "shared")  # graphs.value.start (absent: per_sample)
VALUE_HEADS = ("gathered", "unrolled")  # graphs.value.q_heads (absent: gathered)
PRECISIONS = ("float32", "int8")  # precision: of the planning graphs (absent: float32)
REQUIRED_KEYS = ("format_version", "task", "obs_mode", "observation", "action", "planner",
                 "gamma", "beta", "num_q", "latent_dim", "graphs", "files")


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's contents."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |a - b| in float64 (inf for different shapes; NaN in both places counts 0)."""
    if a.shape != b.shape:
        return float("inf")
    both_nan = np.isnan(a) & np.isnan(b)
    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    d[both_nan] = 0.0
    return float(d.max()) if d.size else 0.0


def scaled_diff(got: np.ndarray, ref: np.ndarray) -> float:
    """max |got - ref| / max(1, max |ref|): the absolute difference for outputs within [-1, 1],
    relative above. A trained critic's values reach the hundreds, where float32 itself
    resolves only ~3e-5 and two correct implementations differ by a few 1e-4."""
    scale = max(1.0, float(np.abs(ref.astype(np.float64)).max())) if ref.size else 1.0
    return max_abs_diff(got, ref) / scale


@dataclasses.dataclass(frozen=True)
class ObsKey:
    """One observation key of the spec: its shape (without batch axis) and dtype."""

    shape: tuple[int, ...]
    dtype: str


@dataclasses.dataclass(frozen=True)
class Bundle:
    """A validated model bundle; ``graphs`` holds the bytes whose hashes were checked."""

    path: Path
    manifest: dict[str, Any]
    manifest_sha256: str
    obs_spec: dict[str, ObsKey]
    action_dim: int
    action_low: np.ndarray  # (A,) actuator units
    action_high: np.ndarray
    planner: PlannerConfig
    gamma: float
    beta: float
    num_q: int
    latent_dim: int
    mpc: bool  # False: the agent acts with its policy prior, not MPPI
    graphs: dict[str, bytes]  # name (encoder, dynamics, q, pi[, value]) -> ONNX bytes
    value_horizon: int | None  # the horizon baked into value.onnx (None: no fused graph)
    # value.onnx's z0: "shared" (1, L), the start every MPPI sample shares, whose work the
    # graph does once; "per_sample" (N, L), one row per sample (bundles before 2026-11-30)
    value_start: str = "per_sample"
    # value.onnx's Q heads: "gathered" (the two ``heads`` names, batched matmuls) or "unrolled"
    # (two-head ensembles: both heads, each its own chain of fused operators; ``heads`` unread)
    value_heads: str = "gathered"
    # "int8": the planning graphs were quantised (``wmil quantize``), off the torch reference
    precision: str = "float32"

    @property
    def name(self) -> str:
        """The bundle's name (manifest ``name``, else its directory's)."""
        return str(self.manifest.get("name") or self.path.name)

    @property
    def joint_names(self) -> list[str]:
        """Joint names, in the order of ``joints`` (positions, then velocities)."""
        return list(self.manifest["observation"].get("joint_names", []))


def _get(data: Mapping[str, Any], key: str, where: str) -> Any:
    if not isinstance(data, Mapping) or key not in data:
        raise ValueError(f"{where}: missing key {key!r}")
    return data[key]


def _positive_ints(value: Any) -> bool:
    return (isinstance(value, list) and len(value) > 0
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value))


def check_obs_spec(observation: Mapping[str, Any], obs_mode: str, where: str) -> dict[str, ObsKey]:
    """Validate the manifest's ``observation`` section; returns key -> :class:`ObsKey`."""
    spec = _get(observation, "spec", where)
    if not isinstance(spec, Mapping) or not spec:
        raise ValueError(f"{where}: observation.spec must be a non-empty mapping")
    out: dict[str, ObsKey] = {}
    for key, entry in spec.items():
        name = f"observation.spec.{key}"
        if key not in OBS_KEYS:
            raise ValueError(f"{where}: {name}: unknown observation key (known: "
                             f"{', '.join(OBS_KEYS)})")
        shape = _get(entry, "shape", f"{where}: {name}")
        dtype = _get(entry, "dtype", f"{where}: {name}")
        if not _positive_ints(shape):
            raise ValueError(f"{where}: {name}.shape must be a list of positive integers")
        if dtype != OBS_DTYPES[key]:
            raise ValueError(f"{where}: {name}.dtype is {dtype!r}, must be {OBS_DTYPES[key]!r}")
        if len(shape) != (3 if key == "image" else 1):
            raise ValueError(f"{where}: {name}.shape {shape} has the wrong rank")
        out[key] = ObsKey(tuple(shape), dtype)
    if obs_mode not in OBS_MODES:
        raise ValueError(f"{where}: obs_mode {obs_mode!r} not in {list(OBS_MODES)}")
    want = {"state": None, "pixels": {"image"}, "pixels+joints": {"image", "joints"}}[obs_mode]
    keys = set(out)
    if (want is None and "image" in keys) or (want is not None and keys != want):
        raise ValueError(f"{where}: observation.spec keys {sorted(keys)} do not fit obs_mode "
                         f"{obs_mode!r}")
    if "image" in out:
        image = _get(observation, "image", where)
        size = _get(image, "size", f"{where}: observation.image")
        frames = _get(image, "frames", f"{where}: observation.image")
        if out["image"].shape != (size, size, 3 * frames):
            raise ValueError(f"{where}: observation.spec.image.shape {list(out['image'].shape)} "
                             f"does not match observation.image (size {size}, frames {frames})")
    if "joints" in out:
        names = _get(observation, "joint_names", where)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"{where}: observation.joint_names must be a list of strings")
        if out["joints"].shape != (2 * len(names),):
            raise ValueError(f"{where}: observation.spec.joints.shape {list(out['joints'].shape)}"
                             f" is not 2 x {len(names)} joint_names (positions, velocities)")
    return out


def _check_action(action: Mapping[str, Any], where: str) -> tuple[int, np.ndarray, np.ndarray]:
    dim = _get(action, "dim", f"{where}: action")
    if not isinstance(dim, int) or dim < 1:
        raise ValueError(f"{where}: action.dim must be a positive integer")
    bounds = []
    for side in ("low", "high"):
        v = _get(action, side, f"{where}: action")
        if (not isinstance(v, list) or len(v) != dim
                or not all(isinstance(x, (int, float)) and math.isfinite(x) for x in v)):
            raise ValueError(f"{where}: action.{side} must be {dim} finite numbers")
        bounds.append(np.asarray(v, dtype=np.float64))
    low, high = bounds
    if not np.all(low < high):
        raise ValueError(f"{where}: action.low must be below action.high")
    return dim, low, high


def _check_files(root: Path, files: Any, where: str) -> dict[str, bytes]:
    """Read every listed file and check its sha256; returns name -> bytes."""
    if not isinstance(files, Mapping) or not files:
        raise ValueError(f"{where}: files must map file names to sha256 digests")
    data: dict[str, bytes] = {}
    for fname, digest in files.items():
        if (not isinstance(fname, str) or Path(fname).name != fname or fname in ("", ".", "..")
                or fname == MANIFEST):
            raise ValueError(f"{where}: files: {fname!r} is not a plain file name of the bundle")
        path = root / fname
        if not path.is_file():
            raise ValueError(f"{path}: listed in the manifest but missing")
        raw = path.read_bytes()
        if sha256_bytes(raw) != digest:
            raise ValueError(f"{path}: sha256 does not match the manifest (modified or corrupt)")
        data[fname] = raw
    return data


def load_bundle(path: str | Path) -> Bundle:
    """Load and validate a bundle directory (or its ``manifest.json``).

    Raises ValueError, one line naming the file or key, for a missing or malformed manifest, an
    unknown format version, a missing, modified or unlisted graph, or an inconsistent spec.
    """
    path = Path(path)
    root = path.parent if path.name == MANIFEST else path
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise ValueError(f"{mpath}: no such file (not a model bundle)")
    raw = mpath.read_bytes()
    try:
        m = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{mpath}: not valid JSON ({exc})") from None
    where = str(mpath)
    if not isinstance(m, dict):
        raise ValueError(f"{where}: expected a JSON object")
    version = _get(m, "format_version", where)
    if version != FORMAT_VERSION:
        raise ValueError(f"{where}: format_version {version!r}, this runtime reads "
                         f"{FORMAT_VERSION}")
    for key in REQUIRED_KEYS:
        _get(m, key, where)
    obs_spec = check_obs_spec(m["observation"], m["obs_mode"], where)
    dim, low, high = _check_action(m["action"], where)
    planner_data = m["planner"]
    if not isinstance(planner_data, Mapping):
        raise ValueError(f"{where}: planner must be a mapping")
    fields = {f.name for f in dataclasses.fields(PlannerConfig)}
    for key in sorted(fields ^ set(planner_data)):
        what = "missing" if key in fields else "unknown"
        raise ValueError(f"{where}: planner.{key}: {what} field")
    try:
        planner = PlannerConfig(**planner_data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: planner.{exc}") from None
    gamma, beta, num_q, latent = m["gamma"], m["beta"], m["num_q"], m["latent_dim"]
    if not isinstance(gamma, (int, float)) or not 0 < gamma < 1:
        raise ValueError(f"{where}: gamma must be in (0, 1), got {gamma!r}")
    if not isinstance(beta, (int, float)) or not beta >= 0:
        raise ValueError(f"{where}: beta must be >= 0, got {beta!r}")
    if not isinstance(num_q, int) or num_q < 2:
        raise ValueError(f"{where}: num_q must be an integer >= 2, got {num_q!r}")
    if not isinstance(latent, int) or latent < 1:
        raise ValueError(f"{where}: latent_dim must be a positive integer, got {latent!r}")
    contents = _check_files(root, m["files"], where)
    graphs_meta = m["graphs"]
    if not isinstance(graphs_meta, Mapping):
        raise ValueError(f"{where}: graphs must be a mapping")
    graphs: dict[str, bytes] = {}
    for name in REQUIRED_GRAPHS + OPTIONAL_GRAPHS:
        if name not in graphs_meta:
            if name in REQUIRED_GRAPHS:
                raise ValueError(f"{where}: graphs: missing key {name!r}")
            continue
        fname = _get(graphs_meta[name], "file", f"{where}: graphs.{name}")
        if fname not in contents:
            raise ValueError(f"{where}: graphs.{name}.file {fname!r} is not listed in files")
        graphs[name] = contents[fname]
    value_horizon, value_start, value_heads = None, "per_sample", "gathered"
    if "value" in graphs:
        value_horizon = _get(graphs_meta["value"], "horizon", f"{where}: graphs.value")
        if not isinstance(value_horizon, int) or value_horizon < 1:
            raise ValueError(f"{where}: graphs.value.horizon must be a positive integer")
        value_start = graphs_meta["value"].get("start", "per_sample")
        if value_start not in VALUE_STARTS:
            raise ValueError(f"{where}: graphs.value.start must be one of "
                             f"{', '.join(VALUE_STARTS)}, got {value_start!r}")
        value_heads = graphs_meta["value"].get("q_heads", "gathered")
        if value_heads not in VALUE_HEADS:
            raise ValueError(f"{where}: graphs.value.q_heads must be one of "
                             f"{', '.join(VALUE_HEADS)}, got {value_heads!r}")
        if value_heads == "unrolled" and num_q != 2:
            raise ValueError(f"{where}: graphs.value.q_heads unrolled needs num_q 2, "
                             f"got {num_q}")
    precision = m.get("precision", "float32")
    if precision not in PRECISIONS:
        raise ValueError(f"{where}: precision must be one of {', '.join(PRECISIONS)}, "
                         f"got {precision!r}")
    if precision == "int8":
        _warn_if_int8_may_saturate(where, m.get("quantization") or {})
    return Bundle(
        path=root, manifest=m, manifest_sha256=sha256_bytes(raw), obs_spec=obs_spec,
        action_dim=dim, action_low=low, action_high=high, planner=planner, gamma=float(gamma),
        beta=float(beta), num_q=num_q, latent_dim=latent, mpc=bool(m.get("mpc", True)),
        graphs=graphs, value_horizon=value_horizon, value_start=value_start,
        value_heads=value_heads, precision=precision,
    )


def _warn_if_int8_may_saturate(where: str, q: Mapping[str, Any]) -> None:
    """Warn when full-range int8 weights, chosen on a CPU whose products cannot saturate (or
    on an unknown one), are loaded on an x86 CPU without VNNI, where they can."""
    bits = q.get("weight_bits") or {g: 8 for g in q.get("graphs", [])}
    full = sorted(g for g, b in bits.items() if b == 8)
    checked_here = (q.get("quantized_on") or {}).get("int8_saturates") is True
    if full and not checked_here and int8_saturates():
        warnings.warn(f"{where}: {', '.join(full)} carry full-range int8 weights chosen on a CPU "
                      "with VNNI (or an unknown one), and this CPU has no VNNI, so their products "
                      "can saturate: re-quantise the float bundle here with `wmil quantize`",
                      RuntimeWarning, stacklevel=3)


def seal_bundle(tmp: Path, manifest: dict[str, Any], out_dir: Path, overwrite: bool) -> None:
    """Finish a bundle staged in ``tmp``: hash its files into ``manifest["files"]``, write the
    manifest, check that :func:`load_bundle` accepts it, and rename it into place as
    ``out_dir`` (an old one, with ``overwrite``, is replaced only then)."""
    from wmil_core.config import atomic_write, replace_dir

    manifest["files"] = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())
                         if p.name != MANIFEST}
    atomic_write(tmp / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    load_bundle(tmp)  # the runtime must accept what was written
    replace_dir(tmp, out_dir, overwrite)
