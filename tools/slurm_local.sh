#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for `snakemake --profile workflow/profiles/slurm` runs
# that really go through sbatch (tests/pipeline/test_slurm.py, `make deploy-check`; docs/DEPLOY.md):
# munge, MariaDB, slurmdbd (so that `sacct`, which the Snakemake SLURM plugin reads job states
# with, works), slurmctld and slurmd, with a slurm.conf generated for localhost from what
# `slurmd -C` reports (CPUs, sockets, cores, memory) and one partition, "local".
#
#   tools/slurm_local.sh up       # install (apt, Debian/Ubuntu) and start what is missing; idempotent
#   tools/slurm_local.sh status   # one line: running or not (exit 0 / 1)
#   tools/slurm_local.sh down     # stop the daemons this script starts
#
# Needs root (packages, daemons, /etc/slurm). Written for Debian 12's slurm-wlm 22.05; no systemd
# needed (the daemons are started directly). Logs: /var/log/slurm/.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
DBD_CONF=/etc/slurm/slurmdbd.conf
CLUSTER=stvm
PARTITION=local
ACCOUNT=stvm
DB_PASS=stvm-local-slurmdbd  # MariaDB password of the local 'slurm' user; the database listens on localhost only
PACKAGES="slurm-wlm slurmdbd munge mariadb-server"

die() { echo "slurm_local.sh: $*" >&2; exit 2; }
log() { echo "slurm_local.sh: $*" >&2; }

running() {  # every daemon answers and the node accepts jobs
  scontrol ping 2> /dev/null | grep -q UP || return 1
  sacctmgr -n list cluster format=cluster 2> /dev/null | grep -qw "$CLUSTER" || return 1
  sinfo -h -N -o %t 2> /dev/null | grep -Eq '^(idle|mix|alloc)'
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local secs=$1 what=$2; shift 2
  for _ in $(seq "$((secs * 2))"); do "$@" > /dev/null 2>&1 && return 0; sleep 0.5; done
  die "$what did not come up within ${secs} s (logs: /var/log/slurm/, /var/log/mysql/)"
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2> /dev/null; }

stop() {  # stop DAEMON: TERM it and wait until it is gone
  local pidfile=/run/$1.pid
  alive "$pidfile" || return 0
  kill "$(cat "$pidfile")"
  for _ in $(seq 60); do alive "$pidfile" || return 0; sleep 0.5; done
  die "$1 did not stop within 30 s"
}

install_packages() {
  local missing=""
  for cmd in slurmctld slurmd slurmdbd sbatch sacct munged mariadbd; do
    command -v "$cmd" > /dev/null || PATH=$PATH:/usr/sbin command -v "$cmd" > /dev/null || missing="$missing $cmd"
  done
  [ -z "$missing" ] && return 0
  command -v apt-get > /dev/null || die "missing:$missing; install SLURM (slurmctld, slurmd, slurmdbd), munge and MariaDB with your package manager"
  log "installing $PACKAGES (missing:$missing)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $PACKAGES > /var/log/slurm-local-apt.log 2>&1 \
    || { apt-get update -q > /dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $PACKAGES > /var/log/slurm-local-apt.log 2>&1; } \
    || die "apt-get install $PACKAGES failed (log: /var/log/slurm-local-apt.log)"
}

write_if_changed() {  # write_if_changed FILE OWNER MODE < content; returns 0 when the file changed
  local tmp; tmp=$(mktemp)
  cat > "$tmp"
  if [ -f "$1" ] && cmp -s "$tmp" "$1"; then rm -f "$tmp"; return 1; fi
  install -o "$2" -g "$2" -m "$3" "$tmp" "$1"; rm -f "$tmp"; return 0
}

up() {
  [ "$(id -u)" = 0 ] || die "needs root (it installs packages and starts daemons); run it with sudo"
  export PATH=$PATH:/usr/sbin:/sbin
  install_packages
  mkdir -p /etc/slurm /var/log/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /run/munge
  chown slurm:slurm /var/log/slurm /var/lib/slurm /var/lib/slurm/slurmctld
  chown munge:munge /run/munge

  # munge: the key the package made, or a new one
  [ -s /etc/munge/munge.key ] || { mungekey --create --keyfile /etc/munge/munge.key; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
  if ! munge -n 2> /dev/null | unmunge > /dev/null 2>&1; then
    /etc/init.d/munge start > /dev/null 2>&1 || runuser -u munge -- munged
    wait_for 15 munged sh -c 'munge -n | unmunge'
  fi

  # MariaDB and the accounting database's user
  if ! mysqladmin ping > /dev/null 2>&1; then
    /etc/init.d/mariadb start > /dev/null 2>&1 || die "MariaDB did not start (log: /var/log/mysql/)"
    wait_for 30 MariaDB mysqladmin ping
  fi
  mysql -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"

  local changed=0
  write_if_changed "$DBD_CONF" slurm 600 <<EOF && changed=1
# Written by tools/slurm_local.sh (one-node cluster on localhost); rewritten on every 'up'.
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
PidFile=/run/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
EOF
  local dbd_changed=$changed

  # the node as slurmd sees it (CPUs, sockets, cores, threads, memory): nothing is assumed
  local host node
  host=$(hostname -s)
  node=$(slurmd -C | head -1 | sed "s/^NodeName=[^ ]*/NodeName=$host/")
  changed=0
  write_if_changed "$CONF" root 644 <<EOF && changed=1
# Written by tools/slurm_local.sh (one-node cluster on localhost); rewritten on every 'up'.
ClusterName=$CLUSTER
SlurmctldHost=$host
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
MinJobAge=300
KillWait=10
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/none
$node State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  # slurmdbd after slurm.conf: sacctmgr finds slurmdbd through it
  if [ "$dbd_changed" = 1 ]; then stop slurmdbd; fi
  alive /run/slurmdbd.pid || slurmdbd
  wait_for 30 slurmdbd sacctmgr -n list cluster
  sacctmgr -n list cluster format=cluster | grep -qw "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" > /dev/null
  sacctmgr -n list account format=account | grep -qw "$ACCOUNT" || sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" > /dev/null
  for user in root $(getent passwd 1000 | cut -d: -f1); do
    sacctmgr -n list user format=user | grep -qw "$user" || sacctmgr -i add user "$user" account="$ACCOUNT" > /dev/null
  done
  if [ "$changed" = 1 ]; then stop slurmd; stop slurmctld; fi
  alive /run/slurmctld.pid || slurmctld
  wait_for 30 slurmctld sh -c 'scontrol ping | grep -q UP'
  alive /run/slurmd.pid || slurmd
  wait_for 30 "slurmd (node $host)" sh -c "sinfo -h -N -o %t | grep -Eq '^(idle|mix|alloc)'"
  log "up: cluster $CLUSTER, partition $PARTITION, $(echo "$node" | grep -o 'CPUs=[0-9]*') $(echo "$node" | grep -o 'RealMemory=[0-9]*') MB"
}

down() {
  [ "$(id -u)" = 0 ] || die "needs root; run it with sudo"
  for d in slurmd slurmctld slurmdbd; do
    if alive "/run/$d.pid"; then stop "$d"; log "stopped $d"; fi
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) if running; then echo "slurm_local.sh: running"; else echo "slurm_local.sh: not running"; exit 1; fi ;;
  *) die "usage: tools/slurm_local.sh up|status|down" ;;
esac
