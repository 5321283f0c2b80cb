#!/usr/bin/env bash
# command.sh's IQ-MPC runs with the policy prior also cloned toward the demos' actions
# (`pi_bc_coef: 1.0`, cartesian-pibc.yaml), seeds 0 and 1 beside each other to 20k steps
# (session 27), then each on the 30 held-out targets with its planner and its prior alone.
# Run from the repo root with .venv/bin on PATH; resumes killed runs.
set -euo pipefail
. bench/lib.sh
D=bench/jaco-cartesian
export MUJOCO_GL=egl
for s in 0 1; do
    train_run "$D/runs/pibc-s$s" "$D/cartesian-pibc.yaml" "$s" "${STEPS:-20000}" &
done
wait
for s in 0 1; do
    heldout30 "$D/runs/pibc-s$s" "$D/heldout30-pibc-s$s.json" &
done
wait
for s in 0 1; do
    heldout30 "$D/runs/pibc-s$s" "$D/heldout30-pibc-s$s-prior.json" --prior &
done
wait
