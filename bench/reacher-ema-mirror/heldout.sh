#!/usr/bin/env bash
# Session 22: seed 0 of bench/reacher-ema-bsym and of this benchmark trained side by side; the
# first was paused at its 40k checkpoint until the second reached its own, then each run's 40k
# checkpoint (averaged networks) and this run's best evaluated one (30k) played the 30
# held-out targets (seeds 20000-20029), and radius.py split the returns by target radius.
# The checkpoints were copied out first (a resumed run overwrites latest.pt and best.pt):
# CKPT_BSYM, CKPT_MIRROR, CKPT_MIRROR_BEST name the copies. Run from the repo root with
# .venv/bin on PATH.
set -euo pipefail
D=bench/reacher-ema-mirror
export MUJOCO_GL=egl
mkdir -p "$D/heldout"
ev() { wmil eval "$2" --episodes 30 --seed 20000 --threads 1 --out "$D/heldout/$1.json"; }
ev bsym-s0-40k "$CKPT_BSYM" &
ev mirror-s0-40k "$CKPT_MIRROR"
wait
ev mirror-s0-best-30k "$CKPT_MIRROR_BEST"
python bench/reacher-ema/radius.py --eval bsym-40k="$D/heldout/bsym-s0-40k.json" \
    --eval mirror-40k="$D/heldout/mirror-s0-40k.json" \
    --eval mirror-best-30k="$D/heldout/mirror-s0-best-30k.json" --out "$D/heldout/radius.json"
