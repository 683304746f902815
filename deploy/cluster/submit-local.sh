#!/usr/bin/env bash
# A local stand-in for a cluster's submit command (sbatch, qsub ...), for Snakemake's
# cluster-generic executor (profiles/cluster-local): start the job script as its own
# detached process group, like a job on another node, and print its id as a scheduler does.
#   MARKETPIPE_CLUSTER_LOGS   where job logs and the list of job pids go
#                             (default .snakemake/cluster-logs)
#   MARKETPIPE_JOB_STATE_ROOT if set, every job keeps its state (ledger, logs) in a fresh
#                             directory under it, as on nodes that share no filesystem
set -euo pipefail
jobscript="${!#}"
log_dir="${MARKETPIPE_CLUSTER_LOGS:-.snakemake/cluster-logs}"
mkdir -p "$log_dir"
if [[ -n "${MARKETPIPE_JOB_STATE_ROOT:-}" ]]; then
    mkdir -p "$MARKETPIPE_JOB_STATE_ROOT"
    MARKETPIPE_STATE_DIR="$(mktemp -d -p "$MARKETPIPE_JOB_STATE_ROOT" job.XXXXXX)"
    export MARKETPIPE_STATE_DIR
fi
nohup setsid bash "$jobscript" >"$log_dir/$(basename "$jobscript").log" 2>&1 </dev/null &
echo "$!" >>"$log_dir/pids"
echo "$!"
