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
(``wmil train --demo-symmetry``; what it buys on reacher and the Jaco:
docs/iqmpc-results.md and docs/imitation-benchmark.md).
``--behaviour-symmetry`` turns behaviour batches the same way.

A planar arm whose links are mirror-symmetric about the vertical plane through its base axis
and its first link (the reacher) declares the hinges that reflection negates as well::

    symmetry: {rotation: {...}, mirror: {joints: [shoulder, wrist]}}

Reflecting the scene in that plane (the base hinge's zero direction, read from the simulator)
negates each named hinge's angle and velocity and the torque of each actuator on them, and
reflects each ``vector`` and ``point`` in the plane. With ``TrainConfig.symmetry_mirror``
(``--symmetry-mirror``) every sub-trajectory is reflected with probability 1/2 before its
turn: the augmentation then covers rotations and reflections alike. For the reacher this
shows each demonstrated elbow fold bent the other way too.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import mujoco
import numpy as np
import torch

from wmil_core.buffer import Batch
from wmil_core.world_model import turn_features


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
    # reflection (empty: none): indices in ``joints`` it negates (the mirrored hinges' angles
    # and velocities), indices of the actions it negates, and the world angle of the mirror
    # plane's horizontal direction (the base hinge's zero direction)
    mirror_joints: tuple[int, ...] = ()
    mirror_actions: tuple[int, ...] = ()
    mirror_angle: float = 0.0

    def augment(self, batch: Batch, rng: np.random.Generator) -> Batch:
        """``batch`` with each sub-trajectory turned by its own uniform random angle, and
        first reflected with probability 1/2 where the symmetry has a mirror."""
        n = batch.action.shape[1]
        turns = (rng.uniform(0.0, 2.0 * math.pi, n) if self.max_angle is None
                 else rng.uniform(-self.max_angle, self.max_angle, n))
        theta = torch.as_tensor(turns, dtype=torch.float32, device=batch.action.device)
        if self.mirror_joints:
            flip = torch.as_tensor(rng.random(n) < 0.5, device=batch.action.device)
            batch = self.reflect(batch, flip)
        return self.rotate(batch, theta)

    def reflect(self, batch: Batch, flip: torch.Tensor) -> Batch:
        """``batch`` with the sub-trajectories where ``flip`` (B,) is true reflected in the
        mirror plane: mirrored hinges' angles, velocities and torques negated, vectors
        reflected about the origin and points about the hinge's anchor."""
        if not self.mirror_joints:
            raise ValueError("reflect: this symmetry declares no mirror")
        sign = 1.0 - 2.0 * flip.to(batch.action.dtype)  # -1 where reflected
        joints = batch.obs["joints"].clone()
        idx = list(self.mirror_joints)
        joints[..., idx] = joints[..., idx] * sign.to(joints.dtype)[:, None]
        action = batch.action.clone()
        if self.mirror_actions:
            a = list(self.mirror_actions)
            action[..., a] = action[..., a] * sign[:, None]
        feats = batch.obs["features"].clone()
        c2, s2 = math.cos(2.0 * self.mirror_angle), math.sin(2.0 * self.mirror_angle)
        f = flip.to(torch.bool)

        def mirrored(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return (torch.where(f, c2 * x + s2 * y, x), torch.where(f, s2 * x - c2 * y, y))

        for i in self.vectors:
            feats[..., i], feats[..., i + 1] = mirrored(feats[..., i], feats[..., i + 1])
        cx, cy = self.center
        for i in self.points:
            x, y = mirrored(feats[..., i] - cx, feats[..., i + 1] - cy)
            feats[..., i], feats[..., i + 1] = x + cx, y + cy
        obs = {**batch.obs, "joints": joints, "features": feats}
        return batch._replace(obs=obs, action=action)

    def rotate(self, batch: Batch, theta: torch.Tensor) -> Batch:
        """``batch`` turned by ``theta`` (B,), one angle per sub-trajectory."""
        joints = batch.obs["joints"].clone()
        joints[..., self.joint] += self.direction * theta.to(joints.dtype)
        feats = turn_features(batch.obs["features"], theta, self.vectors, self.points,
                              self.center)
        obs = {**batch.obs, "joints": joints, "features": feats}
        return batch._replace(obs=obs)


def symmetry_of(env: Any, max_angle: float | None = None, mirror: bool = False,
                option: str = "demo_symmetry") -> PlanarRotation:
    """The symmetry ``env``'s task declares, resolved to observation indices; ``max_angle``
    (radians) overrides the declaration's range of turns; ``mirror`` adds the declared
    reflection (:meth:`PlanarRotation.reflect`); ``option`` names the setting that asked, in
    errors.

    ValueError (one line) when the task declares none, the observation mode lacks the state
    keys it acts on, the declaration names a joint or feature the task does not publish, or
    the joint is not an unlimited hinge about a vertical axis.
    """
    spec = env.spec_
    name = spec.name
    decl = spec.symmetry
    if not decl:
        raise ValueError(f"{option}: task {name} declares no symmetry (sim/tasks/*.yaml)")
    if spec.controller != "joint":
        raise ValueError(f"{option}: task {name}'s actions are {spec.controller} velocities, "
                         f"which a turn of the scene would turn too; the symmetry turns states "
                         f"only")
    obs_spec = env.obs_spec()
    if "joints" not in obs_spec or "features" not in obs_spec:
        raise ValueError(f"{option}: needs state observations (joints and features); "
                         f"{name} in this mode has {sorted(obs_spec)}")
    rot = decl["rotation"]
    joint = _published_joint(env, rot["joint"], "symmetry")
    model, data = env.backend.model, env.backend.data
    jid = env.joint_ids[joint]
    if joint not in env.angle_joints():
        raise ValueError(f"{name}: symmetry joint {rot['joint']!r} is not an unlimited hinge")
    mujoco.mj_kinematics(model, data)  # world-frame anchor and axis of the current pose
    _check_vertical(env, data, joint, "symmetry")
    axis, anchor = np.asarray(data.xaxis[jid]), np.asarray(data.xanchor[jid])
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

    mirrored = _mirror_of(env, decl, joint) if mirror else {}
    return PlanarRotation(joint=joint, vectors=starts("vectors"), points=starts("points"),
                          center=(float(anchor[0]), float(anchor[1])),
                          direction=1.0 if axis[2] > 0 else -1.0,
                          max_angle=rot.get("max_angle") if max_angle is None else max_angle,
                          **mirrored)


def _published_joint(env: Any, jname: str, role: str) -> int:
    """Index of hinge ``jname`` in ``env``'s published joints (ValueError naming it if absent;
    ``role``: symmetry or mirror, for the message)."""
    if jname not in env.joint_names:
        raise ValueError(f"{env.spec_.name}: {role} joint {jname!r} is not among the published "
                         f"joints {env.joint_names}")
    return env.joint_names.index(jname)


def _check_vertical(env: Any, data: Any, j: int, role: str) -> None:
    """ValueError unless published joint ``j`` turns about the vertical axis in ``data``'s
    kinematics (``role``: symmetry or mirror, for the message)."""
    axis = np.asarray(data.xaxis[env.joint_ids[j]])
    if abs(abs(float(axis[2])) - 1.0) > 1e-6:
        raise ValueError(f"{env.spec_.name}: {role} joint {env.joint_names[j]!r} turns about "
                         f"{axis.round(3)}, not the vertical axis")


def _mirror_of(env: Any, decl: dict[str, Any], joint: int) -> dict[str, Any]:
    """``PlanarRotation``'s mirror fields for the declared ``mirror`` (one-line ValueError
    when there is none, or a named hinge is unpublished or not about the vertical axis, the
    base hinge ``joint`` is not among them, or a negated action's range is not symmetric)."""
    name = env.spec_.name
    if "mirror" not in decl:
        raise ValueError(f"symmetry_mirror: task {name} declares no mirror (sim/tasks/*.yaml)")
    model = env.backend.model
    data = mujoco.MjData(model)
    data.qpos[:] = env.backend.data.qpos
    n = len(env.joint_names)
    idx = []
    for jname in decl["mirror"]["joints"]:
        j = _published_joint(env, jname, "mirror")
        if model.jnt_type[env.joint_ids[j]] != mujoco.mjtJoint.mjJNT_HINGE:
            raise ValueError(f"{name}: mirror joint {jname!r} is not a hinge")
        idx.append(j)
    if joint not in idx:
        raise ValueError(f"{name}: the mirror's joints must include the rotation joint "
                         f"{env.joint_names[joint]!r}")
    base = env.joint_ids[joint]
    data.qpos[model.jnt_qposadr[base]] = 0.0  # the base hinge at zero: the mirror plane
    mujoco.mj_kinematics(model, data)
    for j in idx:
        _check_vertical(env, data, j, "mirror")
    x_axis = data.xmat[model.jnt_bodyid[base]].reshape(3, 3)[:, 0]
    ids = {env.joint_ids[j] for j in idx}
    if env.action_space.shape[0] != model.nu:
        raise ValueError(f"{name}: mirror needs one action per actuator, got "
                         f"{env.action_space.shape[0]} actions for {model.nu} actuators")
    actions = [i for i in range(model.nu)
               if model.actuator_trntype[i] == mujoco.mjtTrn.mjTRN_JOINT
               and int(model.actuator_trnid[i, 0]) in ids]
    low, high = np.asarray(env.action_low), np.asarray(env.action_high)
    for i in actions:
        if not np.isclose(low[i], -high[i]):
            raise ValueError(f"{name}: mirror negates action {i}, whose range "
                             f"[{low[i]:g}, {high[i]:g}] is not symmetric about 0")
    return {"mirror_joints": tuple(idx) + tuple(j + n for j in idx),
            "mirror_actions": tuple(actions),
            "mirror_angle": float(math.atan2(x_axis[1], x_axis[0]))}
