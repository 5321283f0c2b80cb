#!/usr/bin/env bash
# jaco/reach-site with an averaged copy of the networks (agent ema 2e-4, as bench/reacher-ema),
# otherwise the IQ-MPC run bench/jaco-symmetry/demo-sym03.yaml (circular joints, 9 features,
# 20 demos turned within 0.3 rad about the first joint, seed 0, evaluations every 5k on ten
# targets, averaged and online networks on the same targets). Session 19 stopped it at 45k;
# this resumes a killed run. Run from the repo root, with .venv/bin on PATH.
set -euo pipefail
. bench/lib.sh
D=bench/jaco-ema
export MUJOCO_GL=egl
mkdir -p "$D/demos" "$D/runs"
[ -f "$D/demos/jaco20-rel.h5" ] || wmil demos collect --task jaco/reach-site --episodes 20 \
    --obs state --out "$D/demos/jaco20-rel.h5" --seed 0
run="$D/runs/ema-sym03-s0"
train_run "$run" "$D/ema-sym03.yaml"
python bench/reacher-sym-branch-20k/summarize.py "$D"
