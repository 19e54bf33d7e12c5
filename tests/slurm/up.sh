#!/usr/bin/env bash
# Bring up a single-node SLURM cluster on this machine from Debian's packages, for tests:
# munged, slurmctld -D and slurmd -D, one node in two partitions (`cpu`, the default, and `gpu`,
# the names profiles/slurm uses) with one fake GPU (a GRES backed by /dev/null).
#
#   sudo tests/slurm/up.sh      # idempotent; prints the node and partitions when ready
#   sudo tests/slurm/down.sh    # stops exactly what this script started, restores configs
#
# Needs root and apt (Debian/Ubuntu). What it starts and what it replaced is recorded in
# $LABMAKE_SLURM_STATE (default /tmp/labmake-slurm) so that down.sh undoes exactly that. If a
# SLURM cluster is already running here, it is used as it is and down.sh leaves it alone.
set -euo pipefail

STATE=${LABMAKE_SLURM_STATE:-/tmp/labmake-slurm}
TIMEOUT=${LABMAKE_SLURM_TIMEOUT:-60}
CONF_DIR=/etc/slurm
MARKER="# Written by labmake tests/slurm/up.sh; down.sh removes it."
PACKAGES=(munge slurmctld slurmd slurm-client)

die() {
    echo "up.sh: error: $*" >&2
    exit 1
}
log() { echo "up.sh: $*"; }

# A PID recorded in the state dir that is still the daemon it was (guards against PID reuse).
alive() {
    local name=$1 pidfile="$STATE/$1.pid"
    [[ -s $pidfile ]] || return 1
    local pid
    pid=$(<"$pidfile")
    [[ -r /proc/$pid/comm && $(</proc/"$pid"/comm) == "$name" ]]
}

wait_for() { # seconds, description, command...
    local seconds=$1 what=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}

[[ $(id -u) == 0 ]] || die "must run as root (it installs packages and starts daemons)"
mkdir -p "$STATE"

# Already up: ours from an earlier up.sh, or a cluster that was here before us.
if alive slurmctld && alive slurmd; then
    log "already up (started by an earlier up.sh; state in $STATE)"
    exit 0
fi
if pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null; then
    command -v sinfo >/dev/null && sinfo >/dev/null 2>&1 ||
        die "slurmctld/slurmd run here but sinfo cannot reach them; fix or stop that cluster"
    echo external >"$STATE/mode"
    log "SLURM was already running; using it as it is (down.sh will leave it alone)"
    sinfo
    exit 0
fi

# From here on down.sh undoes what this script did, even if it stops half way.
echo started >"$STATE/mode"

# --- packages -------------------------------------------------------------------------------
missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
        missing+=("$pkg")
done
if ((${#missing[@]})); then
    command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} by hand"
    log "installing ${missing[*]}"
    # Keep the packages' init scripts from starting daemons: this script starts its own.
    made_policy=
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    apt_install() {
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >>"$STATE/apt.log" 2>&1
    }
    if ! apt_install; then
        apt-get update -qq >>"$STATE/apt.log" 2>&1 || true
        apt_install || {
            [[ -n $made_policy ]] && rm -f /usr/sbin/policy-rc.d
            tail -20 "$STATE/apt.log" >&2
            die "apt-get install ${missing[*]} failed (log: $STATE/apt.log)"
        }
    fi
    [[ -n $made_policy ]] && rm -f /usr/sbin/policy-rc.d
fi

# --- munge ----------------------------------------------------------------------------------
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
    log "creating /etc/munge/munge.key"
    head -c 1024 /dev/urandom >/etc/munge/munge.key
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! pgrep -x munged >/dev/null; then
    # Foreground (-F) in the background, as user munge, in its own session (a caller that
    # signals its process group must not stop it): setsid and setpriv exec, so $! is munged.
    setsid setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F \
        </dev/null >>"$STATE/munged.out" 2>&1 &
    echo $! >"$STATE/munged.pid"
fi
wait_for 10 munge bash -c 'munge -n | unmunge' ||
    die "munged does not answer (see $STATE/munged.out and /var/log/munge/munged.log)"

# --- configuration --------------------------------------------------------------------------
node=$(hostname -s)
cpus=$(nproc)
# A little under the total: slurmd drains a node that has less memory than configured.
mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
mkdir -p "$CONF_DIR" "$STATE/backup" "$STATE/spool/ctld" "$STATE/spool/d"
for f in slurm.conf gres.conf; do
    # Back up a configuration that is not ours, once (a re-run must not back up our own file).
    if [[ -e $CONF_DIR/$f && ! -e $STATE/backup/$f ]] && ! grep -qF "$MARKER" "$CONF_DIR/$f"; then
        cp -p "$CONF_DIR/$f" "$STATE/backup/$f"
    fi
done

# slurm.conf must sit at /etc/slurm: the snakemake jobstep plugin strips SLURM_* (SLURM_CONF).
cat >"$CONF_DIR/slurm.conf.tmp" <<EOF
$MARKER
ClusterName=labmake-test
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/slurmctld.daemon.pid
SlurmdPidFile=$STATE/slurmd.daemon.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
# No cgroups in a container: track processes through /proc, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
# Keep finished jobs visible to squeue/scontrol for an hour: without accounting, that is how
# snakemake (slurm-status-command: squeue) and the tests see how a job ended.
MinJobAge=3600
# A job that asks for no memory gets a share, not the whole node.
DefMemPerCPU=1000
ReturnToService=2
MpiDefault=none
SchedulerType=sched/backfill
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes=$node Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$node MaxTime=INFINITE State=UP
EOF
# A GPU GRES without File= is dropped and the node drains; /dev/null stands in for the device.
cat >"$CONF_DIR/gres.conf.tmp" <<EOF
$MARKER
Name=gpu File=/dev/null
EOF
mv "$CONF_DIR/slurm.conf.tmp" "$CONF_DIR/slurm.conf"
mv "$CONF_DIR/gres.conf.tmp" "$CONF_DIR/gres.conf"

# --- daemons --------------------------------------------------------------------------------
# Output to files, never to our stdout: a caller capturing it would wait for the daemons.
setsid slurmctld -D -c </dev/null >>"$STATE/slurmctld.out" 2>&1 &
echo $! >"$STATE/slurmctld.pid"
wait_for 20 slurmctld scontrol ping || {
    tail -20 "$STATE/slurmctld.log" "$STATE/slurmctld.out" >&2 || true
    die "slurmctld did not answer within 20 s (logs above, in $STATE)"
}
setsid slurmd -D -N "$node" </dev/null >>"$STATE/slurmd.out" 2>&1 &
echo $! >"$STATE/slurmd.pid"

node_state() { sinfo -h -N -n "$node" -o %T 2>/dev/null | head -1; }
deadline=$((SECONDS + TIMEOUT))
until [[ $(node_state) == idle ]]; do
    state=$(node_state)
    if [[ $state == drain* || $state == inval* ]] || ((SECONDS >= deadline)) || ! alive slurmd; then
        scontrol show node "$node" >&2 || true
        tail -20 "$STATE/slurmd.log" "$STATE/slurmd.out" >&2 || true
        die "node $node is '${state:-unknown}', not idle, after $TIMEOUT s (logs in $STATE);" \
            "run tests/slurm/down.sh to stop what was started"
    fi
    sleep 0.5
done
log "up: node $node ($cpus CPUs, $mem_mb MB, gpu:1) in partitions cpu (default) and gpu"
sinfo
