#!/usr/bin/env bash
# jaco/reach-site-cartesian, session 29: the ranking term's negatives drawn also from the policy
# prior at the expert's latents (`rank_prior_negatives`: the planner's own proposals, the hard
# counter-examples of implicit behaviour cloning). bench/jaco-rank's setting (rank.yaml,
# rank_coef 1) with 0 and 8 such negatives, side by side, one core each: 3000 offline updates
# on the 20 demos, scored with the online networks on the 30 held-out targets (also the prior
# alone, and a 512 x 6 planner for the prior negatives), and the critic
# probe (does the planner's pick point the expert's way, does Q prefer the expert's action) on
# the demonstrated targets (seeds 0-9) and on held-out ones (20000-20009); then each offline run
# continued online to 15k steps (bench/jaco-rank's off3k branch) and scored with both networks.
# Run from the repo root with .venv/bin on PATH; resumes killed runs; the demos are
# bench/jaco-cartesian's (its command.sh collects them). SEED picks the seed (default 0),
# PRIOR_NEGATIVES the settings (default "0 8"); results already written are not redone.
set -euo pipefail
. bench/lib.sh
D=bench/jaco-rank-prior
S=${SEED:-0}
export MUJOCO_GL=egl
mkdir -p "$D/runs"
for k in ${PRIOR_NEGATIVES:-0 8}; do
    (
    name="offline-pi$k-s$S"
    run="$D/runs/$name"
    sed -e "s/rank_coef: RANK/rank_coef: 1.0, rank_prior_negatives: $k/" \
        -e 's/^offline_steps: .*/offline_steps: 3000/' -e 's/^steps: .*/steps: 0/' \
        bench/jaco-rank/rank.yaml > "$run.yaml"
    [ -d "$run" ] || wmil train --config "$run.yaml" --seed "$S" --out "$run" > "$run.log" 2>&1
    [ -f "$D/$name-heldout30.json" ] || heldout30 "$run" "$D/$name-heldout30.json" --online
    # the policy prior alone, and (prior negatives only) a 512 x 6 planner
    [ -f "$D/$name-heldout30-prior.json" ] ||
        heldout30 "$run" "$D/$name-heldout30-prior.json" --online --prior
    [ "$k" = 0 ] || [ -f "$D/$name-heldout30-512x6.json" ] ||
        heldout30 "$run" "$D/$name-heldout30-512x6.json" --online --samples 512 --iterations 6
    for seed in 0 20000; do
        out="$D/critic-$name-seed$seed.json"
        [ -f "$out" ] || python bench/jaco-arm/critic.py "$run/checkpoints/latest.pt" \
            --seed $seed --episodes 10 --expert-acts --online --out "$out"
    done
    branch_online "$run" "$D/runs/off3k-pi$k-s$S" "${STEPS:-15000}" "$D/heldout30-off3k-pi$k-s$S"
    ) &
done
wait
