# Shell functions the bench scripts share; they source it from the repo root (. bench/lib.sh).

# train_run RUN CONFIG [SEED] [STEPS]: start the run RUN from CONFIG (with --seed SEED when
# given), or resume it when it has a checkpoint; --steps STEPS either way when given. Logs to
# RUN.log, appending on resume.
train_run() {
    local run=$1 config=$2 seed=${3:-} steps=${4:-}
    if [ -f "$run/checkpoints/latest.pt" ]; then
        wmil train --resume "$run" ${steps:+--steps "$steps"} >> "$run.log" 2>&1
    else
        wmil train --config "$config" ${seed:+--seed "$seed"} ${steps:+--steps "$steps"} \
            --out "$run" > "$run.log" 2>&1
    fi
}

# heldout30 RUN OUT [EVAL OPTIONS...]: `wmil eval` of RUN on the 30 held-out episodes
# (seeds 20000-20029) on one thread, JSON to OUT.
heldout30() {
    local run=$1 out=$2
    shift 2
    wmil eval "$run" --episodes 30 --seed 20000 --threads 1 "$@" --out "$out"
}

# branch_online SRC BRANCH STEPS OUT: copy the offline run SRC to BRANCH (once; evaluations and
# checkpoints every 5000 steps), train it online to STEPS (resuming when killed), and score it
# on the 30 held-out episodes with the averaged networks (OUT.json) and the online ones
# (OUT-online.json).
branch_online() {
    local src=$1 branch=$2 steps=$3 out=$4
    [ -d "$branch" ] || { cp -r "$src" "$branch"
        sed -i 's/^eval_every: .*/eval_every: 5000/; s/^checkpoint_every: .*/checkpoint_every: 5000/' \
            "$branch/config.yaml"; }
    wmil train --resume "$branch" --steps "$steps" >> "$branch.log" 2>&1
    heldout30 "$branch" "$out.json"
    heldout30 "$branch" "$out-online.json" --online
}
