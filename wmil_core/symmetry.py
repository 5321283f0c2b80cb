"""Demonstration augmentation by a task's declared symmetry.

A task whose dynamics do not change when the whole scene turns about the robot's base axis
(a vertical unlimited hinge: the planar reacher's shoulder, the Jaco's first joint) declares it
in its task file::

    symmetry: {rotation: {joint: shoulder, vectors: [to_target]}}
    symmetry: {rotation: {joint: jaco_arm/joint_1, vectors: [target - pinch],
                          points: [target, pinch]}}

Turning the scene by theta (counter-clockwise seen from above) turns each named feature
``vector`` (world-frame x, y, and z if it has one, which stays) by theta about the origin and
each ``point`` (a world-frame position) by theta about the hinge's anchor, and moves the hinge
by theta, or by -theta when its axis points down; anchor and direction are read from the
simulator. Velocities and actions do not change. Turns are uniform over the circle, or over
[-max_angle, max_angle] where the declaration (or ``TrainConfig.symmetry_max_angle``) sets
one: the Jaco's targets lie in a box in front of the arm, and whole-circle turns would spread
its 20 demos all around the base. Where the goal's angle about that axis is
uniform (reacher) the expert's state distribution is invariant under these turns; where it is
not (the Jaco's target box) the turns widen it. Either way a few demonstrations, each turned by
a random angle whenever it is sampled, stand for the same behaviour at goals all around
(``wmil train --demo-symmetry``; README: what it buys on reacher and the Jaco).
``--behaviour-symmetry`` turns behaviour batches the same way.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import mujoco
import numpy as np
import torch

from wmil_core.buffer import Batch


@dataclasses.dataclass(frozen=True)
class PlanarRotation:
    """Where a rotation about the base axis acts in the state observation."""

    joint: int  # index in ``joints`` of the rotated hinge's position
    vectors: tuple[int, ...]  # index in ``features`` of each vector's x (y follows)
    points: tuple[int, ...] = ()  # index in ``features`` of each world position's x
    center: tuple[float, float] = (0.0, 0.0)  # the hinge's anchor (world x, y)
    direction: float = 1.0  # the hinge's angle change per scene turn: +1 axis up, -1 down
    # turns are uniform in [-max_angle, max_angle] (radians); None: the whole circle
    max_angle: float | None = None

    def augment(self, batch: Batch, rng: np.random.Generator) -> Batch:
        """``batch`` with each sub-trajectory turned by its own uniform random angle."""
        n = batch.action.shape[1]
        turns = (rng.uniform(0.0, 2.0 * math.pi, n) if self.max_angle is None
                 else rng.uniform(-self.max_angle, self.max_angle, n))
        theta = torch.as_tensor(turns, dtype=torch.float32, device=batch.action.device)
        return self.rotate(batch, theta)

    def rotate(self, batch: Batch, theta: torch.Tensor) -> Batch:
        """``batch`` turned by ``theta`` (B,), one angle per sub-trajectory."""
        joints = batch.obs["joints"].clone()
        joints[..., self.joint] += self.direction * theta.to(joints.dtype)
        feats = batch.obs["features"].clone()
        c, s = torch.cos(theta), torch.sin(theta)
        for i in self.vectors:
            x, y = feats[..., i], feats[..., i + 1]
            feats[..., i], feats[..., i + 1] = c * x - s * y, s * x + c * y
        cx, cy = self.center
        for i in self.points:
            x, y = feats[..., i] - cx, feats[..., i + 1] - cy
            feats[..., i], feats[..., i + 1] = c * x - s * y + cx, s * x + c * y + cy
        obs = {**batch.obs, "joints": joints, "features": feats}
        return batch._replace(obs=obs)


def symmetry_of(env: Any, max_angle: float | None = None) -> PlanarRotation:
    """The symmetry ``env``'s task declares, resolved to observation indices; ``max_angle``
    (radians) overrides the declaration's range of turns.

    ValueError (one line) when the task declares none, the observation mode lacks the state
    keys it acts on, the declaration names a joint or feature the task does not publish, or
    the joint is not an unlimited hinge about a vertical axis.
    """
    spec = env.spec_
    name = spec.name
    decl = spec.symmetry
    if not decl:
        raise ValueError(f"demo_symmetry: task {name} declares no symmetry (sim/tasks/*.yaml)")
    obs_spec = env.obs_spec()
    if "joints" not in obs_spec or "features" not in obs_spec:
        raise ValueError(f"demo_symmetry: needs state observations (joints and features); "
                         f"{name} in this mode has {sorted(obs_spec)}")
    rot = decl["rotation"]
    if rot["joint"] not in env.joint_names:
        raise ValueError(f"{name}: symmetry joint {rot['joint']!r} is not among the published "
                         f"joints {env.joint_names}")
    joint = env.joint_names.index(rot["joint"])
    model, data = env.backend.model, env.backend.data
    jid = env.joint_ids[joint]
    if joint not in env.angle_joints():
        raise ValueError(f"{name}: symmetry joint {rot['joint']!r} is not an unlimited hinge")
    mujoco.mj_kinematics(model, data)  # world-frame anchor and axis of the current pose
    axis, anchor = np.asarray(data.xaxis[jid]), np.asarray(data.xanchor[jid])
    if abs(abs(float(axis[2])) - 1.0) > 1e-6:
        raise ValueError(f"{name}: symmetry joint {rot['joint']!r} turns about {axis.round(3)}, "
                         f"not the vertical axis")
    layout = env.backend.feature_layout()

    def starts(kind: str) -> tuple[int, ...]:
        out = []
        for key in rot.get(kind, []):
            if key not in layout:
                raise ValueError(f"{name}: symmetry {kind[:-1]} {key!r} is not among the "
                                 f"features {list(layout)}")
            first, size = layout[key]
            if size not in (2, 3):
                raise ValueError(f"{name}: symmetry {kind[:-1]} {key!r} has {size} components, "
                                 f"not 2 or 3 (x, y[, z])")
            out.append(first)
        return tuple(out)

    return PlanarRotation(joint=joint, vectors=starts("vectors"), points=starts("points"),
                          center=(float(anchor[0]), float(anchor[1])),
                          direction=1.0 if axis[2] > 0 else -1.0,
                          max_angle=rot.get("max_angle") if max_angle is None else max_angle)
