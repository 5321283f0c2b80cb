#!/usr/bin/env bash
# Session 21 ran on another machine (AMD EPYC, AVX2, no AVX-512, AMX or VNNI) than sessions
# 1-20 (AMX). The #5 planner timing of bench/quantize-int8/command.sh repeated here on a
# cpu-preset reacher model of the shipped shape (bench/reacher-ema-bsym seed 0 after its 1000
# offline updates: latency does not depend on the weights), exported and quantised (weight bits
# chosen by `wmil quantize`'s auto), planned by torch, torch on eager operators, the float32
# runtime and the int8 runtime in turn. Run from the repo root with .venv/bin on PATH; the
# bundles are written under runs/ (not committed).
set -euo pipefail
D=bench/epyc-avx2
R=${R:-bench/reacher-ema-bsym/runs/bsym-s0/checkpoints/latest.pt}
export MUJOCO_GL=egl
[ -d "$D/runs/base" ] || wmil export "$R" --out "$D/runs/base"
[ -d "$D/runs/base-int8" ] || wmil quantize "$D/runs/base" --out "$D/runs/base-int8"
wmil bench planner "$D/runs/base" --run "$R" --samples 512 --iterations 6 --horizon 3 \
    --threads 1 --also "$D/runs/base-int8" --out "$D/planner-512x6-1thread.json"
wmil bench planner "$D/runs/base" --run "$R" --samples 512 --iterations 6 --horizon 3 \
    --threads 2 --shards 2 --also "$D/runs/base-int8" --out "$D/planner-512x6-2threads-2shards.json"
# two more one-thread repeats (session 21, machine idle; the first one-thread run above was
# repeated too: planner-512x6-1thread-beside-ci.json ran beside a CI run)
for k in b c; do
    wmil bench planner "$D/runs/base" --run "$R" --samples 512 --iterations 6 --horizon 3 \
        --threads 1 --also "$D/runs/base-int8" --out "$D/planner-512x6-1thread-$k.json"
done
# the deployment setting on this CPU: the shipped bundle's own 64 x 2 planner, one thread,
# planning p50/p99 over 10 episodes (5000 steps)
wmil eval models/reacher-easy --episodes 10 --seed 30000 --threads 1 \
    --out "$D/eval-reacher-easy-deployment.json"
# and its int8 copy (weight bits chosen per graph on this CPU)
[ -d "$D/runs/reacher-easy-int8" ] || wmil quantize models/reacher-easy --out "$D/runs/reacher-easy-int8"
wmil eval "$D/runs/reacher-easy-int8" --episodes 10 --seed 30000 --threads 1 \
    --out "$D/eval-reacher-easy-int8-deployment.json"
# repeats of both (b, c), and two cheaper settings of the float bundle: 32 x 2 and 64 x 1
for k in b c; do
    wmil eval models/reacher-easy --episodes 10 --seed 30000 --threads 1 \
        --out "$D/eval-reacher-easy-deployment-$k.json"
    wmil eval "$D/runs/reacher-easy-int8" --episodes 10 --seed 30000 --threads 1 \
        --out "$D/eval-reacher-easy-int8-deployment-$k.json"
done
wmil eval models/reacher-easy --episodes 10 --seed 30000 --threads 1 --samples 32 \
    --out "$D/eval-reacher-easy-32x2.json"
for k in "" -b; do
    wmil eval models/reacher-easy --episodes 10 --seed 30000 --threads 1 --iterations 1 \
        --out "$D/eval-reacher-easy-64x1$k.json"
done
# TD-MPC2's own code against wmil's IQ-MPC, float32, one thread (SRC: a TD-MPC2 checkout's
# tdmpc2/ folder; pip install -r requirements-bench.txt)
if [ -n "${SRC:-}" ]; then
    wmil bench tdmpc2 --src "$SRC" --size 1m --threads 1 \
        --out "$D/tdmpc2-compare-1m-1thread-float32.json"
    wmil bench tdmpc2 --src "$SRC" --size 1m --threads 1 --compile \
        --out "$D/tdmpc2-compare-1m-1thread-float32-compiled.json"
fi
# session 22: the paper's planner (512 x 6) on the same 10 episodes, for what the deployment
# setting gives up (run beside two training runs: its latency is not comparable)
wmil eval models/reacher-easy --episodes 10 --seed 30000 --threads 1 --samples 512 \
    --iterations 6 --out "$D/eval-reacher-easy-512x6.json"
