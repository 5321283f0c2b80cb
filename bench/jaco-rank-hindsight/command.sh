#!/usr/bin/env bash
# jaco/reach-site-cartesian, session 30: the ranked critic (bench/jaco-rank's rank.yaml,
# rank_coef 1) trained with hindsight goals on its expert batches (--hindsight-goals P,
# wmil_core.hindsight: a share P of demo sub-trajectories take a later point of their own path
# as goal), so that the ranking term and the inverse soft-Q loss see expert actions at goals all
# along the twenty demonstrated paths instead of at twenty points. 3000 offline updates on the
# 20 demos (session 29's offline-pi0-s0 is P = 0: 0.377 held out), scored with the online
# networks on the 30 held-out targets, the planner and the prior alone, and the critic probe
# on held-out targets (20000-20009); then continued online to STEPS (default 15000) and
# scored with both networks. Run from the repo root with .venv/bin on PATH; the demos are
# bench/jaco-cartesian's (its command.sh collects them). SEED (default 0), FRACTIONS (default
# "0.5"); results already written are not redone.
set -euo pipefail
. bench/lib.sh
D=bench/jaco-rank-hindsight
S=${SEED:-0}
export MUJOCO_GL=egl
mkdir -p "$D/runs"
for p in ${FRACTIONS:-0.5}; do
    (
    name="offline-h$p-s$S"
    run="$D/runs/$name"
    { sed -e "s/rank_coef: RANK/rank_coef: 1.0/" \
        -e 's/^offline_steps: .*/offline_steps: 3000/' -e 's/^steps: .*/steps: 0/' \
        bench/jaco-rank/rank.yaml; echo "hindsight_goals: $p"; } > "$run.yaml"
    [ -d "$run" ] || wmil train --config "$run.yaml" --seed "$S" --out "$run" > "$run.log" 2>&1
    [ -f "$D/$name-heldout30.json" ] || heldout30 "$run" "$D/$name-heldout30.json" --online
    [ -f "$D/$name-heldout30-prior.json" ] ||
        heldout30 "$run" "$D/$name-heldout30-prior.json" --online --prior
    out="$D/critic-$name-seed20000.json"
    [ -f "$out" ] || python bench/jaco-arm/critic.py "$run/checkpoints/latest.pt" \
        --seed 20000 --episodes 10 --expert-acts --online --out "$out"
    [ -n "${OFFLINE_ONLY:-}" ] && exit 0
    branch_online "$run" "$D/runs/off3k-h$p-s$S" "${STEPS:-15000}" "$D/heldout30-off3k-h$p-s$S"
    ) &
done
wait
