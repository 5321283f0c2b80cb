#!/usr/bin/env bash
# Session 24: seeds 1 and 2 resumed from their 40k checkpoints to 60k (`SEEDS="1 2"
# STEPS=60000 bench/reacher-ema-bsym/command.sh`), to see whether the setting holds past the
# 40k it was judged at. Their 60k checkpoints (averaged networks) play the same 30 held-out
# targets as heldout.sh (seeds 20000-20029), side by side. The checkpoints are copied to
# $D/heldout/ckpt/s<seed>-60k.pt first (gitignored; heldout.sh's s<seed>-latest.pt copies,
# one of them the shipped model's source, are left alone). Run from the repo root with
# .venv/bin on PATH.
set -euo pipefail
D=bench/reacher-ema-bsym
export MUJOCO_GL=egl
mkdir -p "$D/heldout/ckpt"
for s in 1 2; do
    cp "$D/runs/bsym-s$s/checkpoints/latest.pt" "$D/heldout/ckpt/s$s-60k.pt"
done
ev() { wmil eval "$D/heldout/ckpt/$2.pt" --episodes 30 --seed 20000 --threads 1 --out "$D/heldout/$1.json"; }
ev bsym-s1-60k s1-60k &
ev bsym-s2-60k s2-60k
wait
python bench/reacher-ema/radius.py --eval bsym-s1-60k="$D/heldout/bsym-s1-60k.json" \
    --eval bsym-s2-60k="$D/heldout/bsym-s2-60k.json" --out "$D/heldout/radius-60k.json"
