#!/usr/bin/env bash
# Session 16: the encoder reads unlimited hinges (reacher's shoulder, four of the Jaco's six arm
# joints) as sine and cosine (--circular-joints) instead of raw angles. Each run repeats an
# earlier run's settings with only that change:
#   reacher-easy, 10 demos turned by the symmetry, seed 0: bench/reacher-sym-branch-20k/base.yaml
#     (reference: runs base-s0 then plain-s0 there, curves.json)
#   jaco/reach-site, 20 demos, seed 0: the cell of bench/imitation-100k-jaco (command.txt)
# evaluating every 5k steps. Run from the repo root with .venv/bin on PATH.
set -euo pipefail
. bench/lib.sh
D=bench/circular-joints
export MUJOCO_GL=egl
mkdir -p "$D/demos" "$D/runs"
[ -f "$D/demos/reacher10.h5" ] || wmil demos collect --task dmc/reacher-easy --episodes 10 \
    --obs state --out "$D/demos/reacher10.h5" --seed 0
[ -f "$D/demos/jaco20.h5" ] || wmil demos collect --task jaco/reach-site --episodes 20 \
    --obs state --out "$D/demos/jaco20.h5" --seed 0
train() { train_run "$D/runs/$1" "$2"; }  # train NAME CONFIG: start, or resume a killed run
train reacher-s0 "$D/reacher.yaml" &
train jaco-s0 "$D/jaco.yaml" &  # stopped at 20k (0.00-0.04 at 0-20k)
wait
# (jaco-s0 ran at commit e4daabc, when jaco/reach-site published 6 features; from 59623cb on
# it publishes 9, the target relative to the pinch site added, and demos collected now have
# them.) The same jaco run with the 9 features, and reacher's seed 1:
[ -f "$D/demos/jaco20-rel.h5" ] || wmil demos collect --task jaco/reach-site --episodes 20 \
    --obs state --out "$D/demos/jaco20-rel.h5" --seed 0
sed "s#demos/jaco20.h5#demos/jaco20-rel.h5#" "$D/jaco.yaml" > "$D/runs/jaco-rel.yaml"
sed "s/^seed: 0$/seed: 1/" "$D/reacher.yaml" > "$D/runs/reacher-s1.yaml"
train reacher-s1 "$D/runs/reacher-s1.yaml" &  # stopped at 33k (last evaluation 30k)
train jaco-rel-s0 "$D/runs/jaco-rel.yaml" &  # stopped at 43k (last evaluation 40k)
wait
# the two seed-0 runs' 60k checkpoints (with and without --circular-joints) on the same 30
# held-out targets
heldout30 "$D/runs/reacher-s0" "$D/eval-reacher-s0-60k-seed20000-n30.json"
heldout30 bench/reacher-sym-branch-20k/runs/plain-s0 "$D/eval-plain-s0-60k-seed20000-n30.json"
# curves.json from the runs
python bench/reacher-sym-branch-20k/summarize.py "$D"
# behaviour cloning on the 9-feature jaco demos, 5000 updates, raw and circular joints:
# evaluation seeds (10000-) and the demos' own seeds (0-)
for c in "" "--circular-joints"; do
    n=bc${c:+-circ}
    [ -d "$D/runs/jaco-rel-$n" ] || wmil train --task jaco/reach-site \
        --demos "$D/demos/jaco20-rel.h5" --method bc \
        --offline-steps 5000 --steps 0 --eval-episodes 10 $c --seed 0 --threads 1 \
        --out "$D/runs/jaco-rel-$n"
    cp "$D/runs/jaco-rel-$n/eval.json" "$D/eval-jaco-rel-$n-5000upd-seed10000.json"
    wmil eval "$D/runs/jaco-rel-$n" --episodes 10 --seed 0 --threads 1 \
        --out "$D/eval-jaco-rel-$n-5000upd-seed0.json"
done
