#!/usr/bin/env bash
# Reacher-easy, 10 turned demos, the benchmark settings of bench/reacher-sym-branch-20k/base.yaml
# with an averaged copy of every network (agent ema 2e-4, about the last 5k updates) from the
# first update, three seeds to 60k, evaluating every 10k on ten targets (seeds 10000+seed);
# each evaluation scores the averaged copy (normalized_score) and the online networks
# (online_normalized_score) on the same targets. Session 18: the three ran side by side on the
# two cores. Session 19 resumed the three from their 60k checkpoints (buffers and averaged
# copy included) to 100k: STEPS sets the target.
# SEEDS picks the seeds (default 0 1 2). D and P name another benchmark's directory and config ($D/$P.yaml, runs $D/runs/$P-s<seed>),
# as bench/reacher-lrdecay/command.sh does.
# Run from the repo root, with .venv/bin on PATH.
set -euo pipefail
. bench/lib.sh
D=${D:-bench/reacher-ema}
P=${P:-ema}
STEPS=${STEPS:-100000}
SEEDS=${SEEDS:-0 1 2}  # a subset runs (or resumes) just those seeds
export MUJOCO_GL=egl
mkdir -p "$D/demos" "$D/runs"
[ -f "$D/demos/reacher.h5" ] || wmil demos collect --task dmc/reacher-easy --episodes 10 \
    --obs state --out "$D/demos/reacher.h5" --seed 0
for s in $SEEDS; do
    R="$D/runs/$P-s$s"
    sed "s/^seed: SEED$/seed: $s/" "$D/$P.yaml" > "$R.yaml"
    train_run "$R" "$R.yaml" "" "$STEPS" &
done
wait
python bench/reacher-sym-branch-20k/summarize.py "$D"
