#!/usr/bin/env bash
# The three reacher-ema runs' last checkpoints on 30 held-out targets (seeds 20000-20029, none
# of them a training evaluation's or a demo's), once with the averaged networks and once with
# the online ones (`--online`), two evaluations at a time on one torch thread each, then the
# averaged networks' policy prior alone (`--prior`: its mean action, no planning) beside the
# best checkpoint (`best`: the highest 10-episode training evaluation, averaged networks),
# then that checkpoint's prior alone (`best-prior`), and last an 8x planning budget (256
# samples, 4 iterations) on the first ten targets (`256x4-n10`); evaluations already written
# are kept; prints the table and writes heldout.json. Then `wmil bench reward-corr` on the
# best and the last checkpoint of each seed (reward-corr-s<seed>-{best,100k}.json).
# D and P name another benchmark's directory and run prefix (bench/reacher-lrdecay, lrdecay),
# LAST the last checkpoint's label (default 100k).
# Run from the repo root after command.sh, with .venv/bin on PATH.
set -euo pipefail
D=${D:-bench/reacher-ema}
P=${P:-ema}
LAST=${LAST:-100k}
export MUJOCO_GL=egl
mkdir -p "$D/runs/heldout"
# ev NAME CHECKPOINT [FLAGS]: one 30-episode evaluation in the background, unless already done
ev() {
    local out="$D/runs/heldout/$1"
    [ -f "$out.json" ] || wmil eval "$2" --episodes 30 --seed 20000 --threads 1 "${@:3}" \
        --out "$out.json" > "$out.log" 2>&1 &
}
for s in 0 1 2; do
    R="$D/runs/$P-s$s"
    ev "$P-s$s-averaged" "$R"; ev "$P-s$s-online" "$R" --online; wait
    ev "$P-s$s-prior" "$R" --prior; ev "$P-s$s-best" "$R/checkpoints/best.pt"; wait
    ev "$P-s$s-best-prior" "$R/checkpoints/best.pt" --prior; wait
    # an 8x planning budget on the first ten of the targets
    ev "$P-s$s-256x4-n10" "$R" --samples 256 --iterations 4 --episodes 10; wait
    # what the decoded reward ranks (4 episodes per behaviour, seeds 20000-20003), best and last
    for c in best "$LAST"; do
        ck="$R/checkpoints/$([ $c = best ] && echo best || echo latest).pt"
        [ -f "$D/reward-corr-s$s-$c.json" ] || wmil bench reward-corr "$ck" --threads 1 \
            --out "$D/reward-corr-s$s-$c.json" > "$D/runs/heldout/reward-corr-s$s-$c.log"
    done
done
python - "$D" "$P" <<'PY'
import json
import statistics
import sys
from pathlib import Path

d, prefix = Path(sys.argv[1]), sys.argv[2]
NETS = ("averaged", "online", "prior", "best", "best-prior", "256x4-n10")
table = {}
for s in (0, 1, 2):
    for net in NETS:
        r = json.loads((d / "runs" / "heldout" / f"{prefix}-s{s}-{net}.json").read_text())
        table.setdefault(f"seed {s}", {})[net] = {
            "step": r["step"], "normalized_score": r["normalized_score"],
            "return_mean": r["return_mean"],
            "success_rate": r["success_rate"], "returns": r["returns"]}
for net in NETS:
    table.setdefault("mean of 3", {})[net] = {
        "normalized_score": statistics.mean(table[f"seed {s}"][net]["normalized_score"]
                                            for s in (0, 1, 2)),
        "success_rate": statistics.mean(table[f"seed {s}"][net]["success_rate"]
                                        for s in (0, 1, 2))}
for row, nets in table.items():
    print(row, "  ".join(f"{n}{'@' + str(v['step']) if 'step' in v else ''} "
                         f"{v['normalized_score']:.3f} (success {v['success_rate']:.2f})"
                         for n, v in nets.items()))
# the 256 x 4 planner beside 64 x 2 and the prior on the same ten targets (seeds 20000-20009)
first = {n: statistics.mean(statistics.mean(table[f"seed {s}"][n]["returns"][:10])
                            / table[f"seed {s}"][n]["return_mean"]
                            * table[f"seed {s}"][n]["normalized_score"] for s in (0, 1, 2))
         for n in ("averaged", "prior", "256x4-n10")}
table["mean of 3, first 10 targets"] = first
print("first 10 targets, mean of 3:", "  ".join(f"{n} {v:.3f}" for n, v in first.items()))
(d / "heldout.json").write_text(json.dumps(table, indent=2) + "\n")
PY
