#!/usr/bin/env bash
# Session 23: seeds 1 and 2 of this benchmark trained side by side from scratch to 40k (seed 0's
# 40k checkpoint was scored in bench/reacher-ema-mirror/heldout.sh). Each seed's 40k checkpoint
# (averaged networks) and its best evaluated one play the 30 held-out targets (seeds
# 20000-20029), two at a time, and radius.py splits the returns by target radius.
# The checkpoints are copied out first (a resumed run overwrites latest.pt and best.pt) to
# $D/heldout/ckpt/ (gitignored). Run from the repo root with .venv/bin on PATH. Rerun after a
# resume it would copy the resumed checkpoints over s<seed>-latest.pt (s1-latest.pt is the
# source of the shipped models/reacher-easy): heldout60.sh scores the 60k ones.
set -euo pipefail
D=bench/reacher-ema-bsym
export MUJOCO_GL=egl
mkdir -p "$D/heldout/ckpt"
for s in 1 2; do
    cp "$D/runs/bsym-s$s/checkpoints/latest.pt" "$D/heldout/ckpt/s$s-latest.pt"
    cp "$D/runs/bsym-s$s/checkpoints/best.pt" "$D/heldout/ckpt/s$s-best.pt"
done
ev() { wmil eval "$D/heldout/ckpt/$2.pt" --episodes 30 --seed 20000 --threads 1 --out "$D/heldout/$1.json"; }
ev bsym-s1-40k s1-latest &
ev bsym-s2-40k s2-latest
wait
ev bsym-s1-best s1-best &
ev bsym-s2-best s2-best
wait
python bench/reacher-ema/radius.py --eval bsym-s0-40k=bench/reacher-ema-mirror/heldout/bsym-s0-40k.json \
    --eval bsym-s1-40k="$D/heldout/bsym-s1-40k.json" --eval bsym-s2-40k="$D/heldout/bsym-s2-40k.json" \
    --eval bsym-s1-best="$D/heldout/bsym-s1-best.json" --eval bsym-s2-best="$D/heldout/bsym-s2-best.json" \
    --out "$D/heldout/radius.json"
