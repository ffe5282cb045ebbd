#!/usr/bin/env bash
# Private single-node Slurm (with accounting) for development and tests.
#
#   launch/slurm-dev-cluster.sh start  DIR   # start munged, mariadbd, slurmdbd, slurmctld, slurmd
#   launch/slurm-dev-cluster.sh status DIR   # exit 0 all up, 1 partly up, 3 stopped
#   launch/slurm-dev-cluster.sh env    DIR   # prints: export SLURM_CONF=DIR/slurm.conf
#   launch/slurm-dev-cluster.sh stop   DIR   # cancel jobs, stop every daemon by PID
#
#   eval "$(launch/slurm-dev-cluster.sh env /tmp/kslurm)"; sbatch --wrap 'hostname'; sacct
#
# Everything lives under DIR (munge key + socket, mariadb data dir, Slurm state/spool, pid and
# log files, slurm.conf, slurmdbd.conf), with ports picked free at start and recorded in
# DIR/ports.env. Nothing under /etc/slurm, /etc/munge or /run/munge is read or written, so other
# Slurms on the same machine are left alone. Daemons are only ever stopped by the PIDs in DIR/run/
# (after checking that the process belongs to DIR), never by name.
# Recipe and pitfalls: ../shared/SLURM.md (beside the repository) and docs/slurm-dev-cluster.md.
#
# Environment knobs:
#   SLURM_DEV_ACCOUNTING=0     skip mariadb + slurmdbd (no sacct; starts faster)
#   SLURM_DEV_TIMEOUT=90       seconds to wait for each daemon
#   SLURM_DEV_CRED_EXPIRE=10   AuthInfo cred_expire: also how long a requeued job waits before it
#                              may start again (Slurm's default is 120 s)
#   SLURM_DEV_SCHED_PARAMS=... appended to SchedulerParameters (e.g. "kill_invalid_depend":
#                              cancel jobs whose dependency can never be satisfied)
#   SLURM_DEV_EXTRA_CONF=...   extra lines appended to slurm.conf
#   SLURM_DEV_CLUSTER_NAME=kdgat
set -euo pipefail

PATH="$PATH:/usr/sbin:/sbin"
PROG=$(basename "$0")

STARTING=0
die() {
    echo "$PROG: error: $*" >&2
    if [ "$STARTING" = 1 ] && [ "${SLURM_DEV_KEEP_ON_FAILURE:-0}" != 1 ]; then
        STARTING=0
        echo "$PROG: stopping what was started (set SLURM_DEV_KEEP_ON_FAILURE=1 to keep it)" >&2
        do_stop || true
    fi
    exit 1
}
log() { echo "$PROG: $*" >&2; }

usage() {
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

[ $# -eq 2 ] || usage
CMD=$1
DIR=$2
case "$CMD" in start|stop|status|env) ;; *) usage ;; esac
if [ "$CMD" = start ]; then
    mkdir -p "$DIR" 2>/dev/null || true
    [ -d "$DIR" ] || die "cannot create directory $DIR"
fi
DIR=$(realpath -m "$DIR")

CONF=$DIR/slurm.conf
DBDCONF=$DIR/slurmdbd.conf
PORTS=$DIR/ports.env
RUN=$DIR/run
LOGD=$DIR/log
MUNGE_DIR=$DIR/munge
MUNGE_SOCK=$MUNGE_DIR/munge.socket
MYSQL_DIR=$DIR/mysql
MYSQL_SOCK=$DIR/run/mysqld.sock
ACCOUNTING=${SLURM_DEV_ACCOUNTING:-1}
TIMEOUT=${SLURM_DEV_TIMEOUT:-90}
CRED_EXPIRE=${SLURM_DEV_CRED_EXPIRE:-10}
CLUSTER=${SLURM_DEV_CLUSTER_NAME:-kdgat}
SCHED_PARAMS=${SLURM_DEV_SCHED_PARAMS:-}

# Daemons in start order; stop goes in reverse.
daemons() {
    if [ "$ACCOUNTING" = 1 ] || [ -f "$RUN/mariadbd.pid" ] || [ -f "$RUN/slurmdbd.pid" ]; then
        echo munged mariadbd slurmdbd slurmctld slurmd
    else
        echo munged slurmctld slurmd
    fi
}

# ---------------------------------------------------------------- processes
# "alive" = /proc/PID exists and the process is not a zombie (PID 1 here reaps lazily).
pid_alive() {
    local pid=$1 stat state
    [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    state=${stat##*) }   # field after "(comm) "
    state=${state%% *}
    [ "$state" != Z ] && [ "$state" != X ]
}

# The process is ours if its command line or environment names DIR (guards against PID reuse).
pid_ours() {
    local pid=$1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$DIR/" && return 0
    tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qxF "SLURM_CONF=$CONF" && return 0
    return 1
}

daemon_pid() {   # prints the PID of daemon $1 if it is running and ours
    local f=$RUN/$1.pid pid
    [ -f "$f" ] || return 1
    pid=$(tr -dc '0-9' <"$f")
    pid_alive "$pid" && pid_ours "$pid" || return 1
    echo "$pid"
}

descendants() {   # PIDs of all (live) descendants of $1, parents first
    local map st rest pid queue=("$1") out=() cur
    map=$(for st in /proc/[0-9]*/stat; do
        rest=$(cat "$st" 2>/dev/null) || continue
        pid=${rest%% *}
        rest=${rest##*) }   # "S PPID ..."
        set -- $rest
        [ "$1" = Z ] || echo "$2 $pid"
    done)
    while [ ${#queue[@]} -gt 0 ]; do
        cur=${queue[0]}
        queue=("${queue[@]:1}")
        for pid in $(awk -v p="$cur" '$1 == p {print $2}' <<<"$map"); do
            out+=("$pid")
            queue+=("$pid")
        done
    done
    echo "${out[@]}"
}

kill_pid() {   # TERM, wait up to $2 s, KILL
    local pid=$1 wait=${2:-15} i
    pid_alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < wait * 10; i++)); do
        pid_alive "$pid" || return 0
        sleep 0.1
    done
    log "pid $pid still alive after ${wait}s, sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        pid_alive "$pid" || return 0
        sleep 0.1
    done
    log "warning: pid $pid survived KILL"
}

# ---------------------------------------------------------------- checks
require_binaries() {
    local missing=() pkgs=() b pkg
    need() { command -v "$1" >/dev/null || { missing+=("$1"); pkgs+=("$2"); }; }
    need munged munge
    for b in slurmctld slurmd sbatch scontrol sinfo squeue scancel; do need "$b" slurm-wlm; done
    if [ "$ACCOUNTING" = 1 ]; then
        need slurmdbd slurmdbd
        need sacctmgr slurm-wlm
        for b in mariadbd mariadb-install-db mariadb mariadb-admin; do need "$b" mariadb-server; done
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        pkg=$(printf '%s\n' "${pkgs[@]}" | sort -u | tr '\n' ' ')
        die "missing binaries: ${missing[*]}
  install them with: apt-get install -y ${pkg% }
  (the full set: apt-get install -y slurm-wlm munge slurmdbd mariadb-server;
   or run without accounting: SLURM_DEV_ACCOUNTING=0)"
    fi
}

# ---------------------------------------------------------------- ports
# Pick a free TCP port below the ephemeral range (so outgoing connections cannot take it later),
# checked against every socket listed in /proc/net/tcp{,6}.
used_ports() {
    cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk 'NR>1 {split($2,a,":"); print a[2]}' |
        while read -r hex; do [ -n "$hex" ] && echo $((16#$hex)); done | sort -u
}

pick_ports() {   # prints N distinct free ports
    local n=$1 used lo=20000 hi=32000 p picked=() tries=0
    used=" $(used_ports | tr '\n' ' ') "
    while [ ${#picked[@]} -lt "$n" ]; do
        tries=$((tries + 1))
        [ $tries -lt 1000 ] || die "could not find $n free ports in $lo-$hi"
        p=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo)))
        case "$used" in *" $p "*) continue ;; esac
        case " ${picked[*]} " in *" $p "*) continue ;; esac
        picked+=("$p")
    done
    echo "${picked[@]}"
}

# ---------------------------------------------------------------- waits
show_logs() {
    local f
    for f in "$LOGD"/*.log; do
        [ -f "$f" ] || continue
        echo "----- tail of $f -----" >&2
        tail -n 25 "$f" >&2
    done
    if [ -f "$CONF" ]; then
        echo "----- scontrol ping; sinfo -N -l -----" >&2
        SLURM_CONF=$CONF timeout 10 scontrol ping >&2 2>&1 || true
        SLURM_CONF=$CONF timeout 10 sinfo -N -l >&2 2>&1 || true
    fi
}

wait_for() {   # wait_for DESCRIPTION COMMAND...   (polls until COMMAND succeeds)
    local what=$1 t0=$SECONDS
    shift
    until "$@" >/dev/null 2>&1; do
        if [ $((SECONDS - t0)) -ge "$TIMEOUT" ]; then
            show_logs
            die "timed out after ${TIMEOUT}s waiting for $what (logs above, all under $LOGD)"
        fi
        sleep 0.2
    done
}

ctld_up() { scontrol ping 2>/dev/null | grep -q 'is UP'; }
node_idle() { [ "$(sinfo -h -n "$NODE" -o %T 2>/dev/null | sort -u | tr -d '\n')" = idle ]; }
mysql_up() { mariadb-admin --no-defaults --socket="$MYSQL_SOCK" -uroot ping; }
dbd_up() { sacctmgr -n -P list cluster format=cluster; }

# ---------------------------------------------------------------- config
write_configs() {
    local ctld_port=$1 slurmd_port=$2 dbd_port=$3 db_port=$4 node_line host
    host=$(hostname -s)
    # Hardware as slurmd sees it, e.g. "NodeName=vm CPUs=2 Boards=1 ... RealMemory=24105".
    node_line=$(env -u SLURM_CONF slurmd -C 2>/dev/null | head -n1)
    [[ "$node_line" == NodeName=* ]] || die "'slurmd -C' gave no node line: $node_line"
    NODE=$(sed 's/^NodeName=\([^ ]*\).*/\1/' <<<"$node_line")

    cat >"$CONF.tmp" <<EOF
# Generated by $PROG for a private single-node cluster under $DIR. Do not edit: regenerated on start.
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCK,cred_expire=$CRED_EXPIRE
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOGD/slurmctld.log
SlurmdLogFile=$LOGD/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MpiDefault=none
SwitchType=switch/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
SchedulerType=sched/backfill
# Fast scheduling for a tiny cluster: batch jobs are scheduled at submit (batch_sched_delay,
# default 3 s), and the main and backfill passes run every 2 s (defaults 60 s and 30 s), so a
# job whose BeginTime passed (e.g. after a requeue) starts within ~2 s.
SchedulerParameters=batch_sched_delay=0,sched_interval=2,bf_interval=2${SCHED_PARAMS:+,$SCHED_PARAMS}
MailProg=/bin/true
ReturnToService=2
# Requeue: batch jobs may be requeued (scontrol requeue, preemption); partition "high"
# preempts (requeues) jobs of partition "debug".
JobRequeue=1
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
KillWait=5
InactiveLimit=0
MinJobAge=300
EOF
    if [ "$ACCOUNTING" = 1 ]; then
        cat >>"$CONF.tmp" <<EOF
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$dbd_port
AccountingStoragePass=$MUNGE_SOCK
EOF
    else
        echo "AccountingStorageType=accounting_storage/none" >>"$CONF.tmp"
    fi
    cat >>"$CONF.tmp" <<EOF
$node_line NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP PriorityTier=1
PartitionName=high Nodes=$NODE Default=NO MaxTime=INFINITE State=UP PriorityTier=2
EOF
    if [ -n "${SLURM_DEV_EXTRA_CONF:-}" ]; then
        printf '%s\n' "$SLURM_DEV_EXTRA_CONF" >>"$CONF.tmp"
    fi
    mv "$CONF.tmp" "$CONF"

    if [ "$ACCOUNTING" = 1 ]; then
        (
            umask 077
            cat >"$DBDCONF.tmp" <<EOF
# Generated by $PROG. slurmdbd reads it from the folder of \$SLURM_CONF; must be mode 600.
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCK
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$dbd_port
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOGD/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$db_port
StorageUser=slurm
StoragePass=$(cat "$DIR/db.pass")
StorageLoc=slurm_acct_db
EOF
        )
        chmod 600 "$DBDCONF.tmp"
        mv "$DBDCONF.tmp" "$DBDCONF"
    fi

    cat >"$PORTS" <<EOF
SLURMCTLD_PORT=$ctld_port
SLURMD_PORT=$slurmd_port
SLURMDBD_PORT=$dbd_port
MARIADB_PORT=$db_port
EOF
}

# ---------------------------------------------------------------- start
start_munged() {
    mkdir -p "$MUNGE_DIR"
    chmod 700 "$MUNGE_DIR"
    if [ ! -s "$MUNGE_DIR/munge.key" ]; then
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile="$MUNGE_DIR/munge.key"
        else
            dd if=/dev/urandom of="$MUNGE_DIR/munge.key" bs=1024 count=1 status=none
        fi
        chmod 600 "$MUNGE_DIR/munge.key"
    fi
    rm -f "$MUNGE_SOCK" "$MUNGE_SOCK.lock"
    munged --force --key-file="$MUNGE_DIR/munge.key" --socket="$MUNGE_SOCK" \
        --pid-file="$RUN/munged.pid" --log-file="$LOGD/munged.log" \
        --seed-file="$MUNGE_DIR/munged.seed" </dev/null >>"$LOGD/munged.log" 2>&1 ||
        { show_logs; die "munged failed to start"; }
    wait_for "munged socket $MUNGE_SOCK" test -S "$MUNGE_SOCK"
}

start_mariadbd() {
    local port=$1
    if [ ! -d "$MYSQL_DIR/mysql" ]; then
        [ -f "$DIR/db.pass" ] || (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DIR/db.pass")
        mariadb-install-db --no-defaults --user=root --datadir="$MYSQL_DIR" \
            --auth-root-authentication-method=socket --skip-test-db \
            >"$LOGD/mariadb-install-db.log" 2>&1 ||
            { show_logs; die "mariadb-install-db failed"; }
        rm -f "$DIR/db.initialised"
    fi
    rm -f "$MYSQL_SOCK"
    # mariadbd does not daemonize: run it in its own session, all output to the log.
    setsid mariadbd --no-defaults --user=root --datadir="$MYSQL_DIR" --socket="$MYSQL_SOCK" \
        --port="$port" --bind-address=127.0.0.1 --skip-name-resolve \
        --pid-file="$RUN/mariadbd.pid" --log-error="$LOGD/mariadbd.log" --skip-log-bin \
        --innodb-buffer-pool-size=64M --innodb-log-file-size=16M --performance-schema=OFF \
        </dev/null >>"$LOGD/mariadbd.log" 2>&1 &
    echo $! >"$RUN/mariadbd.pid"
    wait_for "mariadbd on 127.0.0.1:$port" mysql_up
    if [ ! -f "$DIR/db.initialised" ]; then
        mariadb --no-defaults --socket="$MYSQL_SOCK" -uroot <<EOF || { show_logs; die "creating the slurm DB user failed"; }
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$(cat "$DIR/db.pass")';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$(cat "$DIR/db.pass")';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
EOF
        touch "$DIR/db.initialised"
    fi
}

start_slurmdbd() {
    slurmdbd </dev/null >>"$LOGD/slurmdbd.log" 2>&1 || { show_logs; die "slurmdbd failed to start"; }
    wait_for "slurmdbd (sacctmgr list cluster)" dbd_up
    if ! sacctmgr -n -P list cluster format=cluster 2>/dev/null | grep -qx "$CLUSTER"; then
        sacctmgr -i add cluster "$CLUSTER" >/dev/null || { show_logs; die "sacctmgr add cluster $CLUSTER failed"; }
    fi
}

do_start() {
    require_binaries
    (( ${#MUNGE_SOCK} < 100 )) || die "munge socket path too long (${#MUNGE_SOCK} chars, keep it < 100): $MUNGE_SOCK; use a shorter DIR"

    local d running=() missing=()
    for d in $(daemons); do
        if daemon_pid "$d" >/dev/null; then running+=("$d"); else missing+=("$d"); fi
    done
    if [ ${#missing[@]} -eq 0 ]; then
        log "already running under $DIR (${running[*]})"
        export SLURM_CONF=$CONF
        ctld_up || log "warning: daemons are alive but 'scontrol ping' does not say UP"
        return 0
    fi
    if [ ${#running[@]} -gt 0 ]; then
        log "partly running (${running[*]} up; ${missing[*]} down): stopping it first"
        do_stop
    fi

    local t0 ports
    STARTING=1
    t0=$(date +%s.%N)
    mkdir -p "$RUN" "$LOGD" "$DIR/state" "$DIR/spool"
    chmod 700 "$DIR"
    read -ra ports <<<"$(pick_ports 4)"
    [ "$ACCOUNTING" != 1 ] || [ -f "$DIR/db.pass" ] ||
        (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DIR/db.pass")
    write_configs "${ports[@]}"
    export SLURM_CONF=$CONF   # also inherited by the daemons, so stop can recognise their children

    start_munged
    if [ "$ACCOUNTING" = 1 ]; then
        start_mariadbd "${ports[3]}"
        start_slurmdbd
    fi
    slurmctld -f "$CONF" </dev/null >>"$LOGD/slurmctld.log" 2>&1 || { show_logs; die "slurmctld failed to start"; }
    wait_for "slurmctld ('scontrol ping' UP)" ctld_up
    slurmd -f "$CONF" </dev/null >>"$LOGD/slurmd.log" 2>&1 || { show_logs; die "slurmd failed to start"; }
    wait_for "node idle ('sinfo -h -o %T')" node_idle
    STARTING=0
    log "up in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s under $DIR" \
        "(ports: ctld ${ports[0]}, slurmd ${ports[1]}$([ "$ACCOUNTING" = 1 ] && echo ", dbd ${ports[2]}, mariadb ${ports[3]}"))"
    log "use it with: eval \"\$($0 env $DIR)\""
}

# ---------------------------------------------------------------- stop
do_stop() {
    export SLURM_CONF=$CONF
    local pid d i any=0 pids
    # Cancel this cluster's jobs while slurmctld still runs, so no job step outlives slurmd.
    if daemon_pid slurmctld >/dev/null && [ -f "$CONF" ]; then
        if [ -n "$(squeue -h -o %i 2>/dev/null | head -n1)" ]; then
            # shellcheck disable=SC2046
            scancel $(squeue -h -o %A 2>/dev/null | sort -u) 2>/dev/null || true
            for ((i = 0; i < 100; i++)); do
                [ -z "$(squeue -h -t R,CG -o %i 2>/dev/null | head -n1)" ] && break
                sleep 0.1
            done
        fi
    fi
    local order
    order=$(daemons | tr ' ' '\n' | tac)
    for d in $order; do
        if pid=$(daemon_pid "$d"); then
            any=1
            kill_pid "$pid" 20
        fi
        rm -f "$RUN/$d.pid"
    done
    # Leftover job steps of this cluster (slurmstepd inherits SLURM_CONF=DIR/slurm.conf).
    pids=$(for p in /proc/[0-9]*; do
        p=${p#/proc/}
        [ "$(cat /proc/$p/comm 2>/dev/null)" = slurmstepd ] || continue
        tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qxF "SLURM_CONF=$CONF" && echo "$p"
    done)
    for pid in $pids; do
        local kids
        kids=$(descendants "$pid")
        log "stopping leftover slurmstepd $pid and its job processes: ${kids:-none}"
        for p in $kids; do kill -TERM "$p" 2>/dev/null || true; done
        for p in $kids; do kill_pid "$p" 5; done
        kill_pid "$pid" 2
    done
    rm -f "$MUNGE_SOCK" "$MUNGE_SOCK.lock" "$MYSQL_SOCK"
    if [ $any = 1 ]; then log "stopped cluster under $DIR"; else log "nothing running under $DIR"; fi
}

# ---------------------------------------------------------------- status
do_status() {
    local d pid up=0 down=0
    for d in $(daemons); do
        if pid=$(daemon_pid "$d"); then
            printf '%-10s running  pid %s\n' "$d" "$pid"
            up=$((up + 1))
        else
            printf '%-10s stopped\n' "$d"
            down=$((down + 1))
        fi
    done
    [ -f "$PORTS" ] && sed 's/^/  /' "$PORTS"
    if [ $up -gt 0 ] && [ -f "$CONF" ]; then
        export SLURM_CONF=$CONF
        scontrol ping 2>&1 | sed 's/^/  /' || true
        sinfo 2>&1 | sed 's/^/  /' || true
    fi
    echo "SLURM_CONF=$CONF"
    if [ $down -eq 0 ]; then return 0; elif [ $up -gt 0 ]; then return 1; else return 3; fi
}

case "$CMD" in
    start) do_start ;;
    stop) do_stop ;;
    status) do_status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
esac
