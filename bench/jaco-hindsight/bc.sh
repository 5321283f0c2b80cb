#!/usr/bin/env bash
# Behaviour cloning with hindsight goals (session 27, wmil_core.hindsight): bench/jaco-frame's
# bc.sh (20 demos, 5000 updates, circular joints, the arm's own frame) with a share P = 0.5
# and 1.0 of the demo sub-trajectories given a later point of their own path as goal; each
# run scored on the 30 held-out targets (seeds 20000-20029). Run from the repo root with
# .venv/bin on PATH.
set -euo pipefail
D=bench/jaco-hindsight
export MUJOCO_GL=egl
mkdir -p "$D/demos" "$D/runs"
[ -f "$D/demos/jaco20.h5" ] || wmil demos collect --task jaco/reach-site --episodes 20 \
    --obs state --out "$D/demos/jaco20.h5" --seed 0
for p in 05 10; do
    for s in 0 1; do
        run="$D/runs/bc-h$p-s$s"
        [ -d "$run" ] || wmil train --task jaco/reach-site --demos "$D/demos/jaco20.h5" \
            --method bc --offline-steps 5000 --steps 0 --eval-episodes 10 --circular-joints \
            --canonical-frame --hindsight-goals "${p:0:1}.${p:1}" --seed "$s" --threads 1 \
            --out "$run" > "$run.log" 2>&1
        wmil eval "$run" --episodes 30 --seed 20000 --threads 1 --out "$D/eval-bc-h$p-s$s.json"
    done
done
