"""Torch-free deployment: load an exported model bundle, plan with MPPI on onnxruntime + numpy.

Imports numpy and onnxruntime only (never torch), so it runs where the ROS planner node runs::

    from wmil_core.runtime import Planner, load_bundle

    planner = Planner(load_bundle("models/reacher"))
    action = planner.act({"joints": joints, "features": features}, t0=True)  # [-1, 1]^A
    command = planner.to_actuator(action)  # actuator units
"""

from wmil_core.runtime.bundle import FORMAT_VERSION, Bundle, ObsKey, load_bundle, sha256_file
from wmil_core.runtime.flops import planner_flops
from wmil_core.runtime.mppi import (
    PlannerConfig,
    PlanNoise,
    PlanResult,
    as_noise,
    plan,
    sample_noise,
    trajectory_value,
)
from wmil_core.runtime.planner import (
    OrtModel,
    Planner,
    check_obs,
    default_providers,
    planner_for,
    to_actuator,
    with_settings,
)

__all__ = [
    "FORMAT_VERSION",
    "Bundle",
    "ObsKey",
    "OrtModel",
    "PlanNoise",
    "PlanResult",
    "Planner",
    "PlannerConfig",
    "as_noise",
    "check_obs",
    "default_providers",
    "load_bundle",
    "plan",
    "planner_flops",
    "planner_for",
    "sample_noise",
    "sha256_file",
    "to_actuator",
    "trajectory_value",
    "with_settings",
]
