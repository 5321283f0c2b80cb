#!/usr/bin/env bash
# Session 24 ran on a third machine: AMD EPYC (family 25 model 17), 2 cores, AVX-512 with
# bfloat16 (avx512_bf16) and VNNI, no AMX. One-core 512x512 matmul here: float32 98 GFLOP/s,
# bfloat16 216 GFLOP/s (torch, native). The speed measurements of #3 (TD-MPC2's own code
# against wmil, float32 and bfloat16 products) and #5 (the planner benchmark of
# bench/epyc-avx2/command.sh) repeated here. Run from the repo root with .venv/bin on PATH;
# SRC: a TD-MPC2 checkout's tdmpc2/ folder (pip install -r requirements-bench.txt).
set -euo pipefail
D=bench/epyc-avx512
export MUJOCO_GL=egl
if [ -n "${SRC:-}" ]; then
    for k in "" -b; do
        wmil bench tdmpc2 --src "$SRC" --size 1m --threads 1 \
            --out "$D/tdmpc2-compare-1m-1thread-float32$k.json"
        wmil bench tdmpc2 --src "$SRC" --size 1m --threads 1 --precision bfloat16 \
            --out "$D/tdmpc2-compare-1m-1thread-bfloat16$k.json"
    done
    # the issue's own setting: two threads (eager; float32 and bfloat16 products)
    for p in float32 bfloat16; do
        wmil bench tdmpc2 --src "$SRC" --size 1m --threads 2 --precision $p \
            --out "$D/tdmpc2-compare-1m-2threads-$p.json"
    done
    # the planner compiled (inductor), with bfloat16 products and in float32
    for p in bfloat16 float32; do
        wmil bench tdmpc2 --src "$SRC" --size 1m --threads 1 --precision $p --compile planner \
            --out "$D/tdmpc2-compare-1m-1thread-$p-compiled-planner.json"
    done
fi
# the shipped bundle's int8 copy (weight bits chosen per graph by `wmil quantize` on this CPU)
[ -d "$D/runs/reacher-easy-int8" ] || wmil quantize models/reacher-easy --out "$D/runs/reacher-easy-int8"
# #5: the planner benchmark (512 x 6 x 3) on the shipped reacher-easy bundle against its torch
# checkpoint (R; not in git: bench/reacher-ema-bsym seed 1 at 40k), with the int8 copy: one
# thread, three runs; then two threads, the samples split in two shards for the runtime (torch
# on two intra-op threads), three runs
R=${R:-bench/reacher-ema-bsym/heldout/ckpt/s1-latest.pt}
if [ -f "$R" ]; then
    for k in a b c; do
        wmil bench planner models/reacher-easy --run "$R" --samples 512 --iterations 6 --horizon 3 \
            --threads 1 --also "$D/runs/reacher-easy-int8" --out "$D/planner-512x6-1thread-$k.json"
    done
    for k in "" -b -c; do
        wmil bench planner models/reacher-easy --run "$R" --samples 512 --iterations 6 --horizon 3 \
            --threads 2 --shards 2 --also "$D/runs/reacher-easy-int8" \
            --out "$D/planner-512x6-2threads-2shards$k.json"
    done
fi
# the deployment setting: the shipped bundle's own 64 x 2 planner and its int8 copy, one
# thread, planning p50/p99 over 10 episodes (5000 steps)
wmil eval models/reacher-easy --episodes 10 --seed 30000 --threads 1 \
    --out "$D/eval-reacher-easy-deployment.json"
wmil eval "$D/runs/reacher-easy-int8" --episodes 10 --seed 30000 --threads 1 \
    --out "$D/eval-reacher-easy-int8-deployment.json"
# where the runtime's time goes: the fused value graph (six calls make a 512 x 6 plan) under
# onnxruntime's profiler (the bundle against itself; run beside the deployment evals above)
wmil bench value-graph models/reacher-easy models/reacher-easy --samples 512 --threads 1 \
    --repeats 20 --profile 30 --out "$D/value-graph-512-1thread-profile.json"
# the operators behind the non-product time: LayerNorm and Mish forms in onnxruntime
python bench/epyc-avx512/ort_kernels.py --out "$D/ort-kernels.json"
# the paper's planner (512 x 6) on the same 10 episodes, for the score the deployment setting
# gives up (run beside a CI run: its latency is not comparable)
wmil eval models/reacher-easy --episodes 10 --seed 30000 --threads 1 --samples 512 \
    --iterations 6 --out "$D/eval-reacher-easy-512x6.json"
# the int8 copy on the 30 episodes of results/reacher-easy-bsym-eval-40000x30.json (paired)
wmil eval "$D/runs/reacher-easy-int8" --episodes 30 --seed 40000 --threads 1 \
    --out "$D/eval-reacher-easy-int8-40000x30.json"
