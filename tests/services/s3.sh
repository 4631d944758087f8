#!/usr/bin/env bash
# S3 server for binlake's tests: s3s-fs 0.14.1 (objects are plain files on disk).
#
#   tests/services/s3.sh start|stop|status|env
#   eval "$(tests/services/s3.sh env)"   # exports BINLAKE_S3_*
#
# The binary is built once with `cargo install s3s-fs` (a few minutes on 2 cores) into
# ${BINLAKE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/binlake}/s3s; newer s3s-fs versions need
# a newer rustc. It listens on 127.0.0.1:${BINLAKE_S3_PORT:-19000}, path-style addressing
# (http://127.0.0.1:19000/<bucket>/<key>), SigV4 with one fixed key pair, any region.
# Conditional puts (If-None-Match: *, If-Match: <etag>) are supported, which Delta commits
# on S3 rely on; note that s3s-fs checks the condition and then writes, without a lock, so
# two racing conditional puts of one key can both succeed.
#
# State lives in ${BINLAKE_SERVICES_DIR:-<repo>/.services}/s3: buckets are the directories
# of data/ (so a bucket can be made with mkdir), the server log is s3.log. Every start
# makes sure the bucket ${BINLAKE_S3_BUCKET:-binlake-test} exists.
set -euo pipefail

log() { echo "[s3] $*" >&2; }
die() { log "error: $*"; exit 1; }

S3S_VERSION=0.14.1
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
SERVICES_DIR=${BINLAKE_SERVICES_DIR:-$REPO/.services}
mkdir -p "$SERVICES_DIR"
SERVICES_DIR=$(cd "$SERVICES_DIR" && pwd) # absolute, even if given relative

CACHE=${BINLAKE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/binlake}
INSTALL_ROOT=$CACHE/s3s
BIN=$INSTALL_ROOT/bin/s3s-fs
INSTALL_LOG=$INSTALL_ROOT/install.log

PORT=${BINLAKE_S3_PORT:-19000}
ACCESS_KEY=binlake
SECRET_KEY=binlake-secret
REGION=us-east-1
BUCKET=${BINLAKE_S3_BUCKET:-binlake-test}
START_TIMEOUT=${BINLAKE_S3_START_TIMEOUT:-30}
[[ $PORT =~ ^[0-9]+$ ]] || die "BINLAKE_S3_PORT must be a port number, got '$PORT'"
[[ $BUCKET =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] || die "BINLAKE_S3_BUCKET '$BUCKET' is not a valid bucket name"

STATE=$SERVICES_DIR/s3
DATA=$STATE/data
PIDFILE=$STATE/s3s-fs.pid
SERVER_LOG=$STATE/s3.log
ENDPOINT=http://127.0.0.1:$PORT

have_binary() {
    [[ -x $BIN && $("$BIN" --version 2>/dev/null) == "s3s-fs $S3S_VERSION" ]]
}

# Build s3s-fs once; later runs only check the binary's version (no cargo).
ensure_binary() {
    have_binary && return 0
    command -v cargo >/dev/null || die "s3s-fs is missing and so is cargo to build it (install Rust: https://rustup.rs)"
    mkdir -p "$INSTALL_ROOT"
    # Serialize concurrent installs (e.g. two test runs starting at once).
    exec 8>"$INSTALL_ROOT/.lock"
    flock -w 1800 8 || die "could not lock $INSTALL_ROOT/.lock"
    have_binary && { exec 8>&-; return 0; }
    log "building s3s-fs $S3S_VERSION with cargo install into $INSTALL_ROOT (several minutes the first time; log: $INSTALL_LOG)"
    # Its own target dir: never clash with (or invalidate) the workspace's build cache.
    # Run from / so no rust-toolchain file or .cargo/config of the repository applies.
    if ! (cd / && CARGO_TARGET_DIR=$CACHE/target-s3s cargo install s3s-fs \
        --version "$S3S_VERSION" --features binary --locked --root "$INSTALL_ROOT" \
        >"$INSTALL_LOG" 2>&1); then
        log "cargo install failed; last lines of $INSTALL_LOG:"
        tail -n 30 "$INSTALL_LOG" >&2
        exit 1
    fi
    exec 8>&-
    have_binary || die "cargo install finished but $BIN does not report version $S3S_VERSION"
    log "installed $BIN"
}

server_pid() {
    local pid
    [[ -s $PIDFILE ]] || return 1
    pid=$(<"$PIDFILE")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 's3s-fs ' || return 1
    echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

# A signed S3 request (curl's built-in SigV4); prints the HTTP status code.
s3_curl() {
    curl -sS -o /dev/null -w '%{http_code}' --max-time 5 \
        --aws-sigv4 "aws:amz:$REGION:s3" --user "$ACCESS_KEY:$SECRET_KEY" \
        -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$@"
}

# The server answers S3 requests with these credentials (HeadBucket on the test bucket).
answers() { [[ $(s3_curl -I "$ENDPOINT/$BUCKET" 2>/dev/null) == 200 ]]; }

is_running() { server_pid >/dev/null && port_open; }

show_log() {
    [[ -s $SERVER_LOG ]] || return 0
    log "last lines of $SERVER_LOG:"
    tail -n 30 "$SERVER_LOG" >&2
}

cmd_start() {
    # A bucket is a directory of the data dir; making it here also works while running.
    mkdir -p "$DATA/$BUCKET"
    if is_running && answers; then
        log "already running at $ENDPOINT (pid $(server_pid)), bucket $BUCKET"
        return 0
    fi
    ensure_binary
    command -v curl >/dev/null || die "curl not found (Debian: apt-get install curl); it checks that the server answers"
    # Serialize concurrent starts of the same instance.
    exec 9>"$STATE/.lock"
    flock -w 120 9 || die "could not lock $STATE/.lock"
    if is_running && answers; then
        log "already running at $ENDPOINT (pid $(server_pid)), bucket $BUCKET"
        return 0
    fi
    if server_pid >/dev/null; then
        die "s3s-fs (pid $(server_pid)) is alive but does not answer S3 requests at $ENDPOINT; run '$0 stop' first"
    fi
    port_open && die "port $PORT is already in use by another process (set BINLAKE_S3_PORT)"

    log "starting s3s-fs $S3S_VERSION at $ENDPOINT (data: $DATA)"
    echo "--- $(date -u +%FT%TZ) start" >>"$SERVER_LOG"
    RUST_LOG=${BINLAKE_S3_LOG:-info} NO_COLOR=1 setsid nohup "$BIN" --host 127.0.0.1 --port "$PORT" \
        --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" "$DATA" \
        >>"$SERVER_LOG" 2>&1 </dev/null 8>&- 9>&- &
    local pid=$!
    echo "$pid" >"$PIDFILE"
    local i
    for ((i = 0; i < START_TIMEOUT * 10; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "s3s-fs exited during startup"
            show_log
            rm -f "$PIDFILE"
            exit 1
        fi
        if port_open; then
            answers || {
                log "s3s-fs listens on $PORT but HEAD $ENDPOINT/$BUCKET (signed) did not return 200"
                show_log
                exit 1
            }
            log "ready at $ENDPOINT (pid $pid, bucket $BUCKET, log $SERVER_LOG)"
            return 0
        fi
        sleep 0.1
    done
    log "not listening on $PORT after ${START_TIMEOUT}s (pid $pid still running)"
    show_log
    exit 1
}

cmd_stop() {
    local pid
    if ! pid=$(server_pid); then
        log "not running"
        rm -f "$PIDFILE"
        return 0
    fi
    log "stopping s3s-fs (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "still alive after 10s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
    log "stopped"
}

cmd_status() {
    if is_running; then
        echo "[s3] running at $ENDPOINT (pid $(server_pid), bucket $BUCKET, data $DATA)"
    else
        echo "[s3] stopped (port $PORT, data $DATA)"
        return 1
    fi
}

cmd_env() {
    echo "export BINLAKE_S3_ENDPOINT=$ENDPOINT"
    echo "export BINLAKE_S3_ACCESS_KEY=$ACCESS_KEY"
    echo "export BINLAKE_S3_SECRET_KEY=$SECRET_KEY"
    echo "export BINLAKE_S3_REGION=$REGION"
    echo "export BINLAKE_S3_BUCKET=$BUCKET"
}

case ${1:-} in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
env) cmd_env ;;
*)
    echo "usage: $0 {start|stop|status|env}" >&2
    exit 2
    ;;
esac
