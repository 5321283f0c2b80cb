#!/usr/bin/env bash
# Session 16: does IQ-MPC train as well with bfloat16 matrix products (precision: bfloat16,
# compile: planner)? cartpole-swingup, 10 demos, seed 0, the settings of the
# bench/imitation-100k cell (its seed 0, float32: 0.24, 0.25, 0.49, 0.75, 1.00 at 0-40k,
# 1.00 from then on but 0.92 at 50k), evaluating every 5k. Run from the repo root with
# .venv/bin on PATH; rerunning resumes.
set -euo pipefail
. bench/lib.sh
D=bench/bfloat16
export MUJOCO_GL=egl
mkdir -p "$D/demos" "$D/runs"
[ -f "$D/demos/cartpole10.h5" ] || wmil demos collect --task dmc/cartpole-swingup \
    --episodes 10 --obs state --out "$D/demos/cartpole10.h5" --seed 0
run="$D/runs/cartpole-s0"
train_run "$run" "$D/cartpole.yaml"  # stopped at 25k
python bench/reacher-sym-branch-20k/summarize.py "$D"  # curves.json
