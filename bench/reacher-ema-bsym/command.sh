#!/usr/bin/env bash
# Reacher-easy, 10 turned demos, the settings of bench/reacher-ema (averaged copy, ema 2e-4)
# with the behaviour batches turned by the task's symmetry as well (behaviour_symmetry, which
# raised the 25k-60k mean of two branched seeds from 0.64 to 0.73 in session 14, without the
# average). Three seeds from scratch side by side on the two cores, evaluating every 10k on ten
# targets (seeds 10000+seed), the averaged copy (normalized_score) and the online networks
# (online_normalized_score) on the same ones: paired with reacher-ema's evaluations.
# Rerunning resumes each seed from its last checkpoint; STEPS sets the target.
# Run from the repo root, with .venv/bin on PATH.
D=bench/reacher-ema-bsym P=bsym exec bench/reacher-ema/command.sh
# Session 21 started the three at 12:04 on an AVX2-only CPU where they trained at 3-5 steps/s
# each (11-12 on the earlier Xeon) and stopped them at about 1.3k steps: no result yet.
