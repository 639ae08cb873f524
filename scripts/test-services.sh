#!/usr/bin/env bash
# Brings up what the integration tests need — PostgreSQL, a tansu Kafka broker and promtool — and prints
# `export VAR=...` lines on stdout, so a caller can run:
#
#   eval "$(bash scripts/test-services.sh)"
#   cargo test -p herald-infrastructure --test log_kafka --test log_local
#
# Idempotent: a broker started by an earlier run is reused while it is alive. Everything but the
# export lines goes to $HERALD_TEST_SERVICES_DIR/test-services.log (default
# /tmp/herald-test-services); errors are also summarised on stderr.
set -euo pipefail
# cargo and tansu live here on a rustup machine, even when the caller's PATH lacks it.
export PATH="$PATH:${CARGO_HOME:-${HOME:-/root}/.cargo}/bin"

STATE_DIR=${HERALD_TEST_SERVICES_DIR:-/tmp/herald-test-services}
mkdir -p "$STATE_DIR"
LOG="$STATE_DIR/test-services.log"
PID_FILE="$STATE_DIR/tansu.pid"
PORT_FILE="$STATE_DIR/tansu.port"
TANSU_LOG="$STATE_DIR/tansu.log"
PG_URL=${HERALD_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}

# fd 3 = the caller's stdout (export lines only), fd 4 = the caller's stderr; the rest is logged.
exec 3>&1 4>&2 1>>"$LOG" 2>&1

log() { echo "[$(date '+%F %T')] $*"; }
die() {
    log "ERROR: $*"
    echo "test-services.sh: $* (log: $LOG)" >&4
    exit 1
}

# One run at a time, so two concurrent callers do not start two brokers.
exec 9>"$STATE_DIR/lock"
flock -w 1200 9 || die "another test-services.sh run holds $STATE_DIR/lock"

port_open() { (exec 5<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for_port() {
    local port=$1 seconds=$2 pid=${3:-}
    for _ in $(seq 1 $((seconds * 10))); do
        port_open "$port" && return 0
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        sleep 0.1
    done
    return 1
}

# --- PostgreSQL -----------------------------------------------------------------------------------
start_postgres() {
    if port_open 5432; then
        log "PostgreSQL already accepts connections on 127.0.0.1:5432"
        return
    fi
    command -v pg_ctlcluster >/dev/null || die "PostgreSQL is not installed (apt-get install postgresql)"
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    [[ -n $version ]] || die "no cluster under /etc/postgresql"
    log "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || die "pg_ctlcluster failed"
    wait_for_port 5432 30 || die "PostgreSQL did not open 127.0.0.1:5432"
}

# --- tansu ----------------------------------------------------------------------------------------
find_tansu() {
    if command -v tansu >/dev/null; then
        command -v tansu
    fi
}

# Matches only a cargo process installing tansu, not a shell whose arguments mention it.
INSTALL_PATTERN='^([^ ]*/)?cargo install tansu'

install_tansu() {
    local tansu
    tansu=$(find_tansu)
    if [[ -z $tansu ]] && pgrep -f "$INSTALL_PATTERN" >/dev/null; then
        log "a 'cargo install tansu' is already running; waiting for it"
        for _ in $(seq 1 1800); do
            pgrep -f "$INSTALL_PATTERN" >/dev/null || break
            sleep 1
        done
        tansu=$(find_tansu)
    fi
    if [[ -z $tansu ]]; then
        log "installing tansu (takes several minutes)"
        cargo install tansu --locked --features dynostore || die "cargo install tansu failed"
        tansu=$(find_tansu)
    fi
    [[ -n $tansu ]] || die "tansu is not installed"
    TANSU=$tansu
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null && return
    local port
    for _ in $(seq 1 50); do
        port=$((20000 + RANDOM % 20000))
        port_open "$port" || { echo "$port"; return; }
    done
    return 1
}

running_tansu_port() {
    [[ -f $PID_FILE && -f $PORT_FILE ]] || return 1
    local pid port
    pid=$(cat "$PID_FILE")
    port=$(cat "$PORT_FILE")
    kill -0 "$pid" 2>/dev/null || return 1
    grep -q tansu "/proc/$pid/cmdline" 2>/dev/null || return 1
    port_open "$port" || return 1
    echo "$port"
}

start_tansu() {
    local port
    if port=$(running_tansu_port); then
        log "reusing tansu pid $(cat "$PID_FILE") on 127.0.0.1:$port"
        TANSU_PORT=$port
        return
    fi
    install_tansu
    port=$(free_port) || die "no free port"
    log "starting $TANSU on 127.0.0.1:$port"
    # setsid: the broker outlives this script and is not hit by the caller's Ctrl-C. Closing fds
    # 3, 4 and 9 matters: holding the caller's stdout would hang `$(...)`, holding the lock would
    # block the next run.
    RUST_LOG=${TANSU_RUST_LOG:-warn} setsid "$TANSU" broker \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine memory://tansu/ \
        </dev/null >>"$TANSU_LOG" 2>&1 3>&- 4>&- 9>&- &
    local pid=$!
    echo "$pid" >"$PID_FILE"
    echo "$port" >"$PORT_FILE"
    wait_for_port "$port" 30 "$pid" || die "tansu did not open 127.0.0.1:$port (see $TANSU_LOG)"
    log "tansu pid $pid listening on 127.0.0.1:$port"
    TANSU_PORT=$port
}

# --- promtool (checks deploy/prometheus/alerts.yml) ----------------------------------------------
# From Debian's prometheus package, unpacked into the state dir: nothing is installed or started.
install_promtool() {
    PROMTOOL=$(command -v promtool || true)
    [[ -n $PROMTOOL ]] && return
    PROMTOOL="$STATE_DIR/prometheus/usr/bin/promtool"
    [[ -x $PROMTOOL ]] && return
    local download="$STATE_DIR/prometheus-deb"
    rm -rf "$download" && mkdir -p "$download"
    if ! (cd "$download" && apt-get download prometheus); then
        log "apt-get download failed; updating the package lists once"
        apt-get update -qq || die "apt-get update failed (needed for promtool)"
        (cd "$download" && apt-get download prometheus) || die "apt-get download prometheus failed"
    fi
    dpkg -x "$download"/prometheus_*.deb "$STATE_DIR/prometheus" || die "unpacking prometheus failed"
    [[ -x $PROMTOOL ]] || die "no promtool in Debian's prometheus package"
    log "promtool unpacked to $PROMTOOL"
}

start_postgres
start_tansu
install_promtool

echo "export HERALD_TEST_DATABASE_URL=$PG_URL" >&3
echo "export HERALD_TEST_KAFKA_BROKERS=127.0.0.1:$TANSU_PORT" >&3
echo "export HERALD_PROMTOOL=$PROMTOOL" >&3
