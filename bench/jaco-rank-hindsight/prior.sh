#!/usr/bin/env bash
# jaco/reach-site-cartesian, session 30: is the world model's latent, or the way the policy
# prior is trained on it, what keeps the prior below behaviour cloning on new targets?
# 1. latent_bc.py: a behaviour-cloning head (wmil's BC head, squared error) on the frozen
#    encoder of session 29's offline rank_coef 1 run (bench/jaco-rank-prior's offline-pi0-s0;
#    run that script first), and with the encoder fine-tuned too; 5000 updates.
# 2. The same offline setting (rank_coef 1, 3000 updates, seed 0) with the prior cloned:
#    pi_bc_coef 100 as -log pi (the paper code's form), and 10, 100, 10000 as the mean action's
#    squared error (pi_bc_form: mse); each scored on the 30 held-out targets with the prior
#    alone and with the 64 x 2 planner (online networks); then the frozen-encoder head on the
#    10000 run's encoder, at 5000 and at 3000 updates, and that run's own prior cloned further
#    on encoded latents alone (--head prior, 3000 updates).
# Run from the repo root with .venv/bin on PATH; results already written are not redone.
set -euo pipefail
. bench/lib.sh
D=bench/jaco-rank-hindsight
export MUJOCO_GL=egl
mkdir -p "$D/runs"
base=bench/jaco-rank-prior/runs/offline-pi0-s0/checkpoints/latest.pt
[ -f "$D/latent-bc-frozen-offline-pi0-s0.json" ] ||
    python "$D/latent_bc.py" "$base" --out "$D/latent-bc-frozen-offline-pi0-s0.json"
[ -f "$D/latent-bc-trained-offline-pi0-s0.json" ] ||
    python "$D/latent_bc.py" "$base" --train-encoder --out "$D/latent-bc-trained-offline-pi0-s0.json"
for v in bc100:100.0:nll mse10:10.0:mse mse100:100.0:mse mse10000:10000.0:mse; do
    IFS=: read -r name coef form <<< "$v"
    run="$D/runs/offline-$name-s0"
    sed -e "s/rank_coef: RANK/rank_coef: 1.0, pi_bc_coef: $coef, pi_bc_form: $form/" \
        -e 's/^offline_steps: .*/offline_steps: 3000/' -e 's/^steps: .*/steps: 0/' \
        -e 's/^eval_episodes: .*/eval_episodes: 1/' bench/jaco-rank/rank.yaml > "$run.yaml"
    [ -d "$run" ] || wmil train --config "$run.yaml" --seed 0 --out "$run" > "$run.log" 2>&1
    [ -f "$D/offline-$name-s0-heldout30-prior.json" ] ||
        heldout30 "$run" "$D/offline-$name-s0-heldout30-prior.json" --online --prior
    [ -f "$D/offline-$name-s0-heldout30.json" ] ||
        heldout30 "$run" "$D/offline-$name-s0-heldout30.json" --online
done
ck="$D/runs/offline-mse10000-s0/checkpoints/latest.pt"
[ -f "$D/latent-bc-frozen-offline-mse10000-s0.json" ] ||
    python "$D/latent_bc.py" "$ck" --out "$D/latent-bc-frozen-offline-mse10000-s0.json"
[ -f "$D/latent-bc-frozen-3000upd-offline-mse10000-s0.json" ] ||
    python "$D/latent_bc.py" "$ck" --updates 3000 \
        --out "$D/latent-bc-frozen-3000upd-offline-mse10000-s0.json"
# the run's own prior, cloned further on the encoded latents alone (encoder frozen)
[ -f "$D/latent-bc-prior-3000upd-offline-mse10000-s0.json" ] ||
    python "$D/latent_bc.py" "$ck" --head prior --updates 3000 \
        --out "$D/latent-bc-prior-3000upd-offline-mse10000-s0.json"
# and a prior started afresh and cloned on those latents (--reinit), with the planner using it
[ -f "$D/latent-bc-prior-reinit-3000upd-offline-mse10000-s0.json" ] ||
    python "$D/latent_bc.py" "$ck" --head prior --reinit --updates 3000 \
        --out "$D/latent-bc-prior-reinit-3000upd-offline-mse10000-s0.json"
