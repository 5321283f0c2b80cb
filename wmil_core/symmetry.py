"""Demonstration augmentation by a task's declared symmetry.

A task whose dynamics and goal distribution do not change when the whole scene turns about
the robot's base axis (planar reachers: the shoulder is an unlimited hinge, the target's angle
is uniform) declares it in its task file::

    symmetry: {rotation: {joint: shoulder, vectors: [to_target]}}

Turning the scene by theta adds theta to that joint's position and turns each named 2-D
feature vector (world-frame x, y) by theta counter-clockwise; velocities and actions do not
change. The expert's state distribution over random goals is invariant under these turns,
so a few demonstrations, each turned by a random angle whenever it is sampled, stand for
the same behaviour at every goal angle (``wmil train --demo-symmetry``; README: what it
buys on reacher). Only expert batches are turned: behaviour data is what the agent did.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch

from wmil_core.buffer import Batch


@dataclasses.dataclass(frozen=True)
class PlanarRotation:
    """Where a rotation about the base axis acts in the state observation."""

    joint: int  # index in ``joints`` of the rotated hinge's position
    vectors: tuple[int, ...]  # index in ``features`` of each vector's x (y follows)

    def augment(self, batch: Batch, rng: np.random.Generator) -> Batch:
        """``batch`` with each sub-trajectory turned by its own uniform random angle."""
        n = batch.action.shape[1]
        theta = torch.as_tensor(rng.uniform(0.0, 2.0 * math.pi, n), dtype=torch.float32,
                                device=batch.action.device)
        return self.rotate(batch, theta)

    def rotate(self, batch: Batch, theta: torch.Tensor) -> Batch:
        """``batch`` turned by ``theta`` (B,), one angle per sub-trajectory."""
        joints = batch.obs["joints"].clone()
        joints[..., self.joint] += theta.to(joints.dtype)
        feats = batch.obs["features"].clone()
        c, s = torch.cos(theta), torch.sin(theta)
        for i in self.vectors:
            x, y = feats[..., i], feats[..., i + 1]
            feats[..., i], feats[..., i + 1] = c * x - s * y, s * x + c * y
        obs = {**batch.obs, "joints": joints, "features": feats}
        return batch._replace(obs=obs)


def symmetry_of(env: Any) -> PlanarRotation:
    """The symmetry ``env``'s task declares, resolved to observation indices.

    ValueError (one line) when the task declares none, the observation mode lacks the state
    keys it acts on, or the declaration names a joint or feature the task does not publish.
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
    layout = env.backend.feature_layout()
    starts = []
    for key in rot["vectors"]:
        if key not in layout:
            raise ValueError(f"{name}: symmetry vector {key!r} is not among the features "
                             f"{list(layout)}")
        first, size = layout[key]
        if size != 2:
            raise ValueError(f"{name}: symmetry vector {key!r} has {size} components, not 2")
        starts.append(first)
    return PlanarRotation(joint=env.joint_names.index(rot["joint"]), vectors=tuple(starts))
