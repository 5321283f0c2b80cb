#!/usr/bin/env bash
# Session 17: jaco/reach-site declares the rotation about the arm's first joint (vertical axis
# anchored at (0, 0.4), pointing down), so --demo-symmetry turns each sampled demo
# sub-trajectory by a random angle: target and pinch positions about the anchor, their
# difference about the origin, joint 1 by minus the angle. The IQ-MPC runs repeat the session-16
# run bench/circular-joints/runs/jaco-rel-s0 (circular joints, 9 features, 20 demos, seed 0)
# with one change each. Run from the repo root with .venv/bin on PATH.
set -euo pipefail
. bench/lib.sh
D=bench/jaco-symmetry
export MUJOCO_GL=egl
mkdir -p "$D/demos" "$D/runs"
[ -f "$D/demos/jaco20-rel.h5" ] || wmil demos collect --task jaco/reach-site --episodes 20 \
    --obs state --out "$D/demos/jaco20-rel.h5" --seed 0
train() { train_run "$D/runs/$1" "$2"; }  # train NAME CONFIG: start, or resume a killed run
# 1. turns over the whole circle (the declaration had no max_angle yet; both stopped at 37k,
#    last evaluation 35k; resuming them now would turn by the declared 0.3 rad):
#    demo-sym: demo batches turned;  both-sym: demo and behaviour batches turned
train demo-sym-s0 "$D/demo-sym.yaml" &
train both-sym-s0 "$D/both-sym.yaml" &
wait
# 2. behaviour cloning (5000 updates, circular joints) with no turns, whole-circle turns and
#    turns within +-X rad, each scored on the same 30 held-out episodes (seeds 20000-20029)
bc() {  # bc NAME SEED ARGS...
    local name=$1 seed=$2; shift 2
    [ -d "$D/runs/$name" ] || wmil train --task jaco/reach-site --demos "$D/demos/jaco20-rel.h5" \
        --method bc --offline-steps 5000 --steps 0 --eval-episodes 10 --circular-joints \
        --seed "$seed" --threads 1 "$@" --out "$D/runs/$name" > "$D/runs/$name.log" 2>&1
    heldout30 "$D/runs/$name" "$D/eval-$name-seed20000-n30.json"
}
bc bc-circ-symnone 0
bc bc-circ-symnone-s1 1
bc bc-circ-sym 0 --demo-symmetry --symmetry-max-angle 3.14159265  # (ran as the whole circle)
for a in 0.1 0.2 0.3 0.5; do bc "bc-circ-sym$a" 0 --demo-symmetry --symmetry-max-angle "$a"; done
bc bc-circ-sym0.2-s1 1 --demo-symmetry --symmetry-max-angle 0.2
# 3. IQ-MPC with turns within 0.3 rad (the declaration's range since then); started in
#    session 17 and lost with its machine, not rerun yet
train demo-sym03-s0 "$D/demo-sym03.yaml" &
train both-sym03-s0 "$D/both-sym03.yaml" &
wait
python bench/reacher-sym-branch-20k/summarize.py "$D"
