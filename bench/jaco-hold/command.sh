#!/usr/bin/env bash
# jaco/reach-site with the fingers held still (the task's hold_actions, session 25): the agent
# commands the six arm joints and still reads all nine joints. Otherwise bench/jaco-ema's run
# (ema-sym03-arm.yaml), seeds 0 and 1 beside each other; stopped at 35k (curves.json).
# It ran at commit f195a5e: since 6ea91ed the task reads the six arm joints only, so this
# setting and its checkpoints need that commit. To repeat it:
#   git worktree add /tmp/wmil-f195a5e f195a5e && cd /tmp/wmil-f195a5e && \
#       PATH=<repo>/.venv/bin:$PATH bench/jaco-hold/command.sh
# where the script is the one that commit holds. On the current task the same run is
# bench/jaco-arm/command.sh. The diagnoses beside it (prior_on_demos.py, distances.py) say
# how they were run.
set -euo pipefail
echo "bench/jaco-hold ran at commit f195a5e; see the comment at the top of $0" >&2
exit 2
