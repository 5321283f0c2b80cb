#!/usr/bin/env bash
# BC on reacher-easy from the first N of 50 scripted demos (seed 0: episode seeds 0-49):
# normalized score on the training evaluation seeds (10000-10009, targets no demo shows)
# and on the demos' first 10 episodes (seeds 0-9, demonstrated targets). Run from the repo root.
set -euo pipefail
OUT=bench/bc-demos-reacher
W=${TMPDIR:-/tmp}/bc-demos-reacher
mkdir -p "$W"
[ -f "$W/demos50.h5" ] || wmil demos collect --task dmc/reacher-easy --episodes 50 --obs state --seed 0 --out "$W/demos50.h5"
for n in 10 25 50; do
  for s in 0 1; do
    run="$W/bc-d$n-s$s"
    rm -rf "$run"
    wmil train --task dmc/reacher-easy --demos "$W/demos50.h5" --demo-episodes "$n" --method bc \
      --offline-steps 5000 --steps 0 --eval-episodes 10 --seed "$s" --threads 1 --out "$run" > /dev/null
    cp "$run/eval.json" "$OUT/d$n-s$s-eval-seeds.json"
    wmil eval "$run" --episodes 10 --seed 0 --out "$OUT/d$n-s$s-demo-seeds.json" > /dev/null
  done
done
