#!/usr/bin/env bash
# jaco/reach-site read in the arm's own frame (session 26, `canonical_frame: true`): the
# encoder turns each state about the first joint until that joint reads 0, so the 20 demos'
# starts, spread all round that joint, become one family. Otherwise bench/jaco-arm's run
# (averaged networks, circular joints, fingers held, 64 x 2 planner, ten evaluation targets
# every 5k) without demo turns, which the frame makes invisible. Seeds 0 and 1 beside each
# other, one core each; resumes killed runs. Run from the repo root with .venv/bin on PATH.
# STEPS overrides the step budget (default: the config's 100k).
set -euo pipefail
. bench/lib.sh
D=bench/jaco-frame
export MUJOCO_GL=egl
mkdir -p "$D/demos" "$D/runs"
[ -f "$D/demos/jaco20.h5" ] || wmil demos collect --task jaco/reach-site --episodes 20 \
    --obs state --out "$D/demos/jaco20.h5" --seed 0
for s in ${SEEDS:-0 1}; do
    train_run "$D/runs/frame-s$s" "$D/frame.yaml" "$s" "${STEPS:-}" &
done
wait
python bench/reacher-sym-branch-20k/summarize.py "$D"
