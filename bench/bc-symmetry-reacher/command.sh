#!/usr/bin/env bash
# BC on reacher-easy from the first 10 of 50 scripted demos (seed 0), each demo batch turned
# by a random rotation about the shoulder (--demo-symmetry); evaluated as
# bench/bc-demos-reacher/ is (the training evaluation seeds, and the demos' seeds 0-9), so its
# d10 rows are the same runs without the augmentation. Run from the repo root.
set -euo pipefail
OUT=bench/bc-symmetry-reacher
W=${TMPDIR:-/tmp}/bc-demos-reacher
mkdir -p "$W"
[ -f "$W/demos50.h5" ] || wmil demos collect --task dmc/reacher-easy --episodes 50 --obs state --seed 0 --out "$W/demos50.h5"
for s in 0 1; do
  run="$W/bc-d10-sym-s$s"
  rm -rf "$run"
  wmil train --task dmc/reacher-easy --demos "$W/demos50.h5" --demo-episodes 10 --method bc \
    --demo-symmetry --offline-steps 5000 --steps 0 --eval-episodes 10 --seed "$s" --threads 1 \
    --out "$run" > /dev/null
  cp "$run/eval.json" "$OUT/d10-sym-s$s-eval-seeds.json"
  wmil eval "$run" --episodes 10 --seed 0 --out "$OUT/d10-sym-s$s-demo-seeds.json" > /dev/null
done
