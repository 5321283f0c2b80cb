#!/usr/bin/env bash
# Branching experiment on reacher-easy with turned demos (session 13): train each seed to 20k
# steps with the benchmark's settings (base.yaml: those of bench/imitation-100k-reacher-sym-s12),
# then continue copies of that run with one change each, evaluating every 5k. Every branch
# starts from the same weights, buffers and random state: the curves differ by the change
# (and by the random draws that follow it). Run from the repo root, with .venv/bin on PATH.
set -euo pipefail
D=bench/reacher-sym-branch-20k
export MUJOCO_GL=egl
mkdir -p "$D/demos" "$D/runs"
[ -f "$D/demos/reacher.h5" ] || wmil demos collect --task dmc/reacher-easy --episodes 10 \
    --obs state --out "$D/demos/reacher.h5" --seed 0
branch() {  # branch SEED NAME TRAIN_CONFIG_JSON AGENT_JSON STEPS
    local base="$D/runs/base-s$1" run="$D/runs/$2-s$1"
    [ -d "$run" ] || { cp -r "$base" "$run"; python - "$run" "$3" "$4" <<'PY'
import json, sys, yaml
path = f"{sys.argv[1]}/config.yaml"
cfg = yaml.safe_load(open(path))
cfg.update(json.loads(sys.argv[2]))
cfg["agent"].update(json.loads(sys.argv[3]))
cfg["eval_every"] = cfg["checkpoint_every"] = 5000
yaml.safe_dump(cfg, open(path, "w"), sort_keys=False)
PY
    }
    wmil train --resume "$run" --steps "$5" > "$run.log" 2>&1
}
for s in 0 1; do
    sed "s/^seed: SEED$/seed: $s/" "$D/base.yaml" > "$D/runs/base-s$s.yaml"
    [ -f "$D/runs/base-s$s/checkpoints/latest.pt" ] || \
        wmil train --config "$D/runs/base-s$s.yaml" --out "$D/runs/base-s$s" > "$D/runs/base-s$s.log" 2>&1 &
done
wait
# what ran, two at a time, in this order:
branch 0 plain '{}' '{}' 40000 &
branch 0 bc1 '{}' '{"pi_bc_coef": 1.0}' 40000 &
wait
branch 1 plain '{}' '{}' 40000 &
# (bc1 of seed 1 was stopped after a minute, once bc1 of seed 0 had shown its gradient norms)
branch 1 td '{}' '{"value_term": "td"}' 40000 &  # stopped at 27k (see README)
wait
# (gamma 0.95 from scratch, gamma095.yaml, ran to 15k for seed 1 and was stopped for these:)
branch 0 recent '{"recent_fraction": 0.5, "recent_episodes": 10}' '{}' 60000 &
branch 1 recent '{"recent_fraction": 0.5, "recent_episodes": 10}' '{}' 60000 &
wait
# the unchanged branches continued to 60k beside them, for reference
wmil train --resume "$D/runs/plain-s0" --steps 60000 > "$D/runs/plain-s0-60k.log" 2>&1 &
wmil train --resume "$D/runs/plain-s1" --steps 60000 > "$D/runs/plain-s1-60k.log" 2>&1 &
wait
# a tenfold Q-head dropout, to 35k
branch 0 qdrop '{}' '{"model": {"dropout": 0.1}}' 35000 &
branch 1 qdrop '{}' '{"model": {"dropout": 0.1}}' 35000 &
wait
# session 14: a decoupled weight decay of 1 on the Q heads (seed 0), to 40k
branch 0 qwd1 '{}' '{"q_weight_decay": 1.0}' 40000
# session 14: behaviour batches turned by the symmetry as well, to 40k
branch 0 bsym '{"behaviour_symmetry": true}' '{}' 40000 &
branch 1 bsym '{"behaviour_symmetry": true}' '{}' 40000 &
wait
# (bench/quantize-int8's two-thread planner repeats ran here, on the idle machine), then to 60k
# (the log of this segment overwrites the 20k-40k one; metrics.csv keeps every evaluation)
branch 0 bsym '{"behaviour_symmetry": true}' '{}' 60000 &
branch 1 bsym '{"behaviour_symmetry": true}' '{}' 60000 &
wait
# the decoded-reward probe of both at 60k, on the ten evaluation targets
for s in 0 1; do
    wmil bench reward-corr "$D/runs/bsym-s$s" --episodes 10 --seed 10000 --noise "" --threads 1 \
        --out "$D/reward-corr-bsym-s$s-seed10000.json" &
done
wait
# behaviour_symmetry from scratch, seed 2 (s12's seed 2 without it: 0.14, 0.17, 0.21, 0.44,
# 0.82, 0.81, 0.81 at 0-60k, bench/imitation-100k-reacher-sym-s12/progress.md)
sed -e "s/^seed: SEED$/seed: 2/" -e "s/^steps: 20000$/steps: 60000/" "$D/base.yaml" \
    > "$D/runs/bsym-scratch-s2.yaml"
echo "behaviour_symmetry: true" >> "$D/runs/bsym-scratch-s2.yaml"
wmil train --config "$D/runs/bsym-scratch-s2.yaml" --out "$D/runs/bsym-scratch-s2" \
    > "$D/runs/bsym-scratch-s2.log" 2>&1
# what the 60k critics make of the demonstrations (session 14)
python "$D/critic_probe.py" "$D"/runs/{plain,bsym,recent}-s{0,1} > "$D/critic-probe.json"
# session 15: the value term averaged over every row (IQ-Learn's "value" form, with the target
# heads' V' as everywhere here), to 40k; stopped at 27k: Q on behaviour rows drifted down as
# td's had (see README)
branch 0 mix '{}' '{"value_term": "mix"}' 40000 &
branch 1 mix '{}' '{"value_term": "mix"}' 40000 &
wait
# session 15: the v0 term at ten times its weight (v0_coef 0.1 instead of 1 - gamma = 0.01)
branch 0 v0c01 '{}' '{"v0_coef": 0.1}' 40000 &
branch 1 v0c01 '{}' '{"v0_coef": 0.1}' 40000 &
wait
# session 15: negatives at expert states, perturbed expert actions with std 0.3, then 1.0
branch 0 neg03 '{}' '{"negative_action_std": 0.3}' 40000 &
branch 1 neg03 '{}' '{"negative_action_std": 0.3}' 40000 &
wait
branch 0 neg10 '{}' '{"negative_action_std": 1.0}' 40000 &
branch 1 neg10 '{}' '{"negative_action_std": 1.0}' 40000 &
wait
# session 15: the value term over the expert rows alone (IQ-Learn's "value_expert" form)
branch 0 vexp '{}' '{"value_term": "expert"}' 40000 &
branch 1 vexp '{}' '{"value_term": "expert"}' 40000 &
wait
# session 15: the critic probe of the 20k starting points and of the session's branches, and
# a replay of ten evaluation episodes of the latest checkpoints (the two halves ran side by side
# and were merged, sorted by run, into episode-probe.json)
python "$D/critic_probe.py" "$D"/runs/{base,mix,v0c01,neg03,neg10,vexp}-s{0,1} \
    > "$D/critic-probe-s15.json"
python "$D/episode_probe.py" "$D"/runs/{plain,neg03,v0c01,bsym}-s{0,1} > "$D/episode-probe.json"
# curves.json from the runs
python "$D/summarize.py" "$D"
# session 17: an averaged copy of every network (agent ema 2e-4, an average over about the last
# 5k updates, started at the 20k weights) that evaluation plans with; each evaluation also
# scores the online networks on the same targets (online_normalized_score), to 60k
branch 0 ema '{}' '{"ema": 0.0002}' 60000 &
branch 1 ema '{}' '{"ema": 0.0002}' 60000 &
wait
python "$D/summarize.py" "$D"
