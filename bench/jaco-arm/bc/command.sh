#!/usr/bin/env bash
# Behaviour cloning on jaco/reach-site's 20 demos (5000 updates, circular joints, no turns),
# each scored on the same 30 held-out targets (seeds 20000-20029), session 25, fingers held
# (six actions) in every variant. The joint readings and features were varied with task
# definitions kept out of git; this script reruns the variant the task now is (`arm`: the
# six arm joints in `joints`, the 9 features); `full` ran at commit f195a5e (fingers' joints
# read as well: 18 joint values), `diff` read all 9 joints and only the feature
# `target_position - jaco_arm/jaco_hand/pinch_site_pos`, `armdiff` the arm joints and that
# feature. Session 26 added, from a worktree whose code was edited for them and kept out of
# git: `nj6` (joints 1-5 only; the pinch site is 1.5 cm off joint 6's axis), `nv` (joints 1-5,
# velocities read as 0) and `canonnv` (six joints, velocities read as 0, features turned into
# the first joint's frame in the environment); the frame as built since then (the encoder's,
# velocities kept) is bench/jaco-frame/bc.sh. Run from the repo root with .venv/bin on PATH.
set -euo pipefail
D=bench/jaco-arm/bc
export MUJOCO_GL=egl
mkdir -p "$D/runs" "$D/demos"
[ -f "$D/demos/jaco20.h5" ] || wmil demos collect --task jaco/reach-site --episodes 20 \
    --obs state --out "$D/demos/jaco20.h5" --seed 0
for s in 0 1 2; do
    [ -d "$D/runs/arm-s$s" ] || wmil train --task jaco/reach-site --demos "$D/demos/jaco20.h5" \
        --method bc --offline-steps 5000 --steps 0 --eval-episodes 10 --circular-joints \
        --seed "$s" --threads 1 --out "$D/runs/arm-s$s" > "$D/runs/arm-s$s.log" 2>&1
    wmil eval "$D/runs/arm-s$s" --episodes 30 --seed 20000 --threads 1 --out "$D/eval-arm-s$s.json"
done
