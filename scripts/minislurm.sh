#!/bin/bash
# A real, throw-away SLURM cluster on this one machine (root, Debian 12), for trying aslhpc
# end to end without a GPU cluster: munge, MariaDB + slurmdbd (so sacct/submitit see real job
# states), slurmctld and NNODES slurmd "nodes" n1..nN, each advertising Gres=gpu:v100-sxm2:4
# backed by fake character-device GPUs, partition "reservation", reservation CSYE7374_GPU.
# Recipe and pitfalls in our own words: docs/mini-cluster.md.
#
# Usage: scripts/minislurm.sh up [NNODES]   install packages if missing, start fresh (default 1 node);
#                                           already up with NNODES: say so, exit 0; other count: restart
#        scripts/minislurm.sh down          cancel jobs, stop every daemon it started (by pid file)
#        scripts/minislurm.sh status        sinfo + reservation; exit 0 only when the cluster is up
#        scripts/minislurm.sh limit N [ACCT]  a low submit limit to test against: account ACCT (default
#                                           aslhpc-limited) for the calling user with MaxSubmitJobs=N, and
#                                           AccountingStorageEnforce=limits (reconfigured); N=0 removes the
#                                           account again. Jobs submitted without --account are not limited.
# Env: MINISLURM_CPUS (per node, default 12), MINISLURM_MEM_MB (per node, default 24000/NNODES),
#      MINISLURM_USERS (reservation users, default root plus $SUDO_USER),
#      MINISLURM_ENFORCE_LIMITS=1 (enforce association limits such as `limit`'s from the start; default off).
set -euo pipefail

RESERVATION=CSYE7374_GPU
PARTITION=reservation
GPU_TYPE=v100-sxm2
GPUS_PER_NODE=4
FAKEGPU=/var/lib/slurm/fakegpu
STATE=/run/minislurm          # nodes file: the node count of the running cluster
CLUSTER_NAME=lab              # slurm.conf's ClusterName; written to $STATE/cluster once the cluster is up:
                              # the end-to-end tests run only against a cluster this script brought up
CONF=/etc/slurm
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)

t0=$EPOCHREALTIME
say() { printf '[%6.2fs] %s\n' "$(awk "BEGIN{print $EPOCHREALTIME-$t0}")" "$*"; }
die() { echo "minislurm: $*" >&2; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts daemons)"; }

# ---------------------------------------------------------------- process helpers (never by name)
pid_of() { # pidfile expected-comm -> prints the pid when it is alive and really that daemon
  local f=$1 comm=$2 p
  [ -r "$f" ] || return 1
  p=$(tr -dc '0-9' < "$f")
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$comm" ] || return 1
  echo "$p"
}

daemons() { # "pidfile comm" lines, controller-side last so slurmd goes first
  local f
  for f in /run/slurmd-*.pid; do [ -e "$f" ] && echo "$f slurmd"; done
  echo "/run/slurmctld.pid slurmctld"
  echo "/run/slurmdbd.pid slurmdbd"
  echo "/run/mysqld/mysqld.pid mariadbd"
  echo "/run/munge/munged.pid munged"
}

stop_all() { # TERM every live daemon at once, then wait for all; KILL stragglers after 15 s
  local pids=() f comm p i alive
  if pid_of /run/slurmctld.pid slurmctld >/dev/null && command -v squeue >/dev/null; then
    local jobs
    jobs=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ' || true)
    if [ -n "${jobs// /}" ]; then
      say "cancelling jobs: $jobs"
      # shellcheck disable=SC2086
      scancel $jobs 2>/dev/null || true
      for i in $(seq 1 100); do [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break; sleep 0.1; done
    fi
  fi
  while read -r f comm; do
    if p=$(pid_of "$f" "$comm"); then kill -TERM "$p" && pids+=("$p:$comm"); fi
    rm -f "$f"
  done < <(daemons)
  for i in $(seq 1 150); do
    alive=0
    for p in "${pids[@]}"; do kill -0 "${p%%:*}" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for p in "${pids[@]}"; do
    if kill -0 "${p%%:*}" 2>/dev/null && [ "$(cat "/proc/${p%%:*}/comm" 2>/dev/null)" = "${p#*:}" ]; then
      say "${p#*:} ${p%%:*} ignored SIGTERM, sending SIGKILL"; kill -KILL "${p%%:*}" || true
    fi
  done
  if [ ${#pids[@]} -gt 0 ]; then say "stopped: ${pids[*]}"; fi
  rm -rf "$STATE"
}

is_up() { # exit 0 when every daemon of an N-node cluster answers; prints N
  local n i
  [ -r "$STATE/nodes" ] || return 1
  n=$(cat "$STATE/nodes")
  for pc in "/run/munge/munged.pid munged" "/run/mysqld/mysqld.pid mariadbd" \
            "/run/slurmdbd.pid slurmdbd" "/run/slurmctld.pid slurmctld"; do
    # shellcheck disable=SC2086
    pid_of $pc >/dev/null || return 1
  done
  for i in $(seq 1 "$n"); do pid_of "/run/slurmd-n$i.pid" slurmd >/dev/null || return 1; done
  scontrol ping 2>/dev/null | grep -q UP || return 1
  echo "$n"
}

# ---------------------------------------------------------------- install
install_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
  done
  [ ${#missing[@]} = 0 ] && return 0
  say "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
  say "installed"
}

# ---------------------------------------------------------------- configuration
write_config() { # NNODES CPUS MEM_MB
  local n=$1 cpus=$2 mem=$3 i
  mkdir -p "$CONF"
  cat > "$CONF/slurm.conf" <<CONFEOF
# Written by aslhpc scripts/minislurm.sh: a throw-away $n-node cluster on one machine.
ClusterName=$CLUSTER_NAME
SlurmctldHost=localhost
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# requeued jobs restart in seconds, not 2 minutes (docs/mini-cluster.md, pitfalls)
AuthInfo=cred_expire=10
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd-%n.pid
SlurmdSpoolDir=/var/spool/slurmd/%n
StateSaveLocation=/var/spool/slurmctld
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd-%n.log
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
# jobs without --mem must not take a whole node (docs/mini-cluster.md, pitfalls)
DefMemPerCPU=1000
# impossible requests (too many nodes) fail at submit instead of pending forever (docs/mini-cluster.md, pitfalls)
EnforcePartLimits=ALL
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
InactiveLimit=0
KillWait=5
MinJobAge=300
SlurmdTimeout=300
Waittime=0
# the nodes below claim more CPUs than the machine has; slurmd accepts that with this
SlurmdParameters=config_overrides
CONFEOF
  printf 'AutoDetect=off\n' > "$CONF/gres.conf"
  for i in $(seq 1 "$n"); do
    echo "NodeName=n$i NodeHostname=localhost NodeAddr=127.0.0.1 Port=$((6820 + i)) CPUs=$cpus RealMemory=$mem Gres=gpu:$GPU_TYPE:$GPUS_PER_NODE State=UNKNOWN" >> "$CONF/slurm.conf"
    echo "NodeName=n$i Name=gpu Type=$GPU_TYPE File=$FAKEGPU/n$i/nvidia[0-$((GPUS_PER_NODE - 1))]" >> "$CONF/gres.conf"
  done
  echo "PartitionName=$PARTITION Nodes=n[1-$n] Default=YES MaxTime=INFINITE State=UP" >> "$CONF/slurm.conf"

  cat > "$CONF/slurmdbd.conf" <<CONFEOF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=slurm
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurmpw
StorageLoc=slurm_acct_db
CONFEOF
  chown slurm:slurm "$CONF/slurmdbd.conf"; chmod 600 "$CONF/slurmdbd.conf"
}

prepare_host() { # NNODES: names resolve (torch MASTER_ADDR), fake GPUs are char devices, dirs exist
  local n=$1 i g names
  names=$(for i in $(seq 1 "$n"); do printf 'n%d ' "$i"; done)
  if grep -q '# minislurm-nodes' /etc/hosts; then
    # /etc/hosts may be a bind mount: rewrite in place, never rename over it
    local hosts; hosts=$(grep -v '# minislurm-nodes' /etc/hosts)
    printf '%s\n' "$hosts" > /etc/hosts
  fi
  echo "127.0.0.1 ${names}# minislurm-nodes" >> /etc/hosts
  for i in $(seq 1 "$n"); do
    mkdir -p "$FAKEGPU/n$i"
    for g in $(seq 0 $((GPUS_PER_NODE - 1))); do
      [ -c "$FAKEGPU/n$i/nvidia$g" ] || { rm -f "$FAKEGPU/n$i/nvidia$g"; mknod "$FAKEGPU/n$i/nvidia$g" c 195 "$g"; }
    done
  done
  mkdir -p /var/spool/slurmctld /var/log/slurm /run/munge /run/mysqld
  chown slurm:slurm /var/spool/slurmctld /var/log/slurm
  chown munge:munge /run/munge
  chown mysql:root /run/mysqld
  # fresh state: no old jobs, reservations or job-id counter (docs/mini-cluster.md, pitfalls)
  rm -rf /var/spool/slurmctld/* /var/spool/slurmd
  for i in $(seq 1 "$n"); do mkdir -p "/var/spool/slurmd/n$i"; done
}

wait_for() { # description tries(x0.1s) command...
  local what=$1 tries=$2 i; shift 2
  for i in $(seq 1 "$tries"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "$what did not come up; see /var/log/slurm/"
}

ping_ctld() { scontrol ping | grep -q UP; }
dbd_port() { (exec 3<>/dev/tcp/127.0.0.1/6819); }
nodes_ready() { [ "$(sinfo -h -N -t idle,resv -o %N | sort -u | wc -l)" -ge "$1" ]; }
cluster_known() { sacctmgr -n -P show cluster format=cluster | grep -qx lab; }

start_all() { # NNODES
  local n=$1 i users
  runuser -u munge -- /usr/sbin/munged
  say "munged $(cat /run/munge/munged.pid)"

  setsid /usr/sbin/mariadbd --user=mysql --datadir=/var/lib/mysql --socket=/run/mysqld/mysqld.sock \
    --pid-file=/run/mysqld/mysqld.pid --bind-address=127.0.0.1 > /var/log/slurm/mariadb.log 2>&1 < /dev/null &
  wait_for mariadb 300 mysqladmin ping
  wait_for "mariadb pid file" 50 test -s /run/mysqld/mysqld.pid
  mysql -e "DROP DATABASE IF EXISTS slurm_acct_db"
  mysql -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmpw'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
  say "mariadb $(cat /run/mysqld/mysqld.pid)"

  slurmdbd
  wait_for slurmdbd 300 dbd_port
  say "slurmdbd $(cat /run/slurmdbd.pid)"

  slurmctld
  wait_for slurmctld 300 ping_ctld
  say "slurmctld $(cat /run/slurmctld.pid)"

  for i in $(seq 1 "$n"); do slurmd -N "n$i"; done
  wait_for "$n slurmd nodes" 300 nodes_ready "$n"
  say "nodes: $(sinfo -h -N -o '%N=%T' | sort -u | tr '\n' ' ')"

  users=${MINISLURM_USERS:-root${SUDO_USER:+,$SUDO_USER}}
  scontrol create reservation ReservationName=$RESERVATION StartTime=now Duration=365-00:00:00 \
    Nodes=ALL Users="$users" Flags=IGNORE_JOBS >/dev/null
  wait_for "accounting cluster registration" 100 cluster_known
  mkdir -p "$STATE"; echo "$n" > "$STATE/nodes"; echo "$CLUSTER_NAME" > "$STATE/cluster"
}

show() {
  sinfo -o '%P %a %D %T %c %m %G %N'
  scontrol show reservation "$RESERVATION" | head -3
}

# ---------------------------------------------------------------- commands
cmd_up() {
  local n=${1:-1} cur cpus mem
  [[ $n =~ ^[1-9][0-9]?$ ]] || die "up takes a node count (1-99), got '$n'"
  need_root
  if cur=$(is_up); then
    if [ "$cur" = "$n" ]; then
      echo "$CLUSTER_NAME" > "$STATE/cluster"  # (a cluster brought up before the marker existed)
      echo "minislurm: already up with $n node(s)"; show; return 0
    fi
    say "up with $cur node(s); restarting with $n"
  fi
  stop_all
  install_packages
  cpus=${MINISLURM_CPUS:-12}
  mem=${MINISLURM_MEM_MB:-$((24000 / n))}
  write_config "$n" "$cpus" "$mem"
  # optional: enforce association limits from the start (slurmctld takes this reliably only when it starts)
  if [ "${MINISLURM_ENFORCE_LIMITS:-0}" = 1 ]; then
    echo "AccountingStorageEnforce=associations,limits" >> "$CONF/slurm.conf"
  fi
  prepare_host "$n"
  start_all "$n"
  say "up: $n node(s) x $GPUS_PER_NODE $GPU_TYPE, $cpus CPUs, ${mem} MB each; partition $PARTITION, reservation $RESERVATION"
  show
}

cmd_down() {
  need_root
  stop_all
  say "down"
}

cmd_status() {
  local n
  if n=$(is_up); then echo "minislurm: up, $n node(s)"; show; return 0; fi
  echo "minislurm: not up (start it with: bash scripts/minislurm.sh up)"
  return 1
}

remove_account() { # USER ACCOUNT: true once neither the association nor the account is left
  sacctmgr -i delete user name="$1" account="$2" >/dev/null 2>&1 || true
  sacctmgr -i delete account name="$2" >/dev/null 2>&1 || true
  [ -z "$(sacctmgr -n -P show assoc where user="$1" account="$2" format=Account)" ]
}

cmd_limit() { # N [ACCOUNT]
  local n=${1:-} acct=${2:-aslhpc-limited} who=${SUDO_USER:-$(id -un)}
  [[ $n =~ ^[0-9]+$ ]] || die "limit takes a MaxSubmitJobs count (0 removes it), got '$n'"
  [[ $acct =~ ^[a-z0-9_-]+$ ]] || die "bad account name '$acct'"
  need_root
  is_up >/dev/null || die "the cluster is not up"
  if [ "$n" = 0 ]; then
    # slurmdbd refuses to remove an association while a job of it is still active (a COMPLETING job on a
    # loaded machine): retry until it is gone, so no limit outlives the test that set it
    wait_for "removal of account $acct (jobs of it still active?)" 1200 remove_account "$who" "$acct"
    if grep -q '# added by minislurm.sh limit$' "$CONF/slurm.conf"; then
      sed -i '/# added by minislurm.sh limit$/,+1d' "$CONF/slurm.conf"
      scontrol reconfigure
    fi
    say "account $acct removed; limits no longer enforced"
    return 0
  fi
  if ! grep -q '^AccountingStorageEnforce=' "$CONF/slurm.conf"; then
    printf '# added by minislurm.sh limit\nAccountingStorageEnforce=associations,limits\n' \
      >> "$CONF/slurm.conf"
    scontrol reconfigure
  fi
  sacctmgr -i add account name="$acct" cluster=lab >/dev/null 2>&1 || true
  sacctmgr -i add user name="$who" account="$acct" cluster=lab >/dev/null 2>&1 || true
  sacctmgr -i modify user where name="$who" account="$acct" set MaxSubmitJobs="$n" >/dev/null
  wait_for "AccountingStorageEnforce=limits" 100 \
    bash -c "scontrol show config | grep -q 'AccountingStorageEnforce *= *.*limits'" \
    || die "slurmctld did not take AccountingStorageEnforce=limits on reconfigure; restart it (down, up)"
  say "account $acct: $who may have at most $n job(s) queued (sbatch --account $acct)"
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  limit) shift; cmd_limit "$@" ;;
  *) echo "usage: $0 up [NNODES] | down | status | limit N [ACCOUNT]" >&2; exit 2 ;;
esac
