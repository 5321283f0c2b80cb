"""The planner node's parameters: declarations and the checks applied when they are set.

Kept apart from the node so the table can be read (and tested against ``config/wmil.yaml``)
on its own; :func:`check_parameter`, :func:`check_bounds` and :func:`robot_joint_names` are
pure (the learner node uses the last one too).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rclpy.parameter import Parameter

from wmil.ros_io import ParamSpec
from wmil.watchdog import SAFE_MODES

TRIGGERS = ("timer", "observation")

PARAMETERS = (
    ParamSpec("model_dir", "", "model bundle directory (manifest.json and ONNX graphs)",
              read_only=True),
    ParamSpec("rate", 25.0, "planning rate with trigger timer, Hz", float_range=(0.01, 1000.0)),
    ParamSpec("trigger", "timer", "timer: plan at rate (real robots); observation: once per "
              "complete new observation set (lockstep simulation)", read_only=True),
    ParamSpec("image_topic", "/camera/image_raw", "camera topic (sensor_msgs/Image rgb8, bgr8 "
              "or mono8; with compressed_image, <topic>/compressed)", read_only=True),
    ParamSpec("joint_topic", "/joint_states", "joint state topic", read_only=True),
    ParamSpec("features_topic", "/wmil/features", "task feature topic (Float64MultiArray)",
              read_only=True),
    ParamSpec("command_topic", "/wmil/commands", "command topic (Float64MultiArray, actuator "
              "units: a forward_command_controller's <controller>/commands)", read_only=True),
    ParamSpec("episode_topic", "/wmil/episode", "episode ends from a simulator (JSON; restarts "
              "the frame stack and the warm start)", read_only=True),
    ParamSpec("model_update_topic", "/wmil/model_updates", "hot-swap requests (JSON {path, "
              "version, sha256})", read_only=True),
    ParamSpec("joint_names", Parameter.Type.STRING_ARRAY, "the robot's names of the model's "
              "joints, in the model's order (default: the model's joint names)", read_only=True),
    ParamSpec("compressed_image", False, "subscribe sensor_msgs/CompressedImage (jpeg, png)",
              read_only=True),
    ParamSpec("stale_timeout", 0.5, "an input older than this is stale: safe command, s",
              float_range=(0.001, 3600.0)),
    ParamSpec("safe_command", "zeros", "command while inputs are unusable: zeros or hold (the "
              "last planned command)"),
    ParamSpec("command_low", Parameter.Type.DOUBLE_ARRAY, "lower command clip, actuator units "
              "(default: the model's action bounds)"),
    ParamSpec("command_high", Parameter.Type.DOUBLE_ARRAY, "upper command clip, actuator units "
              "(default: the model's action bounds)"),
    ParamSpec("providers", Parameter.Type.STRING_ARRAY, "onnxruntime execution providers in "
              "order of preference (default: TensorRT, CUDA, CPU, as available)",
              read_only=True),
    ParamSpec("threads", 0, "onnxruntime intra-op threads (0: its default)", read_only=True,
              int_range=(0, 256)),
    ParamSpec("shards", 1, "value MPPI's samples in this many blocks on parallel onnxruntime "
              "sessions (2 with threads 1 suits a 2-core CPU)", read_only=True,
              int_range=(1, 64)),
    ParamSpec("samples", 0, "MPPI samples N (0: the model's)", read_only=True,
              int_range=(0, 1_000_000)),
    ParamSpec("iterations", 0, "MPPI iterations (0: the model's)", read_only=True,
              int_range=(0, 1000)),
    ParamSpec("horizon", 0, "MPPI horizon H, agent steps (0: the model's)", read_only=True,
              int_range=(0, 1000)),
)


# -- parameter checks (pure) ----------------------------------------------------------------------
def check_parameter(name: str, value: Any) -> str | None:
    """Why ``value`` is refused for parameter ``name``, or None (ranges are also declared)."""
    if name in ("rate", "stale_timeout"):
        if not isinstance(value, float) or not math.isfinite(value) or value <= 0:
            return f"must be a finite number > 0, got {value!r}"
    elif name == "trigger" and value not in TRIGGERS:
        return f"must be one of {', '.join(TRIGGERS)}, got {value!r}"
    elif name == "safe_command" and value not in SAFE_MODES:
        return f"must be one of {', '.join(SAFE_MODES)}, got {value!r}"
    elif name in ("command_low", "command_high") and value is not None:
        if not all(math.isfinite(v) for v in value):
            return "must be finite numbers"
    return None


def robot_joint_names(given: Sequence[str] | None, model: Sequence[str],
                      uses_joints: bool = True) -> list[str]:
    """The robot's names of the model's joints: ``given`` (parameter ``joint_names``, in the
    model's order) or the model's own; ValueError when the count does not match the model."""
    names = list(given or model)
    if uses_joints and len(names) != len(model):
        raise ValueError(f"joint_names: the model has {len(model)} joints {list(model)}, "
                         f"got {len(names)}")
    return names


def check_bounds(low: Sequence[float], high: Sequence[float], dim: int) -> str | None:
    """Why command bounds ``low``/``high`` do not fit ``dim`` actuators, or None."""
    for name, v in (("command_low", low), ("command_high", high)):
        if len(v) != dim:
            return f"{name}: needs {dim} values (one per actuator), got {len(v)}"
    if not all(lo < hi for lo, hi in zip(low, high)):
        return "command_low: must be below command_high for every actuator"
    return None
