#!/usr/bin/env bash
# int8 copies of the shipped bundles (session 14): what quantisation costs in score, paired on
# the same episode seeds, and what it buys in planning time. Run from the repo root with
# .venv/bin on PATH; the int8 bundles are written under runs/ (not committed).
set -euo pipefail
D=bench/quantize-int8
export MUJOCO_GL=egl
for m in reacher-easy cartpole-swingup; do
    [ -d "$D/runs/$m-int8" ] || wmil quantize "models/$m" --out "$D/runs/$m-int8"
    for b in "models/$m" "$D/runs/$m-int8"; do
        tag=$([ "$b" = "models/$m" ] && echo float32 || echo int8)
        wmil eval "$b" --episodes 30 --seed 20000 --threads 1 --out "$D/eval-$m-$tag.json"
    done
done
