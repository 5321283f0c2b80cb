"""What the nodes need of a model bundle, read in one place (no rclpy).

:func:`model_info` is the only reader of manifest key names in the ROS layer: if the export
format renames a key, fix it here. :func:`make_planner` is the default planner factory of the
planner node; tests pass their own factory with the same signature.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

OBS_KEYS = ("joints", "features", "image")


class PlannerLike(Protocol):
    """What the planner node calls: one action in [-1, 1]^A per observation dict."""

    def act(self, obs: Mapping[str, np.ndarray], t0: bool = False) -> np.ndarray:
        """The action for ``obs`` (``t0``: first step of an episode, no warm start)."""


# (model_dir, providers, threads, settings) -> (planner, manifest dict)
PlannerFactory = Callable[
    [str, Sequence[str] | None, int | None, Mapping[str, int] | None],
    tuple[PlannerLike, Mapping[str, Any]],
]


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """The interface of a model: its observation keys and shapes, joints, action bounds."""

    task: str
    obs_mode: str
    obs_spec: dict[str, tuple[tuple[int, ...], str]]  # key -> (shape, dtype)
    joint_names: tuple[str, ...]
    image_size: int | None
    frames: int | None
    action_low: np.ndarray  # (A,) actuator units
    action_high: np.ndarray
    version: str
    precision: str = "float32"  # of the planning graphs ("int8": ``wmil quantize``)

    @property
    def action_dim(self) -> int:
        """A, the number of actuators."""
        return int(self.action_low.shape[0])

    @property
    def keys(self) -> tuple[str, ...]:
        """The observation keys the model needs, in wmil's order."""
        return tuple(k for k in OBS_KEYS if k in self.obs_spec)

    @property
    def features_dim(self) -> int:
        """Length of ``features`` (0 when the model does not use it)."""
        return self.obs_spec["features"][0][0] if "features" in self.obs_spec else 0

    def same_interface(self, other: ModelInfo) -> str | None:
        """Why ``other`` cannot replace this model in a running node, or None when it can."""
        if other.obs_spec != self.obs_spec:
            return f"observation spec {other.obs_spec} differs from the running {self.obs_spec}"
        if other.joint_names != self.joint_names:
            return f"joint names {list(other.joint_names)} differ from {list(self.joint_names)}"
        if other.action_dim != self.action_dim:
            return f"action dimension {other.action_dim} differs from {self.action_dim}"
        return None

    def zero_observation(self) -> dict[str, np.ndarray]:
        """An all-zero observation of the model's spec (for a dry run)."""
        return {k: np.zeros(shape, dtype=dtype) for k, (shape, dtype) in self.obs_spec.items()}


def _pick(m: Mapping[str, Any], nested: tuple[str, ...], flat: str) -> Any:
    """``m[nested[0]][nested[1]]...`` (the bundle format), else ``m[flat]``, else None."""
    node: Any = m
    for key in nested:
        if not isinstance(node, Mapping) or key not in node:
            node = None
            break
        node = node[key]
    return node if node is not None else m.get(flat)


def model_info(manifest: Mapping[str, Any], version: str | None = None) -> ModelInfo:
    """Read a bundle manifest (``wmil_core.runtime`` format, or flat keys) into a ModelInfo.

    ``version`` overrides the manifest's (e.g. from a model update message). Raises
    ValueError naming the first missing or malformed key.
    """
    spec = _pick(manifest, ("observation", "spec"), "obs_spec")
    if not isinstance(spec, Mapping) or not spec:
        raise ValueError("manifest: no observation spec (observation.spec)")
    obs_spec: dict[str, tuple[tuple[int, ...], str]] = {}
    for key, entry in spec.items():
        if key not in OBS_KEYS:
            raise ValueError(f"manifest: unknown observation key {key!r}")
        try:
            obs_spec[key] = (tuple(int(s) for s in entry["shape"]), str(entry["dtype"]))
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"manifest: observation.spec.{key} needs shape and dtype") from None
    names = _pick(manifest, ("observation", "joint_names"), "joint_names") or []
    size = _pick(manifest, ("observation", "image", "size"), "image_size")
    frames = _pick(manifest, ("observation", "image", "frames"), "frames")
    if "image" in obs_spec:
        shape = obs_spec["image"][0]
        size = int(size) if size is not None else shape[0]
        frames = int(frames) if frames is not None else shape[2] // 3
    low = _pick(manifest, ("action", "low"), "action_low")
    high = _pick(manifest, ("action", "high"), "action_high")
    if low is None or high is None:
        raise ValueError("manifest: no action bounds (action.low, action.high)")
    low_a, high_a = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    if low_a.ndim != 1 or low_a.shape != high_a.shape or not np.all(low_a < high_a):
        raise ValueError("manifest: action.low and action.high must be equal-length, low < high")
    if version is None:
        found = _pick(manifest, ("training", "step"), "version")
        version = "unknown" if found is None else str(found)
    return ModelInfo(
        task=str(manifest.get("task", "")), obs_mode=str(manifest.get("obs_mode", "")),
        obs_spec=obs_spec, joint_names=tuple(str(n) for n in names),
        image_size=int(size) if size is not None else None,
        frames=int(frames) if frames is not None else None,
        action_low=low_a, action_high=high_a, version=str(version),
        precision=str(manifest.get("precision", "float32")),
    )


def read_manifest(model_dir: str | Path) -> dict[str, Any]:
    """The JSON of ``<model_dir>/manifest.json`` (no validation; see ``load_bundle``)."""
    path = Path(model_dir)
    path = path if path.name == "manifest.json" else path / "manifest.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read the model manifest ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def manifest_sha256(model_dir: str | Path) -> str:
    """Hex sha256 of the bundle's ``manifest.json`` (which pins every graph by its hash)."""
    path = Path(model_dir)
    path = path if path.name == "manifest.json" else path / "manifest.json"
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it ({exc})") from None


def make_planner(model_dir: str, providers: Sequence[str] | None = None,
                 threads: int | None = None, settings: Mapping[str, int] | None = None
                 ) -> tuple[PlannerLike, Mapping[str, Any]]:
    """Load the bundle at ``model_dir`` and build its onnxruntime planner.

    ``settings`` overrides planner fields by node parameter name (``samples``,
    ``iterations``, ``horizon``; 0 or missing keeps the bundle's) and sets ``shards`` (sample
    blocks valued in parallel, see :class:`wmil_core.runtime.Planner`). Returns the planner
    and the manifest; a bad bundle or setting raises ValueError naming it.
    """
    from wmil_core.runtime import load_bundle, planner_for  # torch-free; lazy

    bundle = load_bundle(model_dir)
    planner = planner_for(bundle, providers, threads or None, settings)
    return planner, bundle.manifest
