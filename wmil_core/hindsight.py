"""Hindsight goals for demonstrations: a reach demo also shows how to reach where it went.

A goal-reaching task declares its goal in its task file::

    goal: {target: target_position, achieved: jaco_arm/jaco_hand/pinch_site_pos,
           min_distance: 0.08}

``target`` is the feature that names the goal, ``achieved`` the feature that must reach it (same
size). An expert that drives ``achieved`` straight at its goal, at a speed capped beyond some
distance, acts on the way exactly as it would for any point further along its own path: the
direction is the same and the speed is the cap. So a demonstrated sub-trajectory is also a
demonstration for the goal "where ``achieved`` was k steps later", as long as that point stays
at least ``min_distance`` from ``achieved`` at every step of the sub-trajectory (inside it the
expert slows down, and the demo, which goes on past that point, does not).

``wmil train --hindsight-goals P`` relabels a share P of each expert batch's sub-trajectories:
the goal becomes ``achieved`` at a uniformly drawn later row of the same episode among those at
least ``min_distance`` from every row of the sub-trajectory (a sub-trajectory with none, such as
one in the expert's final hold at its goal, keeps its goal), and every feature ``"a - b"``
that reads the goal (the goal relative to the hand) is computed again. Twenty demonstrations,
whose goals are twenty points, then show goals all along twenty paths. This is the
"future" relabelling of hindsight experience replay (Andrychowicz et al., 2017) applied to
demonstrations, as goal-conditioned imitation does (Ding et al., 2019); it is not in the
IQ-MPC paper.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from wmil_core.tasks.backends import feature_parts


@dataclasses.dataclass(frozen=True)
class HindsightGoals:
    """Where the goal lives in ``features`` and how often to relabel it."""

    target: tuple[int, int]  # (first index, size) of the goal feature
    achieved: tuple[int, int]  # (first index, size) of the feature that reaches it
    # each feature "a - b" that reads the goal: (first index, size, first of a, first of b)
    derived: tuple[tuple[int, int, int, int], ...]
    min_distance: float
    fraction: float  # share of sub-trajectories relabelled

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"hindsight_goals: must be in [0, 1], got {self.fraction}")

    def __call__(self, buffer: Any, rows: np.ndarray, obs: dict[str, np.ndarray],
                 rng: np.random.Generator) -> None:
        """Relabel ``obs["features"]`` (H+1, B, F), gathered from ``buffer`` rows ``rows``
        (H+1, B), in place (the ``relabel`` hook of ``EpisodeBuffer.sample``)."""
        feats = obs["features"]
        b = rows.shape[1]
        pick = rng.random(b) < self.fraction
        end = rows[-1]  # each sub-trajectory's last row
        last = buffer.last_rows(end)
        span = int((last - end).max()) + 1
        cand = end[:, None] + np.arange(span)[None, :]  # (B, span) rows from the end on
        valid = (cand <= last[:, None]) & pick[:, None]
        cand = np.minimum(cand, last[:, None])
        a0, n = self.achieved
        goals = buffer.obs["features"][cand, a0:a0 + n]  # (B, span, n)
        here = feats[..., a0:a0 + n]  # (H+1, B, n)
        gap = np.linalg.norm(here[:, :, None, :] - goals[None], axis=-1).min(axis=0)
        valid &= gap >= self.min_distance
        score = np.where(valid, rng.random(valid.shape), -1.0)
        chosen = score.argmax(axis=1)
        moved = np.flatnonzero(score.max(axis=1) >= 0.0)
        if moved.size == 0:
            return
        t0, tn = self.target
        feats[:, moved, t0:t0 + tn] = goals[moved, chosen[moved]][None]
        for first, size, a, c in self.derived:
            feats[:, moved, first:first + size] = (feats[:, moved, a:a + size]
                                                    - feats[:, moved, c:c + size])


def hindsight_of(env: Any, fraction: float) -> HindsightGoals:
    """The goal ``env``'s task declares, resolved to feature indices, relabelling a share
    ``fraction`` of sub-trajectories.

    ValueError (one line) when the task declares no goal, the observation mode has no
    ``features``, the declaration names a feature the task does not publish, the two features
    differ in size, or a feature ``"a - b"`` reads the goal through an unpublished part.
    """
    spec = env.spec_
    name = spec.name
    decl = spec.goal
    if not decl:
        raise ValueError(f"hindsight_goals: task {name} declares no goal (sim/tasks/*.yaml)")
    if "features" not in env.obs_spec():
        raise ValueError(f"hindsight_goals: needs the features observation; {name} in this "
                         f"mode has {sorted(env.obs_spec())}")
    layout = env.backend.feature_layout()
    for role in ("target", "achieved"):
        if decl[role] not in layout:
            raise ValueError(f"{name}: goal {role} {decl[role]!r} is not among the features "
                             f"{list(layout)}")
    target, achieved = layout[decl["target"]], layout[decl["achieved"]]
    if target[1] != achieved[1]:
        raise ValueError(f"{name}: goal target {decl['target']!r} has {target[1]} components, "
                         f"achieved {decl['achieved']!r} {achieved[1]}")
    derived = []
    for key, (first, size) in layout.items():
        parts = feature_parts(key)
        if len(parts) != 2 or decl["target"] not in parts:
            continue
        for part in parts:
            if part not in layout:
                raise ValueError(f"{name}: feature {key!r} reads the goal and {part!r}, which "
                                 f"is not itself among the features")
        derived.append((first, size, layout[parts[0]][0], layout[parts[1]][0]))
    return HindsightGoals(target=target, achieved=achieved, derived=tuple(derived),
                          min_distance=float(decl["min_distance"]), fraction=float(fraction))
