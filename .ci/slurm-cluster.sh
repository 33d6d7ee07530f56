#!/usr/bin/env bash
# Start and stop a throwaway one-node SLURM cluster on this machine, for tests/workflow/test_slurm.py.
#
#   .ci/slurm-cluster.sh install          apt-get slurm-wlm + munge, pip the executor plugin (idempotent)
#   .ci/slurm-cluster.sh start [STATE]    write /etc/slurm/{slurm,gres}.conf, start munged (unless one
#                                         already answers), slurmctld and slurmd; wait for the node
#   .ci/slurm-cluster.sh stop [STATE]     cancel the cluster's jobs, stop what `start` started (by PID),
#                                         remove the config files it wrote
#   .ci/slurm-cluster.sh status [STATE]   sinfo and squeue
#
# STATE (default /tmp/diffclosure-slurm) holds spool dirs, logs and the PIDs of what we started.
# Exit status: 0 done, 1 failed, 2 usage, 3 a slurm.conf not ours is in the way.
# Needs root: the daemons run as root without systemd or cgroups (proctrack/linuxproc,
# task/none). The config must live at /etc/slurm/slurm.conf because the executor's job-step
# plugin drops SLURM_CONF inside jobs; a slurm.conf there that this script did not write is
# never touched. Ports: SLURM_TEST_CTLD_PORT (6817) and SLURM_TEST_SLURMD_PORT (6818).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TEMPLATES="$HERE/tests/fixtures/slurm"
MARKER="DIFFCLOSURE-TEST-CLUSTER"
CONF=/etc/slurm/slurm.conf
GRES=/etc/slurm/gres.conf
PYTHON="${PYTHON:-python3}"

log() { echo "slurm-cluster: $*" >&2; }
die() { log "error: $*"; exit 1; }

need_root() { [[ "$(id -u)" == 0 ]] || die "must run as root (the test cluster runs its daemons as root)"; }

# ---------------------------------------------------------------------------------------------
install() {
    need_root
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v sbatch >/dev/null && command -v munged >/dev/null; then
        log "SLURM and munge already installed ($(slurmctld -V))"
    else
        log "installing slurm-wlm and munge from Debian's packages"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq slurm-wlm munge >/dev/null
    fi
    if [[ ! -s /etc/munge/munge.key ]]; then
        log "creating /etc/munge/munge.key"
        mkdir -p /etc/munge
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile=/etc/munge/munge.key --force
        else
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
        fi
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    fi
    if "$PYTHON" -c "import snakemake_executor_plugin_slurm" 2>/dev/null; then
        log "snakemake-executor-plugin-slurm already installed"
    else
        log "installing snakemake-executor-plugin-slurm"
        "$PYTHON" -m pip install -q "snakemake-executor-plugin-slurm>=1.0"
    fi
}

# ---------------------------------------------------------------------------------------------
alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }
pid_of() { [[ -s "$1" ]] && cat "$1" || true; }

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    local state="$1"
    if munge_works; then
        log "munged already answers; using it (not ours to stop)"
        return
    fi
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge /etc/munge
    chmod 0755 /run/munge
    rm -f /run/munge/munged.pid
    runuser -u munge -- munged --force
    local i
    for i in $(seq 50); do munge_works && break; sleep 0.1; done
    munge_works || die "munged did not start (see /var/log/munge/munged.log)"
    pid_of /run/munge/munged.pid >"$state/munged.pid.ours"
    log "munged started (pid $(cat "$state/munged.pid.ours"))"
}

render() {  # render TEMPLATE DEST: fill the @NAME@ placeholders
    sed -e "s|@NODE@|$NODE|g" -e "s|@STATE@|$STATE|g" -e "s|@CPUS@|$CPUS|g" \
        -e "s|@MEM@|$MEM|g" -e "s|@DEF_MEM@|$DEF_MEM|g" \
        -e "s|@CTLD_PORT@|${SLURM_TEST_CTLD_PORT:-6817}|g" \
        -e "s|@SLURMD_PORT@|${SLURM_TEST_SLURMD_PORT:-6818}|g" "$1" >"$2.tmp"
    mv "$2.tmp" "$2"
}

ours_or_absent() {  # a config file we may (over)write or delete
    [[ ! -e "$1" ]] || grep -q "$MARKER" "$1"
}

start() {
    need_root
    command -v slurmctld >/dev/null || die "SLURM is not installed: run '$0 install' first"
    STATE="$1"
    mkdir -p "$STATE/ctld" "$STATE/slurmd"
    if alive "$(pid_of "$STATE/slurmctld.pid")" || alive "$(pid_of "$STATE/slurmd.pid")"; then
        die "a test cluster already runs from $STATE: '$0 stop $STATE' first"
    fi
    for f in "$CONF" "$GRES"; do
        if ! ours_or_absent "$f"; then
            log "error: $f exists and was not written by this script; refusing to touch it"
            exit 3
        fi
    done
    # A test killed before its cleanup leaves our config behind, naming its state dir: stop that
    # cluster first (its daemons hold the ports).
    local old
    old="$(sed -n 's|^StateSaveLocation=\(.*\)/ctld$|\1|p' "$CONF" 2>/dev/null || true)"
    if [[ -n "$old" && "$old" != "$STATE" ]]; then
        log "stopping the test cluster left running from $old"
        stop "$old"
    fi
    NODE="$(hostname -s)"
    # At least 2 CPUs, so the profile's 2-thread DNS jobs fit on a 1-core machine too
    # (SlurmdParameters=config_overrides makes slurmd believe the config).
    CPUS="$(nproc)"
    ((CPUS >= 2)) || CPUS=2
    MEM="$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)"  # MiB, with headroom
    DEF_MEM=$((MEM / CPUS / 4))
    mkdir -p /etc/slurm
    render "$TEMPLATES/slurm.conf.in" "$CONF"
    render "$TEMPLATES/gres.conf.in" "$GRES"
    start_munge "$STATE"
    # Fresh state each start (-c: ignore saved jobs); both daemons fork and write their PID files.
    slurmctld -c -f "$CONF" || { stop "$STATE"; die "slurmctld failed to start"; }
    slurmd -f "$CONF" || { stop "$STATE"; die "slurmd failed to start"; }
    local i state_line="" why=""
    for i in $(seq 50); do  # the forked daemons write their PID files soon after
        [[ -s "$STATE/slurmctld.pid" && -s "$STATE/slurmd.pid" ]] && break
        sleep 0.2
    done
    for i in $(seq 60); do
        # A daemon that died (bad config) will not come back: fail now, not after a minute.
        alive "$(pid_of "$STATE/slurmctld.pid")" || { why="slurmctld exited"; break; }
        alive "$(pid_of "$STATE/slurmd.pid")" || { why="slurmd exited"; break; }
        state_line="$(timeout 5 sinfo -h -N -o '%N %T' 2>/dev/null || true)"
        [[ "$state_line" == *idle* || "$state_line" == *mixed* ]] && break
        sleep 1
    done
    if [[ "$state_line" != *idle* && "$state_line" != *mixed* ]]; then
        log "cluster not ready: ${why:-node not idle after 60 s (sinfo: '$state_line')}; logs:"
        tail -n 5 "$STATE/slurmctld.log" "$STATE/slurmd.log" >&2 || true
        stop "$STATE"
        exit 1
    fi
    date +%s >"$STATE/started_at"
    log "cluster up: $state_line (CPUs=$CPUS RealMemory=$MEM, state in $STATE)"
}

# ---------------------------------------------------------------------------------------------
stop_pid() {  # stop_pid NAME PID: TERM, wait up to 10 s, then KILL
    local name="$1" pid="$2" i
    alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 100); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then
        log "$name (pid $pid) ignored SIGTERM; killing"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    log "stopped $name (pid $pid)"
}

stop() {
    need_root
    local st="$1" ctld slurmd i
    ctld="$(pid_of "$st/slurmctld.pid")"
    slurmd="$(pid_of "$st/slurmd.pid")"
    if alive "$ctld" && grep -qs "$MARKER" "$CONF"; then
        # Our cluster's jobs end with it: cancel them and let slurmd reap their steps.
        timeout 10 scancel --full --quiet 2>/dev/null || true
        for i in $(seq 30); do
            [[ -z "$(timeout 5 squeue -h -t RUNNING,COMPLETING -o %i 2>/dev/null)" ]] && break
            sleep 0.5
        done
    fi
    stop_pid slurmd "$slurmd"
    stop_pid slurmctld "$ctld"
    # slurmstepd re-parents itself to init; one left after our slurmd is gone and that started
    # after our cluster did belongs to it.
    if [[ -s "$st/started_at" ]]; then
        local t0 boot hz pid start
        t0="$(cat "$st/started_at")"
        boot="$(awk '/^btime/ {print $2}' /proc/stat)"
        hz="$(getconf CLK_TCK)"
        for pid in $(pgrep -x slurmstepd || true); do
            start=$(($(awk '{print $22}' "/proc/$pid/stat" 2>/dev/null || echo 0) / hz + boot))
            if ((start >= t0)); then stop_pid slurmstepd "$pid"; fi
        done
    fi
    if [[ -s "$st/munged.pid.ours" ]]; then
        stop_pid munged "$(cat "$st/munged.pid.ours")"
        rm -f "$st/munged.pid.ours"
    fi
    for f in "$CONF" "$GRES"; do
        if [[ -e "$f" ]] && grep -q "$MARKER" "$f"; then rm -f "$f"; fi
    done
    rm -f "$st/slurmctld.pid" "$st/slurmd.pid" "$st/started_at"
}

status() {
    sinfo -N -o '%N %P %T %C %m %G' || true
    squeue -o '%i %P %j %T %R' || true
}

cmd="${1:-}"
case "$cmd" in
    install) install ;;
    start) start "${2:-/tmp/diffclosure-slurm}" ;;
    stop) stop "${2:-/tmp/diffclosure-slurm}" ;;
    status) status ;;
    *) echo "usage: $0 install | start [STATE] | stop [STATE] | status" >&2; exit 2 ;;
esac
