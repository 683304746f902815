#!/usr/bin/env bash
# A single-node SLURM cluster on this machine (controller and compute node in one), for
# trying profiles/slurm and for the test suite: `local-cluster.sh up` installs Debian's
# slurm-wlm and munge if missing, writes a minimal slurm.conf for localhost and starts
# munged, slurmctld and slurmd (no init system needed); `local-cluster.sh down` stops them.
# Needs root (apt-get, /etc/slurm, /run). Without slurmdbd there is no accounting: run
# Snakemake with `--slurm-status-command squeue` (the plugin's default, sacct, then waits
# forever).
set -euo pipefail

up() {
    if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
        || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
    fi
    [ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    install -d -o munge -g munge -m 0755 /run/munge
    [ -S /run/munge/munge.socket.2 ] || runuser -u munge -- /usr/sbin/munged
    munge -n | unmunge | grep -q 'STATUS: *Success'
    local host node
    host=$(hostname -s)
    node=$(slurmd -C | head -1)
    install -d /etc/slurm
    cat >/etc/slurm/slurm.conf <<CONF
ClusterName=local
SlurmctldHost=${host}
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
MinJobAge=300
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
${node} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP
CONF
    install -d -o slurm -g slurm /var/lib/slurm/slurmctld /var/log/slurm
    install -d /var/lib/slurm/slurmd
    running /run/slurmctld.pid || /usr/sbin/slurmctld
    running /run/slurmd.pid || /usr/sbin/slurmd
    for _ in $(seq 100); do
        if sinfo -h -o %T 2>/dev/null | grep -qx idle; then
            echo "slurm: node $(hostname -s) idle"
            return 0
        fi
        sleep 0.2
    done
    echo "slurm: the node did not become idle; see /var/log/slurm/" >&2
    return 1
}

running() {
    [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

down() {
    scancel --state=PENDING,RUNNING --full 2>/dev/null || true
    for pidfile in /run/slurmd.pid /run/slurmctld.pid /run/munge/munged.pid; do
        if running "$pidfile"; then
            kill "$(cat "$pidfile")" || true
        fi
    done
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    *)
        echo "usage: $0 up|down" >&2
        exit 2
        ;;
esac
