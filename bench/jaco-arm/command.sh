#!/usr/bin/env bash
# jaco/reach-site with the fingers held still and out of the joint readings (session 25): the
# agent commands and reads the six arm joints only (bench/jaco-hold: held, still read).
# Otherwise bench/jaco-ema's run (ema-sym03.yaml: averaged
# networks, circular joints, 20 demos turned within 0.3 rad about the first joint, 64 x 2
# planner, ten evaluation targets every 5k), seeds 0 and 1 beside each other, one core each.
# Resumes killed runs. Run from the repo root, with .venv/bin on PATH. STEPS overrides the
# step budget (default: the config's 100k).
set -euo pipefail
. bench/lib.sh
D=bench/jaco-arm
export MUJOCO_GL=egl
mkdir -p "$D/demos" "$D/runs"
[ -f "$D/demos/jaco20-arm.h5" ] || wmil demos collect --task jaco/reach-site --episodes 20 \
    --obs state --out "$D/demos/jaco20-arm.h5" --seed 0
for s in ${SEEDS:-0 1}; do
    train_run "$D/runs/ema-sym03-arm-s$s" "$D/ema-sym03-arm.yaml" "$s" "${STEPS:-}" &
done
wait
python bench/reacher-sym-branch-20k/summarize.py "$D"
