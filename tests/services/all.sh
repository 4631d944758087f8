#!/usr/bin/env bash
# Start/stop/inspect every real test service (MariaDB, Kafka, S3 and the Python venv
# for reading binlake's output) at once.
#
#   tests/services/all.sh start|stop|status|env
#   eval "$(tests/services/all.sh env)"   # exports BINLAKE_TEST_*, BINLAKE_S3_*, BINLAKE_PYTHON
set -euo pipefail

DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SERVICES=(mariadb kafka s3 python)

case ${1:-} in
start)
    # Start in parallel (cold starts install/download), then report every failure.
    pids=()
    for s in "${SERVICES[@]}"; do
        "$DIR/$s.sh" start &
        pids+=($!)
    done
    rc=0
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || { echo "[all] ${SERVICES[$i]} failed to start" >&2; rc=1; }
    done
    exit "$rc"
    ;;
stop)
    rc=0
    for s in "${SERVICES[@]}"; do "$DIR/$s.sh" stop || rc=1; done
    exit "$rc"
    ;;
status)
    rc=0
    for s in "${SERVICES[@]}"; do "$DIR/$s.sh" status || rc=1; done
    exit "$rc"
    ;;
env)
    for s in "${SERVICES[@]}"; do "$DIR/$s.sh" env; done
    ;;
*)
    echo "usage: $0 {start|stop|status|env}" >&2
    exit 2
    ;;
esac
