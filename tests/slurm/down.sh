#!/usr/bin/env bash
# Undo tests/slurm/up.sh: cancel the test cluster's jobs, stop exactly the daemons up.sh started
# (by the PIDs it recorded, checking each is still that daemon), put back the slurm.conf and
# gres.conf it replaced (or remove the ones it wrote). A cluster that was already running when
# up.sh ran is left alone. Packages stay installed (a later up.sh starts in under a second).
set -euo pipefail

STATE=${LABMAKE_SLURM_STATE:-/tmp/labmake-slurm}
CONF_DIR=/etc/slurm
MARKER="# Written by labmake tests/slurm/up.sh; down.sh removes it."

log() { echo "down.sh: $*"; }

if [[ ! -s $STATE/mode ]]; then
    log "nothing to stop ($STATE holds no record of up.sh)"
    exit 0
fi
if [[ $(<"$STATE/mode") == external ]]; then
    log "SLURM was running before up.sh: leaving it alone"
    rm -rf "$STATE"
    exit 0
fi

# The PID of a daemon up.sh started, if that process still runs that program.
recorded_pid() {
    local name=$1 pidfile="$STATE/$1.pid" pid
    [[ -s $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ -r /proc/$pid/comm && $(</proc/"$pid"/comm) == "$name" ]] || return 1
    echo "$pid"
}

stop() {
    local name=$1 pid
    pid=$(recorded_pid "$name") || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do
        [[ -e /proc/$pid ]] || {
            log "stopped $name ($pid)"
            return 0
        }
        sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
    log "killed $name ($pid) after 10 s"
}

# Jobs first, while slurmctld still answers: every job on this cluster is a test's.
if recorded_pid slurmctld >/dev/null; then
    scancel --full --quiet $(squeue -h -o %i 2>/dev/null) 2>/dev/null || true
fi
stop slurmd
stop slurmctld
stop munged # only if up.sh started it (no munged.pid otherwise)

for f in slurm.conf gres.conf; do
    if [[ -e $STATE/backup/$f ]]; then
        cp -p "$STATE/backup/$f" "$CONF_DIR/$f"
        log "restored $CONF_DIR/$f"
    elif [[ -e $CONF_DIR/$f ]] && grep -qF "$MARKER" "$CONF_DIR/$f"; then
        rm -f "$CONF_DIR/$f"
    fi
done
rm -rf "$STATE"
log "done"
