#!/usr/bin/env bash
# command.sh's IQ-MPC runs with the policy prior also cloned toward the demos' actions
# (`pi_bc_coef: 1.0`, cartesian-pibc.yaml), seeds 0 and 1 beside each other to 20k steps
# (session 27), then each on the 30 held-out targets with its planner and its prior alone.
# Run from the repo root with .venv/bin on PATH; resumes killed runs.
set -euo pipefail
D=bench/jaco-cartesian
export MUJOCO_GL=egl
for s in 0 1; do
    run="$D/runs/pibc-s$s"
    if [ -f "$run/checkpoints/latest.pt" ]; then
        wmil train --resume "$run" --steps "${STEPS:-20000}" >> "$run.log" 2>&1 &
    else
        wmil train --config "$D/cartesian-pibc.yaml" --seed "$s" --steps "${STEPS:-20000}" \
            --out "$run" > "$run.log" 2>&1 &
    fi
done
wait
for s in 0 1; do
    wmil eval "$D/runs/pibc-s$s" --episodes 30 --seed 20000 --threads 1 \
        --out "$D/heldout30-pibc-s$s.json" &
done
wait
for s in 0 1; do
    wmil eval "$D/runs/pibc-s$s" --episodes 30 --seed 20000 --threads 1 --prior \
        --out "$D/heldout30-pibc-s$s-prior.json" &
done
wait
