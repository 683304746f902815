#!/usr/bin/env bash
# A single-node SLURM cluster on this machine (controller and compute node in one), for
# trying profiles/slurm and for the test suite: `local-cluster.sh up` installs Debian's
# slurm-wlm, munge, slurmdbd and MariaDB if missing, writes a minimal slurm.conf for
# localhost and starts MariaDB, munged, slurmdbd, slurmctld and slurmd (no init system
# needed), with job accounting, so `sacct` and the executor plugin's default status
# command work as on a real cluster; `local-cluster.sh down` stops them. Needs root
# (apt-get, /etc/slurm, /run).
set -euo pipefail

DB_PASSWORD=marketpipe-local-accounting  # a throwaway database on this machine only

up() {
    if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
        || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null \
        || ! command -v slurmdbd >/dev/null || ! command -v mariadbd >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends \
            slurmctld slurmd slurm-client slurmdbd munge mariadb-server >/dev/null
    fi
    [ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    install -d -o munge -g munge -m 0755 /run/munge
    [ -S /run/munge/munge.socket.2 ] || runuser -u munge -- /usr/sbin/munged
    munge -n | unmunge | grep -q 'STATUS: *Success'
    accounting
    local host node
    host=$(hostname -s)
    node=$(slurmd -C | head -1)
    install -d /etc/slurm
    cat >/etc/slurm/slurm.conf <<CONF
ClusterName=local
SlurmctldHost=${host}(127.0.0.1)
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
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
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

# MariaDB and slurmdbd: SLURM's job accounting (what `sacct` reads).
accounting() {
    install -d -o mysql -g mysql /run/mysqld
    if ! running /run/mysqld/mysqld.pid; then
        # mariadbd does not daemonize itself; setsid keeps it out of this script's session.
        setsid -f /usr/sbin/mariadbd --user=mysql --pid-file=/run/mysqld/mysqld.pid \
            >/dev/null 2>&1
        for _ in $(seq 100); do
            mariadb -e "SELECT 1" >/dev/null 2>&1 && break
            sleep 0.1
        done
    fi
    mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '${DB_PASSWORD}';
        CREATE DATABASE IF NOT EXISTS slurm_acct_db;
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
    install -d /etc/slurm
    cat >/etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
PidFile=/run/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=${DB_PASSWORD}
StorageLoc=slurm_acct_db
CONF
    chown slurm:slurm /etc/slurm/slurmdbd.conf
    chmod 600 /etc/slurm/slurmdbd.conf
    install -d -o slurm -g slurm /var/log/slurm
    running /run/slurmdbd.pid || /usr/sbin/slurmdbd
    for _ in $(seq 100); do
        (exec 3<>/dev/tcp/127.0.0.1/6819) 2>/dev/null && return 0
        sleep 0.1
    done
    echo "slurm: slurmdbd did not start; see /var/log/slurm/slurmdbd.log" >&2
    return 1
}

down() {
    scancel --state=PENDING,RUNNING --full 2>/dev/null || true
    for pidfile in /run/slurmd.pid /run/slurmctld.pid /run/slurmdbd.pid \
        /run/mysqld/mysqld.pid /run/munge/munged.pid; do
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
