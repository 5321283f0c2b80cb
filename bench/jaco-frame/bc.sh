#!/usr/bin/env bash
# Behaviour cloning on the 20 demos read in the arm's frame (--canonical-frame), as
# bench/jaco-arm/bc/command.sh ran it without (5000 updates, circular joints, no turns), each
# seed scored on the same 30 held-out targets (seeds 20000-20029). Run from the repo root
# with .venv/bin on PATH.
set -euo pipefail
D=bench/jaco-frame
export MUJOCO_GL=egl
mkdir -p "$D/demos" "$D/runs"
[ -f "$D/demos/jaco20.h5" ] || wmil demos collect --task jaco/reach-site --episodes 20 \
    --obs state --out "$D/demos/jaco20.h5" --seed 0
for s in 0 1 2; do
    [ -d "$D/runs/bc-s$s" ] || wmil train --task jaco/reach-site --demos "$D/demos/jaco20.h5" \
        --method bc --offline-steps 5000 --steps 0 --eval-episodes 10 --circular-joints \
        --canonical-frame --seed "$s" --threads 1 --out "$D/runs/bc-s$s" > "$D/runs/bc-s$s.log" 2>&1
    wmil eval "$D/runs/bc-s$s" --episodes 30 --seed 20000 --threads 1 --out "$D/eval-bc-s$s.json"
done
