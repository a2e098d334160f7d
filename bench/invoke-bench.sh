#!/usr/bin/env bash
# invoke-bench.sh: a benchmark of daprd's service invocation.
#
# In one invocation it loads, with wrk, the same tiny app (invoke-app.c,
# answering "pong") four ways: directly; through its own daprd; through two
# daprds (a caller's and the app's, found by sqlite name resolution); and
# through nginx as a reference reverse proxy.  The proxied numbers are read
# as ratios to the direct run and to nginx, measured on the same machine a
# minute apart.  It prints a Markdown table and appends it, with the
# machine facts, to bench/RESULTS.md.  See bench/README.md.
#
# Usage: bench/invoke-bench.sh [BUILD_DIR] [options]
#   BUILD_DIR            build tree holding core/daprd and
#                        plugins/nameresolution-sqlite/.libs (default: build)
#   -d, --duration SECS  length of each wrk run (default 10)
#   --quick              3 s wrk runs
#   -c, --connections N  wrk connections (default 32; threads are always 2)
#   --no-record          print the table but do not touch RESULTS.md
#   --keep               keep the temp dir (logs, wrk output) and name it
#   -h, --help           this text

set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(dirname "$BENCH_DIR")

BUILD=build
DURATION=10
THREADS=2
CONNS=32
RECORD=1
KEEP=0
WARMUP=1        # seconds of unmeasured load before each wrk run

die() { echo "invoke-bench: $*" >&2; exit 1; }
say() { echo "invoke-bench: $*" >&2; }
usage() { sed -n '/^# Usage:/,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

while [[ $# -gt 0 ]]; do
    case $1 in
        -d|--duration) DURATION=${2:?}; shift 2 ;;
        --duration=*) DURATION=${1#*=}; shift ;;
        --quick) DURATION=3; shift ;;
        -c|--connections) CONNS=${2:?}; shift 2 ;;
        --no-record) RECORD=0; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) usage >&2; die "unknown option $1" ;;
        *) BUILD=$1; shift ;;
    esac
done
DURATION=${DURATION%s}
[[ $DURATION =~ ^[0-9]+$ && $DURATION -gt 0 ]] || die "bad duration '$DURATION'"
[[ $CONNS =~ ^[0-9]+$ && $CONNS -ge $THREADS ]] || die "bad connection count '$CONNS'"

# A relative build dir is taken from the current directory first, then
# from the top of the source tree, so "build" works from either place.
if [[ ! -d $BUILD && $BUILD != /* && -d $TOP/$BUILD ]]; then
    BUILD=$TOP/$BUILD
fi
[[ -d $BUILD ]] || die "no build dir '$BUILD'"
BUILD=$(cd "$BUILD" && pwd)
DAPRD=$BUILD/core/daprd
PLUGINS=$BUILD/plugins/nameresolution-sqlite/.libs
[[ -x $DAPRD ]] || die "no daprd at $DAPRD (build first)"
compgen -G "$PLUGINS/*.so" >/dev/null ||
    die "no nameresolution-sqlite plugin in $PLUGINS (build first)"
for tool in wrk nginx python3 curl cc pkg-config; do
    command -v "$tool" >/dev/null ||
        die "$tool not found (apt-get install -y wrk nginx python3 curl gcc pkg-config libevent-dev)"
done
pkg-config --exists libevent || die "libevent not found by pkg-config (apt-get install -y libevent-dev)"
# Only the plugin folder given on the command line should count, and the
# sidecars must not see a namespace from the caller's environment.
unset DAPR_PLUGINS_PATH NAMESPACE

TMP=$(mktemp -d "${TMPDIR:-/tmp}/invoke-bench.XXXXXX")
PIDS=()

# Stop everything this script started, by PID: SIGTERM, a short grace,
# then SIGKILL; then drop the temp dir unless --keep.
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ $KEEP == 1 ]]; then
        echo "invoke-bench: kept $TMP" >&2
    else
        rm -rf "$TMP"
    fi
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
    local url=$1 want=$2 pid=$3 log=$4 code
    for _ in $(seq 1500); do
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

# expect_pong URL LOG...: one request must answer 200 "pong" before the
# load starts, so a broken path fails loudly instead of timing errors.
# Name resolution may lag an announce by a moment, so retry for 10 s.
expect_pong() {
    local url=$1 body code
    shift
    for _ in $(seq 100); do
        body=$(curl -s --max-time 2 -w '\n%{http_code}' "$url" || true)
        code=${body##*$'\n'}
        body=${body%$'\n'*}
        [[ $code == 200 && $body == pong ]] && return 0
        sleep 0.1
    done
    local log
    for log in "$@"; do echo "--- $log" >&2; cat "$log" >&2; done
    die "$url answered $code '$body', not 200 'pong'"
}

rss_kib() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0
}
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
# CPU time a process has used so far, user + system, in clock ticks
# (fields 14 and 15 of /proc/PID/stat; the name in field 2 has no spaces
# for the programs measured here).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
HZ=$(getconf CLK_TCK)

declare -A RPS P50 P90 P99 REQS ERRS PEAK CPU

# run_wrk NAME URL [PID...]: a short warm-up, then the measured run; the
# parsed numbers land in RPS/P50/P90/P99/REQS/ERRS[NAME] (latencies in ms)
# and, for each PID, the highest VmRSS seen during the run (sampled every
# 0.25 s) in PEAK[NAME:PID] (KiB) and its CPU use in CPU[NAME:PID] (% of
# one core over the measured run).
run_wrk() {
    local name=$1 url=$2 out=$TMP/wrk-$1.txt pid wrk_pid kib t0 t1
    shift 2
    local -A ticks
    wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" "$url" >/dev/null
    for pid in "$@"; do PEAK[$name:$pid]=0; ticks[$pid]=$(cpu_ticks "$pid"); done
    t0=$(date +%s.%N)
    wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency "$url" >"$out" &
    wrk_pid=$!
    while kill -0 "$wrk_pid" 2>/dev/null; do
        for pid in "$@"; do
            kib=$(rss_kib "$pid")
            if [[ $kib -gt ${PEAK[$name:$pid]} ]]; then PEAK[$name:$pid]=$kib; fi
        done
        sleep 0.25
    done
    wait "$wrk_pid" || { cat "$out" >&2; die "wrk failed for $name"; }
    t1=$(date +%s.%N)
    for pid in "$@"; do
        CPU[$name:$pid]=$(awk -v a="${ticks[$pid]}" -v b="$(cpu_ticks "$pid")" \
            -v hz="$HZ" -v t="$t1" -v s="$t0" 'BEGIN { printf "%.0f", (b - a) / hz / (t - s) * 100 }')
    done
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
    P90[$name]=$(awk "$conv"' $1 == "90%" { printf "%.3f", ms($2) }' "$out")
    P99[$name]=$(awk "$conv"' $1 == "99%" { printf "%.3f", ms($2) }' "$out")
    # Errors: non-2xx/3xx answers plus socket errors (connect, read, write,
    # timeout), summed.
    ERRS[$name]=$(awk '/Non-2xx or 3xx responses:/ { n += $NF }
        /Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 }
        END { print n + 0 }' "$out")
    [[ -n ${RPS[$name]} && -n ${P50[$name]} && -n ${P90[$name]} && -n ${P99[$name]} ]] || {
        cat "$out" >&2; die "could not parse wrk output for $name"; }
    # Errors make the row suspect: show wrk's own words, not just a count.
    if [[ ${ERRS[$name]} != 0 ]]; then
        say "$name: ${ERRS[$name]} errors; wrk said:"
        cat "$out" >&2
    fi
}

echo "invoke-bench: build $BUILD, wrk ${THREADS}t/${CONNS}c, ${DURATION}s runs" >&2

# --- the app -----------------------------------------------------------------
# Built here, not by make: it is only a load target.  -O2 whatever the
# build tree used, so that the app is never the slow part.
# shellcheck disable=SC2046  # pkg-config output is meant to be split
cc -std=c11 -O2 -Wall -Wextra -o "$TMP/invoke-app" "$BENCH_DIR/invoke-app.c" \
    $(pkg-config --cflags --libs libevent) || die "cannot build invoke-app"
APP_PORT=$(free_port)
"$TMP/invoke-app" "$APP_PORT" >"$TMP/app.log" 2>&1 &
APP_PID=$!
PIDS+=("$APP_PID")
APP=http://127.0.0.1:$APP_PORT
wait_http "$APP/ping" 200 "$APP_PID" "$TMP/app.log"
expect_pong "$APP/ping" "$TMP/app.log"

# --- (1) direct ------------------------------------------------------------------
say "wrk against the app directly"
run_wrk direct "$APP/ping" "$APP_PID"

# --- (4) nginx as a reverse proxy in front of the app --------------------------
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
    # nginx closes a keep-alive connection after 1000 requests by default,
    # on both sides; daprd does not, so lift the limits to compare like
    # with like.
    keepalive_requests 100000000;
    client_body_temp_path $NGX/client_body;
    proxy_temp_path $NGX/proxy;
    fastcgi_temp_path $NGX/fastcgi;
    uwsgi_temp_path $NGX/uwsgi;
    scgi_temp_path $NGX/scgi;
    upstream app {
        server 127.0.0.1:$APP_PORT;
        # A pool of idle keep-alive connections to the app, as a sidecar
        # keeps one; without it nginx opens a connection per request.
        keepalive 64;
        keepalive_requests 100000000;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
} >"$NGX/nginx.conf"
nginx -p "$NGX" -c "$NGX/nginx.conf" -e "$NGX/error.log" >"$NGX/stdout.log" 2>&1 &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
wait_http "http://127.0.0.1:$NGINX_PORT/ping" 200 "$NGINX_PID" "$NGX/error.log"
expect_pong "http://127.0.0.1:$NGINX_PORT/ping" "$NGX/error.log"
# The master only supervises; the one worker (its child) does the work.
NGINX_WORKER=$(pgrep -P "$NGINX_PID" | head -n 1)
[[ -n $NGINX_WORKER ]] || die "no nginx worker process under $NGINX_PID"
say "wrk against nginx proxy_pass"
run_wrk nginx "http://127.0.0.1:$NGINX_PORT/ping" "$APP_PID" "$NGINX_WORKER"
kill "$NGINX_PID"; wait "$NGINX_PID" 2>/dev/null || true

# --- the two sidecars ---------------------------------------------------------
# No components (an empty resources folder, so not the embedded default
# state store); name resolution through one sqlite file both share.
# updateInterval 2s is the smallest the resolver accepts: as in Dapr, it
# must exceed the per-operation timeout (default and minimum 1s) by 1s.
mkdir -p "$TMP/resources"
cat >"$TMP/config.yaml" <<EOF
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: invoke-bench
spec:
  nameResolution:
    component: sqlite
    configuration:
      connectionString: $TMP/nr.db
      updateInterval: 2s
EOF
# The flags both sidecars share.
DAPRD_ARGS=(--dapr-internal-grpc-port 0 --dapr-listen-addresses 127.0.0.1
            --resources-path "$TMP/resources" --config "$TMP/config.yaml"
            --plugins-dir "$PLUGINS" --log-level warn)
# B first, so that its row is in the name resolution table before A asks.
B_PORT=$(free_port)
"$DAPRD" --app-id bench --app-port "$APP_PORT" --dapr-http-port "$B_PORT" \
    "${DAPRD_ARGS[@]}" >"$TMP/daprd-b.log" 2>&1 &
B_PID=$!
PIDS+=("$B_PID")
A_PORT=$(free_port)
"$DAPRD" --app-id client --dapr-http-port "$A_PORT" \
    "${DAPRD_ARGS[@]}" >"$TMP/daprd-a.log" 2>&1 &
A_PID=$!
PIDS+=("$A_PID")
wait_http "http://127.0.0.1:$B_PORT/v1.0/healthz" 204 "$B_PID" "$TMP/daprd-b.log"
wait_http "http://127.0.0.1:$A_PORT/v1.0/healthz" 204 "$A_PID" "$TMP/daprd-a.log"
VIA_B=http://127.0.0.1:$B_PORT/v1.0/invoke/bench/method/ping
VIA_A=http://127.0.0.1:$A_PORT/v1.0/invoke/bench/method/ping
expect_pong "$VIA_B" "$TMP/daprd-b.log"
expect_pong "$VIA_A" "$TMP/daprd-a.log" "$TMP/daprd-b.log"
sleep 1     # let start-up allocations settle before reading RSS
RSS_A_IDLE=$(rss_kib "$A_PID")
RSS_B_IDLE=$(rss_kib "$B_PID")

# --- (2) the app's own sidecar ------------------------------------------------
say "wrk against daprd B (its own app)"
run_wrk one "$VIA_B" "$APP_PID" "$B_PID"
# --- (3) caller's sidecar -> app's sidecar -> app ----------------------------
say "wrk against daprd A -> daprd B -> app"
run_wrk two "$VIA_A" "$APP_PID" "$A_PID" "$B_PID"
for pid in "$A_PID" "$B_PID" "$APP_PID"; do
    kill -0 "$pid" 2>/dev/null || die "process $pid died under load (see --keep logs)"
done
# Warnings the sidecars logged under load (timeouts, resets) belong with
# the numbers.
for side in a b; do
    if [[ -s $TMP/daprd-$side.log ]]; then
        say "daprd ${side^^} logged:"
        tail -n 20 "$TMP/daprd-$side.log" >&2
    fi
done

# --- the report -----------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
row() {     # row NAME LABEL
    local n=$1
    printf '| %s | %.0f | %s | %s | %.3f | %.3f | %.3f | %s | %s |\n' \
        "$2" "${RPS[$n]}" "$(ratio "${RPS[$n]}" "${RPS[direct]}")" \
        "$(ratio "${RPS[$n]}" "${RPS[nginx]}")" \
        "${P50[$n]}" "${P90[$n]}" "${P99[$n]}" "${REQS[$n]}" "${ERRS[$n]}"
}

CPU_MODEL=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
REV=$(git -C "$TOP" rev-parse --short HEAD 2>/dev/null || echo unknown)
CFLAGS_USED=$(sed -n 's/^CFLAGS = //p' "$BUILD/Makefile" 2>/dev/null || true)
NOW=$(date -u '+%Y-%m-%d %H:%M UTC')

# shellcheck disable=SC2016  # the backquotes are Markdown, not expansions
REPORT=$(
    echo "## $NOW — service invocation"
    echo
    echo "Machine: $(nproc) CPUs, ${CPU_MODEL:-unknown CPU}, Linux $(uname -r)."
    echo "Build: \`$BUILD\` (source rev $REV${CFLAGS_USED:+, CFLAGS \`$CFLAGS_USED\`})."
    echo "Load: wrk -t$THREADS -c$CONNS -d${DURATION}s --latency (after a ${WARMUP} s warm-up), $(nginx -v 2>&1 | sed 's/^nginx version: //'), app \`invoke-app.c\` (libevent $(pkg-config --modversion libevent), one thread)."
    echo
    echo "| run | req/s | ÷ direct | ÷ nginx proxy | p50 ms | p90 ms | p99 ms | requests | errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    row direct '(1) app direct `GET /ping`'
    row one '(2) daprd → app'
    row two '(3) daprd A → daprd B → app'
    row nginx '(4) nginx `proxy_pass` → app (reference)'
    echo
    echo "| VmRSS | idle | peak under (2) | peak under (3) |"
    echo "|---|---:|---:|---:|"
    printf '| daprd A (client, no app) | %s MiB | – | %s MiB |\n' \
        "$(mib "$RSS_A_IDLE")" "$(mib "${PEAK[two:$A_PID]}")"
    printf '| daprd B (bench, app port) | %s MiB | %s MiB | %s MiB |\n' \
        "$(mib "$RSS_B_IDLE")" "$(mib "${PEAK[one:$B_PID]}")" "$(mib "${PEAK[two:$B_PID]}")"
    echo
    echo "| CPU, % of one core | (1) direct | (2) daprd | (3) A → B | (4) nginx |"
    echo "|---|---:|---:|---:|---:|"
    printf '| invoke-app | %s | %s | %s | %s |\n' "${CPU[direct:$APP_PID]}" \
        "${CPU[one:$APP_PID]}" "${CPU[two:$APP_PID]}" "${CPU[nginx:$APP_PID]}"
    printf '| daprd A | – | – | %s | – |\n' "${CPU[two:$A_PID]}"
    printf '| daprd B | – | %s | %s | – |\n' "${CPU[one:$B_PID]}" "${CPU[two:$B_PID]}"
    printf '| nginx worker | – | – | – | %s |\n' "${CPU[nginx:$NGINX_WORKER]}"
)

echo
echo "$REPORT"

if [[ $RECORD == 1 ]]; then
    RESULTS=$BENCH_DIR/RESULTS.md
    if [[ ! -f $RESULTS ]]; then
        cat >"$RESULTS" <<'EOF'
# Benchmark results

Sections appended by the scripts in bench/, newest last.  Compare
numbers within one section (same machine, same minute); across sections
only the ratios mean much.  See README.md.
EOF
    fi
    printf '\n%s\n' "$REPORT" >>"$RESULTS"
    echo
    say "appended to $RESULTS"
fi
