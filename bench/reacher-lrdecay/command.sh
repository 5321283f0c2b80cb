#!/usr/bin/env bash
# Reacher-easy, 10 turned demos, the settings of bench/reacher-ema (averaged copy, ema 2e-4)
# plus a linear learning-rate decay: full rate to update 20k, then down to a tenth of it at
# update 60k, a tenth after (agent lr_decay_*). Updates run 1000 ahead of environment steps
# here (1000 offline updates; the seed steps' burst of 1000 updates, then one per step), so the
# decay spans steps 19k-59k, and to step 19k the runs are bit for bit reacher-ema's (their
# evaluations at 0 and 10k are identical). Three seeds side by
# side on the two cores, evaluating every 10k on ten targets (seeds 10000+seed), the averaged
# copy (normalized_score) and the online networks (online_normalized_score) on the same ones.
# Rerunning resumes each seed from its last checkpoint; STEPS sets the target.
# Run from the repo root, with .venv/bin on PATH.
D=bench/reacher-lrdecay P=lrdecay exec bench/reacher-ema/command.sh
