#!/usr/bin/env bash
# redis-bench.sh: daprd's state API on state.redis, next to Redis's own
# benchmark tool doing the equivalent Redis operations, in one run.
#
# It starts a private redis-server, then daprd with a state.redis
# component on it, and measures with wrk: GET of one key and a save
# (overwrite, last-write) of one key.  Right after, redis-benchmark runs
# against the same server with the same number of connections:
#   HSET   - the write a state save boils down to (data + version fields),
#   HMGET  - the read a state get boils down to (data and version fields),
#   PING   - the server's round-trip floor.
# The plugin itself runs one Lua script (EVALSHA) per operation, which
# does a little more (etag check, TTL): the ratio daprd ÷ redis-benchmark
# is the cost of the HTTP API, the sidecar and the script together.  A
# Markdown table is printed and appended to bench/RESULTS.md.
#
# Usage: bench/redis-bench.sh [BUILD_DIR] [options]
#   BUILD_DIR            build tree holding core/daprd and
#                        plugins/state-redis/.libs (default: build)
#   -d, --duration SECS  length of each wrk run (default 10)
#   --quick              3 s wrk runs, fewer redis-benchmark requests
#   -c, --connections N  connections for wrk and redis-benchmark (default 32)
#   --no-record          print the table but do not touch RESULTS.md
#   -h, --help           this text

set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(dirname "$BENCH_DIR")

BUILD=build
DURATION=10
THREADS=2
CONNS=32
RECORD=1
REQUESTS=300000 # per redis-benchmark test

die() { echo "redis-bench: $*" >&2; exit 1; }
usage() { sed -n '/^# Usage:/,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

while [[ $# -gt 0 ]]; do
    case $1 in
        -d|--duration) DURATION=${2:?}; shift 2 ;;
        --duration=*) DURATION=${1#*=}; shift ;;
        --quick) DURATION=3; REQUESTS=100000; shift ;;
        -c|--connections) CONNS=${2:?}; shift 2 ;;
        --no-record) RECORD=0; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) usage >&2; die "unknown option $1" ;;
        *) BUILD=$1; shift ;;
    esac
done
DURATION=${DURATION%s}
[[ $DURATION =~ ^[0-9]+$ && $DURATION -gt 0 ]] || die "bad duration '$DURATION'"
[[ $CONNS =~ ^[0-9]+$ && $CONNS -ge $THREADS ]] || die "bad connection count '$CONNS'"

if [[ ! -d $BUILD && $BUILD != /* && -d $TOP/$BUILD ]]; then
    BUILD=$TOP/$BUILD
fi
[[ -d $BUILD ]] || die "no build dir '$BUILD'"
BUILD=$(cd "$BUILD" && pwd)
DAPRD=${DAPRD:-$BUILD/core/daprd}
PLUGINS=$BUILD/plugins/state-redis/.libs
[[ -x $DAPRD ]] || die "no daprd at $DAPRD (build first)"
[[ -f $PLUGINS/state-redis.so ]] || die "no state-redis plugin in $PLUGINS (configure found no hiredis?)"
for tool in wrk redis-server redis-benchmark redis-cli python3 curl; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y wrk redis-server python3 curl)"
done
unset DAPR_PLUGINS_PATH

TMP=$(mktemp -d "${TMPDIR:-/tmp}/redis-bench.XXXXXX")
PIDS=()
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

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

declare -A RPS P50 P99 REQS ERRS

# run_wrk NAME URL [LUA]: a 1 s warm-up, then the measured run.
run_wrk() {
    local name=$1 url=$2 script=() out=$TMP/wrk-$1.txt
    [[ -n ${3:-} ]] && script=(-s "$3")
    wrk -t"$THREADS" -c"$CONNS" -d1s "${script[@]}" "$url" >/dev/null
    wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency "${script[@]}" "$url" >"$out"
    RPS[$name]=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    REQS[$name]=$(awk '/ requests in / { print $1 }' "$out")
    local conv='function ms(v) {
            if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
            if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
            if (v ~ /m$/)  return substr(v, 1, length(v) - 1) * 60000
            if (v ~ /s$/)  return substr(v, 1, length(v) - 1) * 1000
            return v + 0 }'
    P50[$name]=$(awk "$conv"' $1 == "50%" { printf "%.3f", ms($2) }' "$out")
    P99[$name]=$(awk "$conv"' $1 == "99%" { printf "%.3f", ms($2) }' "$out")
    ERRS[$name]=$(awk '/Non-2xx or 3xx responses:/ { n += $NF }
        /Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 }
        END { print n + 0 }' "$out")
    [[ -n ${RPS[$name]} && -n ${P99[$name]} ]] || { cat "$out" >&2; die "could not parse wrk output for $name"; }
}

# run_rb NAME COMMAND...: redis-benchmark with the same connection count;
# --csv gives rps and latency percentiles in ms.
run_rb() {
    local name=$1 out=$TMP/rb-$1.csv
    shift
    redis-benchmark -h 127.0.0.1 -p "$RPORT" -c "$CONNS" -n "$REQUESTS" --threads "$THREADS" \
        --csv "$@" >"$out" 2>/dev/null
    # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    read -r RPS[$name] P50[$name] P99[$name] < <(awk -F'","' 'NR == 2 { print $2, $5, $7 }' "$out" | tr -d '"')
    REQS[$name]=$REQUESTS
    ERRS[$name]=0
    [[ -n ${RPS[$name]} ]] || { cat "$out" >&2; die "could not parse redis-benchmark output for $name"; }
}

echo "redis-bench: build $BUILD, ${CONNS} connections, ${DURATION}s wrk runs" >&2

# --- redis-server and daprd ------------------------------------------------
RPORT=$(free_port)
(cd "$TMP" && exec redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no) >"$TMP/redis.log" 2>&1 &
PIDS+=("$!")
for i in $(seq 200); do
    [[ $(redis-cli -p "$RPORT" ping 2>/dev/null) == PONG ]] && break
    sleep 0.02
done
[[ $(redis-cli -p "$RPORT" ping 2>/dev/null) == PONG ]] || { cat "$TMP/redis.log" >&2; die "redis-server did not start"; }

mkdir -p "$TMP/resources"
cat >"$TMP/resources/statestore.yaml" <<EOF
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.redis
  version: v1
  metadata:
  - name: redisHost
    value: 127.0.0.1:$RPORT
EOF
cat >"$TMP/save.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '[{"key":"k1","value":{"n":1}}]'
EOF

DAPR_PORT=$(free_port)
"$DAPRD" --app-id bench --dapr-http-port "$DAPR_PORT" --dapr-listen-addresses 127.0.0.1 \
    --resources-path "$TMP/resources" --plugins-dir "$PLUGINS" --log-level warn \
    >"$TMP/daprd.log" 2>&1 &
DAPRD_PID=$!
PIDS+=("$DAPRD_PID")
BASE=http://127.0.0.1:$DAPR_PORT
for i in $(seq 1500); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$BASE/v1.0/healthz" || true) == 204 ]] && break
    kill -0 "$DAPRD_PID" 2>/dev/null || { cat "$TMP/daprd.log" >&2; die "daprd exited"; }
    sleep 0.02
done

code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
    -d '[{"key":"k1","value":{"n":1}}]' "$BASE/v1.0/state/statestore")
[[ $code == 204 ]] || { cat "$TMP/daprd.log" >&2; die "saving k1 answered $code, not 204"; }
[[ $(redis-cli -p "$RPORT" HGET 'bench||k1' data) == '{"n":1}' ]] || die "k1 is not in Redis as expected"

echo "redis-bench: wrk against daprd state GET and save" >&2
run_wrk get "$BASE/v1.0/state/statestore/k1"
run_wrk save "$BASE/v1.0/state/statestore" "$TMP/save.lua"
kill -0 "$DAPRD_PID" 2>/dev/null || die "daprd died under load"

echo "redis-benchmark: PING, HMGET, HSET" >&2
run_rb ping PING
run_rb hmget HMGET 'bench||k1' data version
run_rb hset HSET 'bench||rb' data '{"n":1}' version 1

# --- the report ------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
row() {     # row NAME LABEL REFERENCE
    printf '| %s | %.0f | %s | %.3f | %.3f | %s | %s |\n' "$2" "${RPS[$1]}" \
        "$(ratio "${RPS[$1]}" "${RPS[$3]}")" "${P50[$1]}" "${P99[$1]}" "${REQS[$1]}" "${ERRS[$1]}"
}
CPU=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
REV=$(git -C "$TOP" rev-parse --short HEAD 2>/dev/null || echo unknown)
NOW=$(date -u '+%Y-%m-%d %H:%M UTC')
REPORT=$(
    echo "## $NOW — state.redis"
    echo
    echo "Machine: $(nproc) CPUs, ${CPU:-unknown CPU}, Linux $(uname -r); $(redis-server --version | awk '{print $1, $2, $3}')."
    echo "Build: \`$BUILD\` (source rev $REV).  daprd: wrk -t$THREADS -c$CONNS -d${DURATION}s;"
    echo "redis-benchmark: -c $CONNS --threads $THREADS -n $REQUESTS, same server, same minute."
    echo
    echo "| run | req/s | ratio | p50 ms | p99 ms | requests | errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    row ping 'redis-benchmark PING (floor)' ping
    row hmget 'redis-benchmark HMGET data version' hmget
    row get 'daprd GET /v1.0/state/statestore/k1 (÷ HMGET)' hmget
    row hset 'redis-benchmark HSET data version' hset
    row save 'daprd POST /v1.0/state/statestore (÷ HSET)' hset
)
echo
echo "$REPORT"

if [[ $RECORD == 1 ]]; then
    printf '\n%s\n' "$REPORT" >>"$BENCH_DIR/RESULTS.md"
    echo
    echo "redis-bench: appended to $BENCH_DIR/RESULTS.md" >&2
fi
