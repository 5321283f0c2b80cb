#!/usr/bin/env bash
# jaco/reach-site-cartesian with a ranking term on Q at the expert's states (session 28:
# `rank_coef`, softmax cross-entropy putting Q(z_E, a_E) above 8 other actions; rank.yaml is
# bench/jaco-cartesian's IQ-MPC setting plus that term). First offline only (3000 updates on the
# 20 demos, rank_coef 0, 0.1, 1 and 10; and 8000 updates at 1), each scored with its online
# networks (the averaged copy has barely moved after 3000 updates) on the 30 held-out targets;
# then online from scratch with rank_coef 1 (seeds 0 and 1 beside each other, 20k steps), each
# on the held-out targets with its averaged and its online networks, and the critic probe. Last,
# the offline rank_coef 1 run continued online to 15k steps (off3k-rank1-s0: 3000 offline
# updates instead of 1000), scored the same way. Run from the repo root with .venv/bin on PATH;
# resumes killed runs; the demos are bench/jaco-cartesian's (its command.sh collects them).
set -euo pipefail
. bench/lib.sh
D=bench/jaco-rank
export MUJOCO_GL=egl
mkdir -p "$D/runs"
# NAME:RANK_COEF:OFFLINE_UPDATES
for spec in offline-r0.0:0.0:3000 offline-r0.1:0.1:3000 offline-r1.0:1.0:3000 \
        offline-r10.0:10.0:3000 offline8k-r1.0:1.0:8000; do
    IFS=: read -r name c n <<< "$spec"
    run="$D/runs/$name"
    sed -e "s/rank_coef: RANK/rank_coef: $c/" -e "s/^offline_steps: .*/offline_steps: $n/" \
        -e 's/^steps: .*/steps: 0/' "$D/rank.yaml" > "$run.yaml"
    [ -d "$run" ] || wmil train --config "$run.yaml" --out "$run" > "$run.log" 2>&1
    heldout30 "$run" "$D/$name-heldout30.json" --online
done
sed -e 's/rank_coef: RANK/rank_coef: 1.0/' "$D/rank.yaml" > "$D/runs/rank1.yaml"
for s in 0 1; do
    train_run "$D/runs/rank1-s$s" "$D/runs/rank1.yaml" "$s" "${STEPS:-20000}" &
done
wait
for s in 0 1; do
    heldout30 "$D/runs/rank1-s$s" "$D/heldout30-rank1-s$s.json" &
done
wait
for s in 0 1; do
    heldout30 "$D/runs/rank1-s$s" "$D/heldout30-rank1-s$s-online.json" --online &
done
wait
for s in 0 1; do
    python bench/jaco-arm/critic.py "$D/runs/rank1-s$s/checkpoints/latest.pt" --seed 20000 \
        --episodes 10 --expert-acts --out "$D/critic-rank1-s$s-heldout-expert-acts.json" &
done
wait
branch_online "$D/runs/offline-r1.0" "$D/runs/off3k-rank1-s0" 15000 "$D/heldout30-off3k-rank1-s0"
python bench/reacher-sym-branch-20k/summarize.py "$D"
