#!/usr/bin/env bash
# Session 17: jaco/reach-site declares the rotation about the arm's first joint (vertical axis
# anchored at (0, 0.4), pointing down), so --demo-symmetry turns each sampled demo
# sub-trajectory by a random angle: target and pinch positions about the anchor, their
# difference about the origin, joint 1 by minus the angle. Both runs repeat the session-16 run
# bench/circular-joints/runs/jaco-rel-s0 (circular joints, 9 features, 20 demos, seed 0) with
#   demo-sym: demo batches turned;  both-sym: demo and behaviour batches turned.
# Run from the repo root with .venv/bin on PATH.
set -euo pipefail
D=bench/jaco-symmetry
export MUJOCO_GL=egl
mkdir -p "$D/demos" "$D/runs"
[ -f "$D/demos/jaco20-rel.h5" ] || wmil demos collect --task jaco/reach-site --episodes 20 \
    --obs state --out "$D/demos/jaco20-rel.h5" --seed 0
train() {  # train NAME CONFIG: start, or resume a killed run
    local run="$D/runs/$1"
    if [ -f "$run/checkpoints/latest.pt" ]; then wmil train --resume "$run" >> "$run.log" 2>&1
    else wmil train --config "$2" --out "$run" > "$run.log" 2>&1; fi
}
train demo-sym-s0 "$D/demo-sym.yaml" &
train both-sym-s0 "$D/both-sym.yaml" &
wait
python bench/reacher-sym-branch-20k/summarize.py "$D"
