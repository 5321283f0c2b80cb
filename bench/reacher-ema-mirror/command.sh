#!/usr/bin/env bash
# Reacher-easy, 10 demos, the settings of bench/reacher-ema-bsym (averaged copy, demo and
# behaviour batches turned) with half the turned sub-trajectories first reflected by the
# reacher's mirror (symmetry_mirror: the arm bent the other way). Held-out failures of the
# reacher-ema runs sit at the inner and outer target radii (bench/reacher-ema/radius.py),
# where the arm must fold or stretch; the expert bends the elbow the way nearer its start, so
# ten demos show each radius folded one way. Same seeds, demos and evaluation targets as
# bench/reacher-ema-bsym: each seed is a paired comparison with that run.
# Rerunning resumes each seed from its last checkpoint; STEPS sets the target, SEEDS the seeds.
# Run from the repo root, with .venv/bin on PATH.
D=bench/reacher-ema-mirror P=mirror exec bench/reacher-ema/command.sh
