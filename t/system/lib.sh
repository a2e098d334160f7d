# shellcheck shell=bash
# lib.sh - helpers shared by the t/system/ tests (sourced, not run).
#
# The caller sets builddir (the top build folder; `make check` runs there)
# and srcdir, then sources this file.  Everything started through these
# helpers is stopped by its PID when the script exits.

DAPRD=${DAPRD:-$builddir/core/daprd}
# shellcheck disable=SC2034 # used by the scripts that source this file
MEMORY_PLUGINS=$builddir/plugins/state-memory/.libs
# shellcheck disable=SC2034
TEST_PLUGINS=$builddir/t/plugins/.libs

tmp=$(mktemp -d "${TMPDIR:-/tmp}/dapr-system.XXXXXX") || exit 99
pids=()
failures=0

cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# Skip the test (exit 77) when a command it needs is missing.
need() {
    local c
    for c in "$@"; do
        if ! command -v "$c" >/dev/null 2>&1; then
            echo "SKIP: $c not found"
            exit 77
        fi
    done
}

ok()   { echo "ok: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# check DESCRIPTION COMMAND...: run the command, report ok or FAIL.
check() {
    local what=$1
    shift
    if "$@"; then ok "$what"; else fail "$what"; fi
}

# Print a free TCP port on 127.0.0.1 (bind port 0, read it, close).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# HTTP status of GET http://127.0.0.1:PORT/PATH ("000" when no answer).
http_status() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 10 "http://127.0.0.1:$1$2"
}

# start_daprd NAME LOG ARGS...: start daprd on a free port with the given
# extra flags, output in LOG, and wait until /v1.0/healthz answers 204.
# Sets daprd_pid and daprd_port.  Returns 1 (log printed) when daprd
# exits or is not ready within 30 s; retries on a port clash.
start_daprd() {
    local name=$1 log=$2
    shift 2
    for _ in 1 2 3; do
        daprd_port=$(free_port)
        "$DAPRD" --app-id "$name" --dapr-http-port "$daprd_port" \
            --dapr-listen-addresses 127.0.0.1 --log-level debug "$@" >"$log" 2>&1 &
        daprd_pid=$!
        pids+=("$daprd_pid")
        for _ in $(seq 300); do
            if [ "$(http_status "$daprd_port" /v1.0/healthz)" = 204 ]; then
                return 0
            fi
            kill -0 "$daprd_pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$daprd_pid" 2>/dev/null; then
            echo "daprd $name not ready after 30 s; its output:"
            cat "$log"
            return 1
        fi
        wait "$daprd_pid" 2>/dev/null
        grep -qi 'address already in use' "$log" && continue
        echo "daprd $name exited during start-up; its output:"
        cat "$log"
        return 1
    done
    echo "daprd $name: no free port after 3 attempts"
    return 1
}

# stop_daprd PID: SIGTERM, wait up to 15 s; returns daprd's exit status
# (or 1 after a SIGKILL).
stop_daprd() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "daprd (pid $pid) did not stop after SIGTERM; killing it"
        kill -KILL "$pid"
        wait "$pid" 2>/dev/null
        return 1
    fi
    wait "$pid"
}

# Write a Component manifest: component FILE NAME TYPE [EXTRA_SPEC_LINE].
component() {
    {
        echo "apiVersion: dapr.io/v1alpha1"
        echo "kind: Component"
        echo "metadata:"
        echo "  name: $2"
        echo "spec:"
        echo "  type: $3"
        echo "  version: v1"
        [ -n "${4:-}" ] && echo "  $4"
        echo "  metadata: []"
    } >"$1"
}

# End of a test: exit 1 when any check failed.  In a --enable-sanitizers
# build, a report in any daprd output under $tmp is a failure too (a
# daprd expected to exit non-zero would otherwise hide one).
finish() {
    local f
    for f in "$tmp"/*.log; do
        if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$f" 2>/dev/null; then
            fail "sanitizer report in daprd output $f:"
            cat "$f"
        fi
    done
    if [ "$failures" -gt 0 ]; then
        echo "$failures check(s) failed"
        exit 1
    fi
    echo "all checks passed"
    exit 0
}
