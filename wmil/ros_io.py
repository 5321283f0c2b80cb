"""Small ROS helpers shared by the wmil nodes: QoS, clocks, stamps, parameters, diagnostics."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray, Header

from wmil_core.messages import (
    compressed_to_array,
    image_fields,
    image_to_array,
    joint_state_fields,
    resize_frame,
)

SENSOR_QOS: QoSProfile = qos_profile_sensor_data  # camera images: best effort, keep last 5
RELIABLE_QOS = QoSProfile(depth=10)  # joints, features, commands, events: reliable, last 10

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


def steady_clock() -> Clock:
    """A monotonic wall clock for timers that must not follow /clock (sim time)."""
    return Clock(clock_type=ClockType.STEADY_TIME)


def to_stamp(seconds: float) -> Time:
    """``seconds`` as a builtin_interfaces/Time (rounded to the nanosecond)."""
    ns = int(round(seconds * 1e9))
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def from_stamp(stamp: Any) -> float:
    """A builtin_interfaces/Time in seconds."""
    return int(stamp.sec) + int(stamp.nanosec) * 1e-9


def image_msg(rgb: np.ndarray, stamp: float, frame_id: str = "camera") -> Image:
    """An rgb8 Image of ``rgb`` (H, W, 3 uint8) stamped ``stamp`` seconds."""
    return Image(header=Header(stamp=to_stamp(stamp), frame_id=frame_id), **image_fields(rgb))


def joint_state_msg(names: Sequence[str], joints: np.ndarray, stamp: float) -> JointState:
    """A JointState of ``joints`` (positions then velocities of ``names``)."""
    return JointState(header=Header(stamp=to_stamp(stamp)), **joint_state_fields(names, joints))


def array_msg(values: np.ndarray) -> Float64MultiArray:
    """A Float64MultiArray holding ``values`` flattened, without layout (the command format)."""
    return Float64MultiArray(data=np.asarray(values, dtype=np.float64).reshape(-1).tolist())


def camera_subscription(topic: str, compressed: bool) -> tuple[type, str]:
    """The message type and topic of a camera: ``<topic>/compressed`` for CompressedImage."""
    if not compressed:
        return Image, topic
    return CompressedImage, topic if topic.endswith("/compressed") else topic + "/compressed"


def camera_frame(msg: Image | CompressedImage, size: int | None) -> np.ndarray:
    """An Image or CompressedImage as an RGB frame resized to ``size`` (ValueError if bad)."""
    rgb = compressed_to_array(msg) if isinstance(msg, CompressedImage) else image_to_array(msg)
    return resize_frame(rgb, int(size or rgb.shape[0]))


# -- parameters -----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """One node parameter: its default (or a ``Parameter.Type`` when unset), documentation.

    Attributes:
        name: parameter name.
        default: the default value, or a ``Parameter.Type`` for a typed parameter that is
            unset by default (its value reads as None).
        description: one line, with units.
        read_only: set only at start (launch file, YAML, command line).
        float_range: inclusive (low, high) for double parameters.
        int_range: inclusive (low, high) for integer parameters.
    """

    name: str
    default: Any
    description: str
    read_only: bool = False
    float_range: tuple[float, float] | None = None
    int_range: tuple[int, int] | None = None

    def descriptor(self) -> ParameterDescriptor:
        """The ParameterDescriptor announced for this parameter."""
        d = ParameterDescriptor(name=self.name, description=self.description,
                                read_only=self.read_only)
        if self.float_range is not None:
            lo, hi = self.float_range
            d.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi))]
        if self.int_range is not None:
            lo, hi = self.int_range
            d.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=1)]
        return d


def declare(node: Node, specs: Sequence[ParamSpec]) -> dict[str, Any]:
    """Declare every parameter of ``specs`` on ``node``; returns name -> value (None: unset)."""
    values = {}
    for s in specs:
        p = node.declare_parameter(s.name, s.default, s.descriptor())
        values[s.name] = p.value
    return values


def param_type_name(default: Any) -> str:
    """A ParamSpec default's ROS type name (``double``, ``string[]``, ...), for checks."""
    if isinstance(default, Parameter.Type):
        t = default
    else:
        t = Parameter.Type.from_parameter_value(default)
    return {
        Parameter.Type.BOOL: "bool", Parameter.Type.INTEGER: "integer",
        Parameter.Type.DOUBLE: "double", Parameter.Type.STRING: "string",
        Parameter.Type.DOUBLE_ARRAY: "double[]", Parameter.Type.STRING_ARRAY: "string[]",
        Parameter.Type.INTEGER_ARRAY: "integer[]", Parameter.Type.BOOL_ARRAY: "bool[]",
    }.get(t, str(t))


# -- diagnostics ----------------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def diagnostics(node: Node, name: str, level: bytes, message: str,
                values: Mapping[str, Any], hardware_id: str = "") -> DiagnosticArray:
    """A DiagnosticArray of one status (``level``: OK, WARN or ERROR), stamped by ``node``."""
    status = DiagnosticStatus(
        level=level, name=name, message=message,
        hardware_id=hardware_id,
        values=[KeyValue(key=str(k), value=_fmt(v)) for k, v in values.items()])
    return DiagnosticArray(header=Header(stamp=node.get_clock().now().to_msg()), status=[status])
