#!/usr/bin/env bash
# jaco/reach-site-cartesian (session 27): the same reach with the pinch site's velocity as the
# action (controller: cartesian, wmil_core/tasks/cartesian.py), 20 demos of the same expert.
# Otherwise bench/jaco-arm's IQ-MPC setting (averaged networks, circular joints, fingers held,
# 64 x 2 planner, ten evaluation targets every 5k) in world coordinates: no frame, no turns
# (both would have to turn the actions too). Seeds 0 and 1 beside each other, one core each;
# resumes killed runs. Then behaviour cloning on the same demos (5000 updates, seeds 0-2; and
# seeds 0-1 with hindsight goals) and
# every run's latest checkpoint on the 30 held-out targets (seeds 20000-20029). Run from the
# repo root with .venv/bin on PATH. STEPS overrides the step budget (session 27: STEPS=35000).
set -euo pipefail
. bench/lib.sh
D=bench/jaco-cartesian
export MUJOCO_GL=egl
mkdir -p "$D/demos" "$D/runs"
[ -f "$D/demos/jaco20.h5" ] || wmil demos collect --task jaco/reach-site-cartesian \
    --episodes 20 --obs state --out "$D/demos/jaco20.h5" --seed 0
for s in ${SEEDS:-0 1}; do
    train_run "$D/runs/iqmpc-s$s" "$D/cartesian.yaml" "$s" "${STEPS:-}" &
done
wait
for s in ${SEEDS:-0 1}; do
    heldout30 "$D/runs/iqmpc-s$s" "$D/heldout30-iqmpc-s$s.json"
    # does Q rank the expert's action first? (the expert plays, the planner is asked)
    python bench/jaco-arm/critic.py "$D/runs/iqmpc-s$s/checkpoints/latest.pt" --seed 20000 \
        --episodes 10 --expert-acts --out "$D/critic-s$s-35k-heldout-expert-acts.json"
done
heldout30 "$D/runs/iqmpc-s1" "$D/heldout30-iqmpc-s1-prior.json" --prior
for s in 0 1 2; do
    [ -d "$D/runs/bc-s$s" ] || wmil train --task jaco/reach-site-cartesian \
        --demos "$D/demos/jaco20.h5" --method bc --offline-steps 5000 --steps 0 \
        --eval-episodes 10 --circular-joints --seed "$s" --threads 1 \
        --out "$D/runs/bc-s$s" > "$D/runs/bc-s$s.log" 2>&1
    heldout30 "$D/runs/bc-s$s" "$D/eval-bc-s$s.json"
done
for s in 0 1; do  # the same with hindsight goals on half the demo sub-trajectories
    [ -d "$D/runs/bc-h05-s$s" ] || wmil train --task jaco/reach-site-cartesian \
        --demos "$D/demos/jaco20.h5" --method bc --offline-steps 5000 --steps 0 \
        --eval-episodes 10 --circular-joints --hindsight-goals 0.5 --seed "$s" --threads 1 \
        --out "$D/runs/bc-h05-s$s" > "$D/runs/bc-h05-s$s.log" 2>&1
    heldout30 "$D/runs/bc-h05-s$s" "$D/eval-bc-h05-s$s.json"
done
python bench/reacher-sym-branch-20k/summarize.py "$D"
