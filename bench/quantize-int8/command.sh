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
# Planning time: the shipped models' torch checkpoints were not kept, so the timing uses a
# cpu-preset reacher model of the same shape (seed 0 of bench/reacher-sym-branch-20k at 20k
# steps; latency does not depend on the weights), exported, quantised, and planned by torch,
# torch on eager operators, the float32 runtime and (--also) the int8 runtime in turn.
R=bench/reacher-sym-branch-20k/runs/base-s0
[ -d "$D/runs/base-s0" ] || wmil export "$R" --out "$D/runs/base-s0"
[ -d "$D/runs/base-s0-int8" ] || wmil quantize "$D/runs/base-s0"
wmil bench planner "$D/runs/base-s0" --run "$R" --samples 512 --iterations 6 --horizon 3 \
    --threads 1 --also "$D/runs/base-s0-int8" --out "$D/planner-512x6-1thread.json"
wmil bench planner "$D/runs/base-s0" --run "$R" --samples 512 --iterations 6 --horizon 3 \
    --threads 2 --shards 2 --also "$D/runs/base-s0-int8" --out "$D/planner-512x6-2threads-2shards.json"
wmil bench planner "$D/runs/base-s0" --run "$R" --threads 1 --repeats 200 \
    --also "$D/runs/base-s0-int8" --out "$D/planner-64x2-1thread.json"
wmil bench value-graph "$D/runs/base-s0" "$D/runs/base-s0-int8" --samples 512 --threads 1 \
    --profile 30 --out "$D/value-graph-512-1thread.json"
# two more repeats of the two-thread run (session 14, later the same hour, machine idle)
for k in b c; do
    wmil bench planner "$D/runs/base-s0" --run "$R" --samples 512 --iterations 6 --horizon 3 \
        --threads 2 --shards 2 --also "$D/runs/base-s0-int8" \
        --out "$D/planner-512x6-2threads-2shards-$k.json"
done
# one-thread repeat, with the int8 product peak measured too (bench planner since session 14)
wmil bench planner "$D/runs/base-s0" --run "$R" --samples 512 --iterations 6 --horizon 3 \
    --threads 1 --also "$D/runs/base-s0-int8" --out "$D/planner-512x6-1thread-b.json"
