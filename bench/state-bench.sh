#!/usr/bin/env bash
# state-bench.sh: a first benchmark of daprd's HTTP state API.
#
# In one invocation it measures daprd's start-up time and memory, then
# drives the state API with wrk and drives a minimal nginx the same way,
# so the daprd numbers can be read as ratios to an HTTP floor measured on
# the same machine a minute apart.  It prints a Markdown table and appends
# it, with the machine facts, to bench/RESULTS.md.  See bench/README.md.
#
# Usage: bench/state-bench.sh [BUILD_DIR] [options]
#   BUILD_DIR            build tree holding core/daprd and
#                        plugins/state-memory/.libs (default: build)
#   -d, --duration SECS  length of each wrk run (default 10)
#   --quick              3 s wrk runs and 5 start-ups
#   -c, --connections N  wrk connections (default 32; threads are always 2)
#   --starts N           start-up samples (default 10)
#   --no-record          print the table but do not touch RESULTS.md
#   -h, --help           this text

set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(dirname "$BENCH_DIR")

BUILD=build
DURATION=10
THREADS=2
CONNS=32
STARTS=10
RECORD=1
WARMUP=1        # seconds of unmeasured load before each wrk run

die() { echo "state-bench: $*" >&2; exit 1; }
usage() { sed -n '/^# Usage:/,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

while [[ $# -gt 0 ]]; do
    case $1 in
        -d|--duration) DURATION=${2:?}; shift 2 ;;
        --duration=*) DURATION=${1#*=}; shift ;;
        --quick) DURATION=3; STARTS=5; shift ;;
        -c|--connections) CONNS=${2:?}; shift 2 ;;
        --starts) STARTS=${2:?}; shift 2 ;;
        --no-record) RECORD=0; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) usage >&2; die "unknown option $1" ;;
        *) BUILD=$1; shift ;;
    esac
done
DURATION=${DURATION%s}
[[ $DURATION =~ ^[0-9]+$ && $DURATION -gt 0 ]] || die "bad duration '$DURATION'"
[[ $CONNS =~ ^[0-9]+$ && $CONNS -ge $THREADS ]] || die "bad connection count '$CONNS'"
[[ $STARTS =~ ^[0-9]+$ && $STARTS -gt 0 ]] || die "bad start-up count '$STARTS'"

# A relative build dir is taken from the current directory first, then
# from the top of the source tree, so "build" works from either place.
if [[ ! -d $BUILD && $BUILD != /* && -d $TOP/$BUILD ]]; then
    BUILD=$TOP/$BUILD
fi
[[ -d $BUILD ]] || die "no build dir '$BUILD'"
BUILD=$(cd "$BUILD" && pwd)
DAPRD=$BUILD/core/daprd
PLUGINS=$BUILD/plugins/state-memory/.libs
[[ -x $DAPRD ]] || die "no daprd at $DAPRD (build first)"
compgen -G "$PLUGINS/*.so" >/dev/null || die "no state-memory plugin in $PLUGINS (build first)"
for tool in wrk nginx python3 curl; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y wrk nginx python3 curl)"
done
# Only the plugin folder given on the command line should count.
unset DAPR_PLUGINS_PATH

TMP=$(mktemp -d "${TMPDIR:-/tmp}/state-bench.XXXXXX")
PIDS=()

# Stop everything this script started, by PID: SIGTERM, a short grace,
# then SIGKILL; then drop the temp dir.
cleanup() {
    local pid i
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A port nobody listens on now: bind port 0 and read what the kernel chose.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_http URL CODE PID LOG: poll until URL answers CODE; fail if PID dies
# or nothing answers within 30 s.
wait_http() {
    local url=$1 want=$2 pid=$3 log=$4 code i
    for i in $(seq 1500); do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)
        [[ $code == "$want" ]] && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            cat "$log" >&2
            die "server for $url exited before answering $want"
        fi
        sleep 0.02
    done
    cat "$log" >&2
    die "$url did not answer $want within 30 s (last: $code)"
}

rss_mib() {
    awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"
}

declare -A RPS P50 P99 REQS ERRS

# run_wrk NAME URL [LUA]: a short warm-up, then the measured run; the
# parsed numbers land in RPS/P50/P99/REQS/ERRS[NAME] (latencies in ms).
run_wrk() {
    local name=$1 url=$2 script=() out=$TMP/wrk-$1.txt
    [[ -n ${3:-} ]] && script=(-s "$3")
    wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" "${script[@]}" "$url" >/dev/null
    wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency "${script[@]}" "$url" >"$out"
    RPS[$name]=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    REQS[$name]=$(awk '/ requests in / { print $1 }' "$out")
    # wrk prints latencies as 812.00us, 1.20ms or 1.02s.
    local conv='function ms(v) {
            if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
            if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
            if (v ~ /m$/)  return substr(v, 1, length(v) - 1) * 60000
            if (v ~ /s$/)  return substr(v, 1, length(v) - 1) * 1000
            return v + 0 }'
    P50[$name]=$(awk "$conv"' $1 == "50%" { printf "%.3f", ms($2) }' "$out")
    P99[$name]=$(awk "$conv"' $1 == "99%" { printf "%.3f", ms($2) }' "$out")
    # Errors: non-2xx/3xx answers plus socket errors (connect, read, write,
    # timeout), summed.
    ERRS[$name]=$(awk '/Non-2xx or 3xx responses:/ { n += $NF }
        /Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 }
        END { print n + 0 }' "$out")
    [[ -n ${RPS[$name]} && -n ${P50[$name]} && -n ${P99[$name]} ]] || {
        cat "$out" >&2; die "could not parse wrk output for $name"; }
}

echo "state-bench: build $BUILD, wrk ${THREADS}t/${CONNS}c, ${DURATION}s runs" >&2

# --- the component manifest ----------------------------------------------
mkdir -p "$TMP/resources"
cat >"$TMP/resources/statestore.yaml" <<'EOF'
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.in-memory
  version: v1
EOF
DAPRD_ARGS=(--app-id bench --dapr-listen-addresses 127.0.0.1
            --resources-path "$TMP/resources" --plugins-dir "$PLUGINS"
            --log-level warn)

# --- 1. start-up time: exec -> first healthz 204, several times -----------
echo "state-bench: timing $STARTS daprd start-ups" >&2
STARTUP=$(STARTUP_LOG=$TMP/startup.log python3 "$BENCH_DIR/startup-time.py" \
    "$STARTS" /v1.0/healthz -- "$DAPRD" --dapr-http-port '{port}' "${DAPRD_ARGS[@]}") || {
    cat "$TMP/startup.log" >&2; die "start-up timing failed"; }
eval "$STARTUP"     # start_median start_min start_max stop_median (ms)

# --- 2. the HTTP floor: nginx answering 204 -------------------------------
NGINX_PORT=$(free_port)
NGX=$TMP/nginx
mkdir -p "$NGX"
{
    # As root the workers would switch to "nobody"; staying root keeps the
    # temp dir writable.  Unprivileged, the directive would only warn.
    [[ $(id -u) == 0 ]] && echo "user root;"
    cat <<EOF
worker_processes 1;
daemon off;
pid $NGX/nginx.pid;
error_log $NGX/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    # nginx closes a keep-alive connection after 1000 requests by default;
    # daprd does not, so lift the limit to compare like with like.
    keepalive_requests 100000000;
    client_body_temp_path $NGX/client_body;
    proxy_temp_path $NGX/proxy;
    fastcgi_temp_path $NGX/fastcgi;
    uwsgi_temp_path $NGX/uwsgi;
    scgi_temp_path $NGX/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / { return 204; }
    }
}
EOF
} >"$NGX/nginx.conf"
nginx -p "$NGX" -c "$NGX/nginx.conf" -e "$NGX/error.log" >"$NGX/stdout.log" 2>&1 &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
wait_http "http://127.0.0.1:$NGINX_PORT/" 204 "$NGINX_PID" "$NGX/error.log"
echo "state-bench: wrk against nginx" >&2
run_wrk nginx "http://127.0.0.1:$NGINX_PORT/"
kill "$NGINX_PID"; wait "$NGINX_PID" 2>/dev/null || true

# --- 3. daprd under load ---------------------------------------------------
DAPR_PORT=$(free_port)
"$DAPRD" --dapr-http-port "$DAPR_PORT" "${DAPRD_ARGS[@]}" >"$TMP/daprd.log" 2>&1 &
DAPRD_PID=$!
PIDS+=("$DAPRD_PID")
BASE=http://127.0.0.1:$DAPR_PORT
wait_http "$BASE/v1.0/healthz" 204 "$DAPRD_PID" "$TMP/daprd.log"
sleep 1     # let start-up allocations settle before reading RSS
RSS_IDLE=$(rss_mib "$DAPRD_PID")

code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
    -d '[{"key":"k1","value":{"n":1}}]' "$BASE/v1.0/state/statestore")
[[ $code == 204 ]] || { cat "$TMP/daprd.log" >&2; die "saving k1 answered $code, not 204"; }
body=$(curl -s "$BASE/v1.0/state/statestore/k1")
[[ $(python3 -c 'import json,sys; print(json.loads(sys.argv[1]) == {"n": 1})' "$body") == True ]] ||
    die "GET k1 returned '$body', not {\"n\":1}"

echo "state-bench: wrk against daprd state GET" >&2
run_wrk get "$BASE/v1.0/state/statestore/k1"
echo "state-bench: wrk against daprd state save" >&2
run_wrk save "$BASE/v1.0/state/statestore" "$BENCH_DIR/state-save.lua"
RSS_LOAD=$(rss_mib "$DAPRD_PID")
kill -0 "$DAPRD_PID" 2>/dev/null || die "daprd died under load"

# --- 4. the report -----------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
added() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.3f", a - b }'; }
row() {     # row NAME LABEL
    local n=$1
    if [[ $n == nginx ]]; then
        printf '| %s | %.0f | 1.00 | %.3f | %.3f | – | – | %s | %s |\n' \
            "$2" "${RPS[$n]}" "${P50[$n]}" "${P99[$n]}" "${REQS[$n]}" "${ERRS[$n]}"
    else
        printf '| %s | %.0f | %s | %.3f | %.3f | %s | %s | %s | %s |\n' \
            "$2" "${RPS[$n]}" "$(ratio "${RPS[$n]}" "${RPS[nginx]}")" \
            "${P50[$n]}" "${P99[$n]}" \
            "$(added "${P50[$n]}" "${P50[nginx]}")" "$(added "${P99[$n]}" "${P99[nginx]}")" \
            "${REQS[$n]}" "${ERRS[$n]}"
    fi
}

CPU=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
REV=$(git -C "$TOP" rev-parse --short HEAD 2>/dev/null || echo unknown)
CFLAGS_USED=$(sed -n 's/^CFLAGS = //p' "$BUILD/Makefile" 2>/dev/null || true)
NOW=$(date -u '+%Y-%m-%d %H:%M UTC')

REPORT=$(
    echo "## $NOW"
    echo
    echo "Machine: $(nproc) CPUs, ${CPU:-unknown CPU}, Linux $(uname -r)."
    echo "Build: \`$BUILD\` (source rev $REV${CFLAGS_USED:+, CFLAGS \`$CFLAGS_USED\`})."
    echo "Load: wrk -t$THREADS -c$CONNS -d${DURATION}s --latency (after a ${WARMUP} s warm-up), $(nginx -v 2>&1 | sed 's/^nginx version: //')."
    echo
    echo "| run | req/s | req/s ÷ nginx | p50 ms | p99 ms | p50 added ms | p99 added ms | requests | errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    row nginx 'nginx `return 204` (floor)'
    row get 'daprd GET /v1.0/state/statestore/k1'
    row save 'daprd POST /v1.0/state/statestore (save k1)'
    echo
    echo "| daprd | value |"
    echo "|---|---:|"
    printf '| start-up, exec → healthz 204 (median of %s) | %.1f ms (min %.1f, max %.1f) |\n' \
        "$STARTS" "$start_median" "$start_min" "$start_max"
    printf '| stop, SIGTERM → exit (median of %s) | %.1f ms |\n' "$STARTS" "$stop_median"
    printf '| RSS idle after start | %s MiB |\n' "$RSS_IDLE"
    printf '| RSS after the load runs | %s MiB |\n' "$RSS_LOAD"
)

echo
echo "$REPORT"

if [[ $RECORD == 1 ]]; then
    RESULTS=$BENCH_DIR/RESULTS.md
    if [[ ! -f $RESULTS ]]; then
        cat >"$RESULTS" <<'EOF'
# Benchmark results

Sections appended by `bench/state-bench.sh`, newest last.  Compare
numbers within one section (same machine, same minute); across sections
only the ratios to nginx mean much.  See README.md.
EOF
    fi
    printf '\n%s\n' "$REPORT" >>"$RESULTS"
    echo
    echo "state-bench: appended to $RESULTS" >&2
fi
