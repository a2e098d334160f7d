#!/usr/bin/env bash
# pubsub-bench.sh: publish-to-delivery through two sidecars, for each
# broker plugin, next to the same plugin driven directly (no sidecar) and
# the broker's own benchmark tool, in one run.
#
# For each broker whose plugin is built it starts the real broker
# (redis-server; nats-server -js; librdkafka's mock cluster), a publisher
# daprd A (no app) and a subscriber daprd B whose app (pubsub-app.c) counts
# every delivery and its latency.  wrk (pubsub-publish.lua) POSTs to A's
# /v1.0/publish/pubsub/bench, first as fast as its connections allow, then
# paced at a fixed rate; after each run the script waits for the app to
# drain.  pubsub-direct.c then does the same through the plugin .so with
# no sidecar, and the broker's own tool runs where there is one
# (redis-benchmark XADD; `nats bench` when a nats CLI is found).  Sidecar
# numbers are read as ratios to the direct plugin's.  It prints Markdown
# tables and appends them, with the machine facts, to bench/RESULTS.md.
# See bench/README.md.
#
# Usage: bench/pubsub-bench.sh [BUILD_DIR] [options]
#   BUILD_DIR            build tree holding core/daprd and the plugins
#                        (default: build)
#   --broker LIST        redis, jetstream, kafka or all (default all);
#                        a comma list or repeated
#   -d, --duration SECS  length of each measured run (default 10)
#   --quick              3 s runs, shorter drains and tool runs
#   -c, --connections N  wrk connections, and publishing threads of the
#                        direct client (default 32)
#   --rate N             messages/s of the paced runs (default: half the
#                        sidecars' saturated delivered/s, 2 digits)
#   --no-record          print the tables but do not touch RESULTS.md
#   --keep               keep the temp dir (logs, raw output) and name it
#   -h, --help           this text
#
# Environment: NATS_CLI (path of a nats CLI, else `nats` on PATH or in
# $(go env GOPATH)/bin), DAPRD (another daprd binary).

set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(dirname "$BENCH_DIR")

BUILD=build
DURATION=10
THREADS=2
CONNS=32
RATE=
RECORD=1
KEEP=0
QUICK=0
BROKERS=()
WARMUP=1            # seconds of unmeasured load before the measured runs
IDLE=5              # a drain ends after this long without a new delivery

die() { echo "pubsub-bench: $*" >&2; exit 1; }
say() { echo "pubsub-bench: $*" >&2; }
usage() { sed -n '/^# Usage:/,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

while [[ $# -gt 0 ]]; do
    case $1 in
        --broker) IFS=, read -r -a more <<<"${2:?}"; BROKERS+=("${more[@]}"); shift 2 ;;
        --broker=*) IFS=, read -r -a more <<<"${1#*=}"; BROKERS+=("${more[@]}"); shift ;;
        -d|--duration) DURATION=${2:?}; shift 2 ;;
        --duration=*) DURATION=${1#*=}; shift ;;
        --quick) DURATION=3; QUICK=1; shift ;;
        -c|--connections) CONNS=${2:?}; shift 2 ;;
        --rate) RATE=${2:?}; shift 2 ;;
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
[[ -z $RATE || ($RATE =~ ^[0-9]+$ && $RATE -gt 0) ]] || die "bad rate '$RATE'"
[[ ${#BROKERS[@]} -eq 0 ]] && BROKERS=(all)
WANT=()
for b in "${BROKERS[@]}"; do
    case $b in
        all) WANT+=(redis jetstream kafka) ;;
        redis|jetstream|kafka) WANT+=("$b") ;;
        *) die "unknown broker '$b' (redis, jetstream, kafka or all)" ;;
    esac
done
# Each broker once, in the order asked.
mapfile -t WANT < <(printf '%s\n' "${WANT[@]}" | awk '!seen[$0]++')
# The longest wait for a backlog to drain after a run.
DRAIN_MAX=$(( DURATION * 6 > 60 ? DURATION * 6 : 60 ))
TOOL_MSGS=200000
[[ $QUICK == 1 ]] && TOOL_MSGS=50000

if [[ ! -d $BUILD && $BUILD != /* && -d $TOP/$BUILD ]]; then
    BUILD=$TOP/$BUILD
fi
[[ -d $BUILD ]] || die "no build dir '$BUILD'"
BUILD=$(cd "$BUILD" && pwd)
DAPRD=${DAPRD:-$BUILD/core/daprd}
[[ -x $DAPRD ]] || die "no daprd at $DAPRD (build first)"
for tool in wrk python3 curl cc pkg-config; do
    command -v "$tool" >/dev/null ||
        die "$tool not found (apt-get install -y wrk python3 curl gcc pkg-config libevent-dev)"
done
pkg-config --exists libevent || die "libevent not found by pkg-config (apt-get install -y libevent-dev)"
unset DAPR_PLUGINS_PATH NAMESPACE

TMP=$(mktemp -d "${TMPDIR:-/tmp}/pubsub-bench.XXXXXX")
PIDS=()

# Stop what is in PIDS by PID (SIGTERM, a short grace, then SIGKILL) and
# forget it.
stop_all() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}
# Helpers of the current run (wrk, the RSS sampler): stopped on exit too,
# so that an interrupted run leaves nothing behind.
BG=()
cleanup() {
    local pid
    for pid in "${BG[@]}"; do kill "$pid" 2>/dev/null || true; done
    stop_all
    if [[ $KEEP == 1 ]]; then
        echo "pubsub-bench: kept $TMP" >&2
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
mono_ns() { python3 -c 'import time; print(time.monotonic_ns())'; }

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

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
HZ=$(getconf CLK_TCK)
ms() { awk -v us="$1" 'BEGIN { printf "%.3f", us / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
# The larger of 0 and A - B.
pos_diff() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; print (d > 0 ? d : 0) }'; }

# All numbers land in R[broker:run:field].
declare -A R
# kv_into PREFIX LINE: each name=value of LINE into R[PREFIX:name].
kv_into() {
    local prefix=$1 kv
    for kv in $2; do
        [[ $kv == *=* ]] && R[$prefix:${kv%%=*}]=${kv#*=}
    done
    return 0
}

# --- the two C programs ---------------------------------------------------------
# Built here, not by make: they are only load and measuring tools.  -O2
# whatever the build tree used.
# shellcheck disable=SC2046  # pkg-config output is meant to be split
cc -std=c11 -O2 -Wall -Wextra -o "$TMP/pubsub-app" "$BENCH_DIR/pubsub-app.c" \
    $(pkg-config --cflags --libs libevent) || die "cannot build pubsub-app"
cc -std=c11 -O2 -Wall -Wextra -I "$TOP/plugin-sdk/include" -o "$TMP/pubsub-direct" \
    "$BENCH_DIR/pubsub-direct.c" -ldl -lpthread || die "cannot build pubsub-direct"

# --- brokers ------------------------------------------------------------------------
# broker_start_NAME DIR: start the broker, set BROKER_PID and BROKER_DESC,
# fill META_ALL (metadata both paths use), META_SIDECAR and META_DIRECT
# (what only one path adds), as name=value words.  Return 1 with SKIP_WHY
# set when the broker cannot be had here.

broker_start_redis() {
    local dir=$1 port
    command -v redis-server >/dev/null || { SKIP_WHY="redis-server not found (apt-get install -y redis-server)"; return 1; }
    port=$(free_port)
    (cd "$dir" && exec redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize no) >"$dir/broker.log" 2>&1 &
    BROKER_PID=$!
    PIDS+=("$BROKER_PID")
    for _ in $(seq 200); do
        [[ $(redis-cli -p "$port" ping 2>/dev/null) == PONG ]] && break
        sleep 0.02
    done
    [[ $(redis-cli -p "$port" ping 2>/dev/null) == PONG ]] || { cat "$dir/broker.log" >&2; die "redis-server did not start"; }
    BROKER_PORT=$port
    BROKER_DESC=$(redis-server --version | awk '{print $1, $2, $3}')
    META_ALL=("redisHost=127.0.0.1:$port")
    META_SIDECAR=()
    META_DIRECT=()
}

broker_start_jetstream() {
    local dir=$1 port
    command -v nats-server >/dev/null || { SKIP_WHY="nats-server not found (apt-get install -y nats-server)"; return 1; }
    port=$(free_port)
    nats-server -js -a 127.0.0.1 -p "$port" -sd "$dir/js" >"$dir/broker.log" 2>&1 &
    BROKER_PID=$!
    PIDS+=("$BROKER_PID")
    for _ in $(seq 250); do
        grep -q "Server is ready" "$dir/broker.log" 2>/dev/null && break
        kill -0 "$BROKER_PID" 2>/dev/null || break
        sleep 0.02
    done
    grep -q "Server is ready" "$dir/broker.log" || { cat "$dir/broker.log" >&2; die "nats-server did not start"; }
    BROKER_PORT=$port
    # As with Dapr, the plugin never creates streams: one file-backed
    # stream captures the sidecars' topic and the direct client's.
    js_stream_add "$port" pbbench bench bench-direct-direct bench-direct-direct_paced ||
        die "cannot create the JetStream stream"
    BROKER_DESC="nats-server $(nats-server --version | awk '{print $NF}') (JetStream, file storage)"
    META_ALL=("natsURL=nats://127.0.0.1:$port" "streamName=pbbench")
    META_SIDECAR=()
    META_DIRECT=()
}

# js_stream_add PORT NAME SUBJECT...: create a JetStream stream with one
# request in NATS's text protocol ($JS.API.STREAM.CREATE), so that no
# nats CLI or test helper is needed.
js_stream_add() {
    python3 - "$@" <<'PY'
import json, socket, sys
port, name, subjects = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
s = socket.create_connection(("127.0.0.1", port), timeout=10)
f = s.makefile("rb")
f.readline()                                    # INFO {...}
cfg = json.dumps({"name": name, "subjects": subjects, "storage": "file",
                  "retention": "limits", "num_replicas": 1}).encode()
s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nSUB _INBOX.pbbench 1\r\n'
          + b"PUB $JS.API.STREAM.CREATE." + name.encode() + b" _INBOX.pbbench "
          + str(len(cfg)).encode() + b"\r\n" + cfg + b"\r\n")
while True:
    line = f.readline()
    if not line:
        sys.exit("nats-server closed the connection")
    if line.startswith(b"PING"):
        s.sendall(b"PONG\r\n")
    elif line.startswith(b"-ERR"):
        sys.exit(line.decode().strip())
    elif line.startswith(b"MSG "):
        reply = json.loads(f.read(int(line.split()[-1])))
        if "error" in reply:
            sys.exit("stream create: %s" % reply["error"])
        break
PY
}

broker_start_kafka() {
    local dir=$1 mock='' line
    # The kafka tests' helper: built by make when configured with
    # librdkafka, else compiled here from its one source file.
    if [[ -x $BUILD/t/kafka/mock-cluster ]]; then
        mock=$BUILD/t/kafka/mock-cluster
    elif [[ -f $TOP/t/kafka/mock-cluster.c ]] && pkg-config --exists rdkafka; then
        # shellcheck disable=SC2046
        cc -std=c11 -O2 -o "$TMP/mock-cluster" "$TOP/t/kafka/mock-cluster.c" \
            $(pkg-config --cflags --libs rdkafka) -lpthread 2>"$dir/mock-build.log" &&
            mock=$TMP/mock-cluster
    fi
    [[ -n $mock ]] || { SKIP_WHY="no t/kafka/mock-cluster (and no librdkafka to build it: apt-get install -y librdkafka-dev)"; return 1; }
    "$mock" --brokers 1 >"$dir/broker.out" 2>"$dir/broker.log" &
    BROKER_PID=$!
    PIDS+=("$BROKER_PID")
    for _ in $(seq 250); do
        line=$(sed -n 's/^BOOTSTRAP //p' "$dir/broker.out" 2>/dev/null)
        [[ -n $line ]] && break
        kill -0 "$BROKER_PID" 2>/dev/null || break
        sleep 0.02
    done
    [[ -n $line ]] || { cat "$dir/broker.log" >&2; die "mock-cluster did not start"; }
    BROKER_DESC="librdkafka $(pkg-config --modversion rdkafka 2>/dev/null || echo '?') mock cluster (1 broker, in-process; not a real Kafka)"
    # Oldest: messages published while the consumer group is still
    # joining are read too, not skipped.
    META_ALL=("brokers=$line" "authType=none" "initialOffset=oldest")
    META_SIDECAR=("consumerGroup=bench-sub")
    META_DIRECT=("consumerGroup=bench-direct")
}

# --- the broker's own tools ---------------------------------------------------------
# tool_NAME: run the tool against the running broker; add rows to TOOL_ROWS
# (Markdown) or set TOOL_NOTE when there is none.

# A payload the size of the CloudEvent the sidecar publishes.
EVENT_SAMPLE='{"data":{"pb_seq":1000000001,"pb_sent_ns":123456789012345},"datacontenttype":"application/json","id":"0f8fad5b-d9cb-469f-a165-70867728950e","pubsubname":"pubsub","source":"pub","specversion":"1.0","time":"2026-01-01T00:00:00Z","topic":"bench","traceid":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","tracestate":"","type":"com.dapr.event.sent"}'

tool_redis() {
    local out=$TMP/redis/rb.csv rps p50 p99
    command -v redis-benchmark >/dev/null || { TOOL_NOTE="redis-benchmark not found"; return 0; }
    say "redis: redis-benchmark XADD"
    redis-benchmark -h 127.0.0.1 -p "$BROKER_PORT" -c "$CONNS" -n "$TOOL_MSGS" --threads "$THREADS" \
        --csv XADD rb-bench '*' data "$EVENT_SAMPLE" >"$out" 2>/dev/null || true
    # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    # The test column holds the command, quotes and commas included:
    # count the fields from the end.
    read -r rps p50 p99 < <(awk -F'","' 'NR == 2 { print $(NF-6), $(NF-3), $(NF-1) }' "$out" | tr -d '"') || true
    if [[ -z ${rps:-} ]]; then
        TOOL_NOTE="redis-benchmark XADD gave no result"
        return 0
    fi
    R[redis:tool:pub_per_s]=$rps
    TOOL_ROWS+=("| redis | redis-benchmark \`XADD\` ${#EVENT_SAMPLE} B (publish only; -c $CONNS --threads $THREADS -n $TOOL_MSGS) | $(printf '%.0f' "$rps") | $(ratio "$rps" "${R[redis:direct:published_per_s]:-0}") | $p50 | $p99 |")
}

find_nats_cli() {
    local c
    for c in "${NATS_CLI:-}" "$(command -v nats || true)" \
        "$(go env GOPATH 2>/dev/null || true)/bin/nats"; do
        [[ -n $c && -x $c ]] && { echo "$c"; return 0; }
    done
    return 1
}

tool_jetstream() {
    local nats out p50 p99 rps crps
    if ! nats=$(find_nats_cli); then
        TOOL_NOTE="no nats CLI here (go install github.com/nats-io/natscli/nats@latest, or NATS_CLI=path): no broker tool row"
        return 0
    fi
    say "jetstream: nats bench js pub sync / js consume"
    out=$TMP/jetstream/nats-pub.txt
    timeout 300 "$nats" -s "nats://127.0.0.1:$BROKER_PORT" bench js pub sync nbench.x --create \
        --storage file --stream natsbench --clients "$CONNS" --msgs "$TOOL_MSGS" \
        --size "${#EVENT_SAMPLE}" --no-progress >"$out" 2>&1 || true
    # "... aggregated stats: 37,478 msgs/sec ~ ..." and "... P50 636.49us | P90 ... | P99 4,399.63us ..."
    rps=$(sed -n 's/.*aggregated stats: \([0-9,.]*\) msgs\/sec.*/\1/p' "$out" | head -n 1 | tr -d ,)
    p50=$(sed -n 's/.*| P50 \([0-9,.]*\)us.*/\1/p' "$out" | head -n 1 | tr -d ,)
    p99=$(sed -n 's/.*| P99 \([0-9,.]*\)us.*/\1/p' "$out" | head -n 1 | tr -d ,)
    if [[ -z $rps ]]; then
        TOOL_NOTE="nats bench gave no result (see --keep output)"
        return 0
    fi
    R[jetstream:tool:pub_per_s]=$rps
    TOOL_ROWS+=("| jetstream | \`nats bench js pub sync\` ${#EVENT_SAMPLE} B, $CONNS clients, $TOOL_MSGS msgs ($($nats --version 2>&1)) | $(printf '%.0f' "$rps") | $(ratio "$rps" "${R[jetstream:direct:published_per_s]:-0}") | $(ms "${p50:-0}") | $(ms "${p99:-0}") |")
    out=$TMP/jetstream/nats-consume.txt
    timeout 300 "$nats" -s "nats://127.0.0.1:$BROKER_PORT" bench js consume --stream natsbench \
        --clients 1 --msgs "$TOOL_MSGS" --no-progress >"$out" 2>&1 || true
    crps=$(sed -n 's/.*stats: \([0-9,.]*\) msgs\/sec.*/\1/p' "$out" | tail -n 1 | tr -d ,)
    # No ratio: the direct client's delivered/s is bounded by its own
    # publishing, the tool consumes a stream that is already full.
    [[ -n $crps ]] && TOOL_ROWS+=("| jetstream | \`nats bench js consume\` of those messages (durable, explicit acks, 1 client) | $(printf '%.0f' "$crps") | – | – | – |")
    return 0
}

tool_kafka() {
    TOOL_NOTE="Kafka: no broker-side benchmark tool here (Debian ships no Kafka), so the direct plugin client is the only reference.  The broker is librdkafka's mock cluster, which holds a fetch that finds no new data for the whole fetch.wait.max.ms (librdkafka's default 500 ms) even when data arrives meanwhile, and answers a fetch with at most one message set per partition: a delivery here can wait up to 500 ms for nothing but the mock, so Kafka's e2e latency and delivered/s say more about the mock than about the plugin, on both paths; read the ratios"
}

# --- the sidecar path ----------------------------------------------------------------
# app_stats BROKER RUN: the app's counters into R[BROKER:RUN:*].
app_stats() {
    local line
    line=$(curl -s --max-time 5 "$APP/stats" || true)
    kv_into "$1:$2" "$line"
}

# drain_app BROKER RUN WANT: wait until the app has WANT distinct ids
# (complete), or IDLE seconds pass without a new one (idle), or DRAIN_MAX
# in all (cap); the reason goes to R[BROKER:RUN:drain].
drain_app() {
    local b=$1 run=$2 want=$3 last=-1 t_last t0 now
    t0=$(date +%s)
    t_last=$t0
    while :; do
        app_stats "$b" "$run"
        now=$(date +%s)
        local have=${R[$b:$run:distinct]:-0}
        if (( have >= want )); then R[$b:$run:drain]=complete; return 0; fi
        if [[ $have != "$last" ]]; then last=$have; t_last=$now; fi
        if (( now - t0 >= DRAIN_MAX )); then R[$b:$run:drain]=cap; return 0; fi
        if (( now - t_last >= IDLE )); then R[$b:$run:drain]=idle; return 0; fi
        sleep 0.2
    done
}

# count_resets LOG: librdkafka's "offset reset ... Offset out of range"
# warnings in LOG: the consumer's position was deleted from the log before
# it was read (the mock cluster keeps at most 5 MiB per partition).
count_resets() { grep -c 'Offset out of range' "$1" 2>/dev/null || true; }

# run_wrk BROKER RUN BASE RATE [PID...]: publish through daprd A with wrk
# (RATE 0: as fast as possible), sample RSS and CPU of PIDs during it,
# then drain.  Results in R[BROKER:RUN:*].
run_wrk() {
    local b=$1 run=$2 base=$3 rate=$4 out=$TMP/$1/wrk-$2.txt pid wrk_pid kib t0 t1
    shift 4
    local -A ticks
    curl -s -o /dev/null --max-time 5 -X POST "$APP/reset?base=$base"
    local resets0
    resets0=$(count_resets "$TMP/$b/daprd-b.log")
    for pid in "$@"; do R[$b:$run:peak:$pid]=0; ticks[$pid]=$(cpu_ticks "$pid"); done
    t0=$(date +%s.%N)
    PB_BASE=$base PB_THREADS=$THREADS PB_RATE=$rate \
        wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s "$BENCH_DIR/pubsub-publish.lua" \
        "$PUBLISH_URL" >"$out" 2>&1 &
    wrk_pid=$!
    BG=("$wrk_pid")
    while kill -0 "$wrk_pid" 2>/dev/null; do
        for pid in "$@"; do
            kib=$(rss_kib "$pid")
            if [[ $kib -gt ${R[$b:$run:peak:$pid]} ]]; then R[$b:$run:peak:$pid]=$kib; fi
        done
        sleep 0.25
    done
    wait "$wrk_pid" || { cat "$out" >&2; die "wrk failed for $b $run"; }
    t1=$(date +%s.%N)
    for pid in "$@"; do
        R[$b:$run:cpu:$pid]=$(awk -v a="${ticks[$pid]}" -v b="$(cpu_ticks "$pid")" \
            -v hz="$HZ" -v t="$t1" -v s="$t0" 'BEGIN { printf "%.0f", (b - a) / hz / (t - s) * 100 }')
    done
    kv_into "$b:$run" "$(sed -n 's/^PB //p' "$out")"
    [[ -n ${R[$b:$run:ok]:-} ]] || { cat "$out" >&2; die "no PB line in the wrk output of $b $run"; }
    local conv='function us(v) {
            if (v ~ /us$/) return substr(v, 1, length(v) - 2) + 0
            if (v ~ /ms$/) return substr(v, 1, length(v) - 2) * 1000
            if (v ~ /m$/)  return substr(v, 1, length(v) - 1) * 60000000
            if (v ~ /s$/)  return substr(v, 1, length(v) - 1) * 1000000
            return v + 0 }'
    R[$b:$run:pub_p50_us]=$(awk "$conv"' $1 == "50%" { printf "%.1f", us($2) }' "$out")
    R[$b:$run:pub_p99_us]=$(awk "$conv"' $1 == "99%" { printf "%.1f", us($2) }' "$out")
    R[$b:$run:sockerr]=$(awk '/Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 } END { print n + 0 }' "$out")
    R[$b:$run:duration_s]=$(awk '/ requests in / { sub(/s,$/, "", $4); print $4 }' "$out")
    R[$b:$run:published_per_s]=$(awk -v n="${R[$b:$run:ok]}" -v d="${R[$b:$run:duration_s]:-$DURATION}" \
        'BEGIN { printf "%.1f", (d > 0 ? n / d : 0) }')
    # While draining, keep the highest RSS (the backlog is delivered now).
    local drain_pids=("$@")
    (
        while :; do
            for pid in "${drain_pids[@]}"; do echo "$pid $(rss_kib "$pid")"; done
            sleep 0.25
        done
    ) >"$TMP/$b/rss-$run.txt" 2>/dev/null &
    local sampler=$!
    BG=("$sampler")
    drain_app "$b" "$run" "${R[$b:$run:ok]}"
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    BG=()
    for pid in "$@"; do
        kib=$(awk -v p="$pid" '$1 == p && $2 > m { m = $2 } END { print m + 0 }' "$TMP/$b/rss-$run.txt")
        if [[ $kib -gt ${R[$b:$run:peak:$pid]} ]]; then R[$b:$run:peak:$pid]=$kib; fi
    done
    R[$b:$run:resets]=$(( $(count_resets "$TMP/$b/daprd-b.log") - resets0 ))
    R[$b:$run:errors]=$(( ${R[$b:$run:failed]} + ${R[$b:$run:sockerr]} ))
    R[$b:$run:lost]=$(pos_diff "${R[$b:$run:ok]}" "${R[$b:$run:distinct]:-0}")
    R[$b:$run:unanswered]=$(( ${R[$b:$run:sent]} - ${R[$b:$run:ok]} - ${R[$b:$run:failed]} ))
    if [[ ${R[$b:$run:errors]} != 0 ]]; then
        say "$b $run: ${R[$b:$run:errors]} publish errors; wrk said:"
        cat "$out" >&2
    fi
}

# run_direct BROKER RUN RATE: the same through the plugin with no sidecar.
run_direct() {
    local b=$1 run=$2 rate=$3 out=$TMP/$1/direct-$2.txt m args=()
    for m in "${META_ALL[@]}" "${META_DIRECT[@]}"; do args+=(--metadata "$m"); done
    # A topic of its own for each run, so that nothing left from the
    # sidecar runs or the other direct run is counted.
    # In the background and waited for, so that Ctrl-C reaches the trap at
    # once (timeout runs in a process group of its own).
    local rc=0
    timeout $(( DURATION + WARMUP + 2 * DRAIN_MAX + 60 )) "$TMP/pubsub-direct" "${args[@]}" \
        --type "pubsub.$b" --topic "bench-direct-$run" --duration "$DURATION" --warmup "$WARMUP" \
        --concurrency "$CONNS" --rate "$rate" --drain "$DRAIN_MAX" --idle "$IDLE" \
        "$PLUGIN_SO" >"$out" 2>"$TMP/$b/direct-$run.err" &
    BG=("$!")
    wait "$!" || rc=$?
    BG=()
    if [[ $rc != 0 ]]; then
        cat "$out" "$TMP/$b/direct-$run.err" >&2
        say "$b: the direct client failed (exit $rc)"
        return 1
    fi
    kv_into "$b:$run" "$(sed -n 's/^PB //p' "$out")"
    [[ -n ${R[$b:$run:ok]:-} ]] || { cat "$out" "$TMP/$b/direct-$run.err" >&2; die "no PB line from pubsub-direct for $b"; }
    R[$b:$run:errors]=${R[$b:$run:failed]}
    R[$b:$run:lost]=$(pos_diff "${R[$b:$run:ok]}" "${R[$b:$run:distinct]:-0}")
    R[$b:$run:unanswered]=0
    R[$b:$run:resets]=$(count_resets "$TMP/$b/direct-$run.err")
    if [[ -s $TMP/$b/direct-$run.err ]]; then
        say "$b direct $run said:"
        tail -n 20 "$TMP/$b/direct-$run.err" >&2
    fi
}

# --- one broker ----------------------------------------------------------------------
MEASURED=()
SKIPPED=()
TOOL_ROWS=()
TOOL_NOTES=()

bench_broker() {
    local b=$1 dir=$TMP/$1 m
    PLUGIN_SO=$BUILD/plugins/pubsub-$b/.libs/pubsub-$b.so
    if [[ ! -f $PLUGIN_SO ]]; then
        say "skipping $b: $PLUGIN_SO is not built"
        SKIPPED+=("$b (plugin not built)")
        return 0
    fi
    mkdir -p "$dir/resources"
    SKIP_WHY=
    if ! "broker_start_$b" "$dir"; then
        say "skipping $b: $SKIP_WHY"
        SKIPPED+=("$b ($SKIP_WHY)")
        return 0
    fi
    R[$b:broker]=$BROKER_DESC
    R[$b:broker_pid]=$BROKER_PID
    say "$b: $BROKER_DESC"

    # One component both sidecars load; B adds what only a subscriber needs.
    write_component() {    # FILE META...
        local file=$1 kv
        shift
        {
            cat <<EOF
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pubsub
spec:
  type: pubsub.$b
  version: v1
  metadata:
EOF
            for kv in "$@"; do
                printf '  - name: %s\n    value: "%s"\n' "${kv%%=*}" "${kv#*=}"
            done
        } >"$file"
    }
    mkdir -p "$dir/res-a" "$dir/res-b"
    write_component "$dir/res-a/pubsub.yaml" "${META_ALL[@]}"
    write_component "$dir/res-b/pubsub.yaml" "${META_ALL[@]}" "${META_SIDECAR[@]}"

    local app_port a_port b_port app_pid a_pid b_pid
    app_port=$(free_port)
    "$TMP/pubsub-app" "$app_port" pubsub bench >"$dir/app.log" 2>&1 &
    app_pid=$!
    PIDS+=("$app_pid")
    APP=http://127.0.0.1:$app_port
    wait_http "$APP/stats" 200 "$app_pid" "$dir/app.log"
    local common=(--dapr-internal-grpc-port 0 --dapr-listen-addresses 127.0.0.1
                  --plugins-dir "$(dirname "$PLUGIN_SO")" --log-level warn)
    b_port=$(free_port)
    "$DAPRD" --app-id sub --app-port "$app_port" --dapr-http-port "$b_port" \
        --resources-path "$dir/res-b" "${common[@]}" >"$dir/daprd-b.log" 2>&1 &
    b_pid=$!
    PIDS+=("$b_pid")
    a_port=$(free_port)
    "$DAPRD" --app-id pub --dapr-http-port "$a_port" \
        --resources-path "$dir/res-a" "${common[@]}" >"$dir/daprd-a.log" 2>&1 &
    a_pid=$!
    PIDS+=("$a_pid")
    wait_http "http://127.0.0.1:$b_port/v1.0/healthz" 204 "$b_pid" "$dir/daprd-b.log"
    wait_http "http://127.0.0.1:$a_port/v1.0/healthz" 204 "$a_pid" "$dir/daprd-a.log"
    PUBLISH_URL=http://127.0.0.1:$a_port/v1.0/publish/pubsub/bench

    # One message must make it A -> broker -> B -> app before any load:
    # the subscription may take a moment (a Kafka group joins in seconds).
    local code delivered=0
    for _ in $(seq 60); do
        code=$(curl -s -o "$dir/probe.body" -w '%{http_code}' --max-time 5 \
            -H 'Content-Type: application/json' \
            -d "{\"pb_seq\":0,\"pb_sent_ns\":$(mono_ns)}" "$PUBLISH_URL" || true)
        [[ $code == 204 ]] || { cat "$dir/probe.body" "$dir/daprd-a.log" >&2; die "$b: publishing through daprd A answered $code"; }
        for _ in $(seq 10); do
            app_stats "$b" probe
            if [[ ${R[$b:probe:delivered]:-0} -gt 0 ]]; then delivered=1; break 2; fi
            sleep 0.1
        done
    done
    if [[ $delivered != 1 ]]; then
        for m in daprd-a daprd-b app broker; do echo "--- $m" >&2; tail -n 20 "$dir/$m.log" >&2; done
        die "$b: nothing published through daprd A reached the app through daprd B within 60 s"
    fi
    sleep 1     # let start-up allocations settle before reading RSS
    R[$b:rss_idle:a]=$(rss_kib "$a_pid")
    R[$b:rss_idle:b]=$(rss_kib "$b_pid")
    R[$b:a_pid]=$a_pid
    R[$b:b_pid]=$b_pid
    R[$b:app_pid]=$app_pid

    # Warm-up (unmeasured), drained, then the measured runs.
    say "$b: sidecars, ${WARMUP} s warm-up"
    local saved=$DURATION
    DURATION=$WARMUP
    run_wrk "$b" warm 0 0
    DURATION=$saved
    say "$b: sidecars, ${DURATION} s as fast as $CONNS connections go"
    run_wrk "$b" side_sat 1000000000 0 "$a_pid" "$b_pid" "$app_pid" "$BROKER_PID"
    say "$b: direct plugin, ${DURATION} s as fast as $CONNS threads go"
    run_direct "$b" direct 0 || { SKIPPED+=("$b (direct client failed)"); stop_all; return 0; }

    local rate=$RATE
    if [[ -z $rate ]]; then
        rate=$(awk -v d="${R[$b:side_sat:delivered_per_s]:-0}" 'BEGIN {
            r = d / 2; if (r < 100) { print 100; exit }
            e = 10 ^ (int(log(r) / log(10)) - 1); printf "%d", int(r / e) * e }')
    fi
    R[$b:rate]=$rate
    say "$b: sidecars, ${DURATION} s paced at $rate msg/s"
    run_wrk "$b" side_paced 2000000000 "$rate" "$a_pid" "$b_pid"
    say "$b: direct plugin, ${DURATION} s paced at $rate msg/s"
    run_direct "$b" direct_paced "$rate" || true

    for pid in "$a_pid" "$b_pid" "$app_pid" "$BROKER_PID"; do
        kill -0 "$pid" 2>/dev/null || die "$b: process $pid died under load (see --keep logs)"
    done
    # What the sidecars logged (warn and above) belongs with the numbers;
    # the one line about name resolution (no resolver plugin in the folder
    # given, and none needed here) does not.
    for m in a b; do
        if grep -qv 'default name resolution' "$dir/daprd-$m.log"; then
            say "$b: daprd ${m^^} logged:"
            grep -v 'default name resolution' "$dir/daprd-$m.log" | tail -n 20 >&2
        fi
    done

    # The broker's own tool last, with the sidecars idle.
    TOOL_NOTE=
    "tool_$b"
    [[ -n $TOOL_NOTE ]] && TOOL_NOTES+=("$TOOL_NOTE")
    MEASURED+=("$b")
    stop_all
}

echo "pubsub-bench: build $BUILD, brokers ${WANT[*]}, wrk ${THREADS}t/${CONNS}c, ${DURATION}s runs" >&2
# Other work on the machine skews everything here (six busy processes on
# two cores already): the load average goes into the report.
loadavg() { awk '{ print $1 }' /proc/loadavg; }
LOAD_START=$(loadavg)
for b in "${WANT[@]}"; do
    bench_broker "$b"
done
[[ ${#MEASURED[@]} -gt 0 ]] || die "no broker measured: ${SKIPPED[*]}"
LOAD_END=$(loadavg)

# --- the report -------------------------------------------------------------------------
CPU_MODEL=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
REV=$(git -C "$TOP" rev-parse --short HEAD 2>/dev/null || echo unknown)
CFLAGS_USED=$(sed -n 's/^CFLAGS = //p' "$BUILD/Makefile" 2>/dev/null || true)
NOW=$(date -u '+%Y-%m-%d %H:%M UTC')

f0() { printf '%.0f' "${1:-0}"; }
# The lost column: the count, marked when it need not be the plugin's or
# the sidecars' loss (notes() explains the marks).
lost_mark() {   # lost_mark BROKER RUN
    local b=$1 r=$2
    if [[ ${R[$b:$r:lost]:-0} != 0 && ${R[$b:$r:resets]:-0} -gt 0 ]]; then
        echo trunc
    elif [[ ${R[$b:$r:lost]:-0} != 0 && ${R[$b:$r:drain]:-} == cap ]]; then
        echo cap
    fi
}
lost_cell() {   # lost_cell BROKER RUN
    case $(lost_mark "$1" "$2") in
        trunc) printf '%s ²' "${R[$1:$2:lost]}" ;;
        cap) printf '%s ¹' "${R[$1:$2:lost]}" ;;
        *) printf '%s' "${R[$1:$2:lost]}" ;;
    esac
}
notes() {
    local b r cap=0 trunc=0
    for b in "${MEASURED[@]}"; do
        for r in side_sat direct side_paced direct_paced; do
            case $(lost_mark "$b" "$r") in
                trunc) trunc=1 ;;
                cap) cap=1 ;;
            esac
        done
    done
    if [[ $cap == 1 ]]; then
        echo
        echo "¹ Not (yet) delivered when the drain gave up after ${DRAIN_MAX} s while deliveries were still coming: a backlog, not a proven loss."
    fi
    if [[ $trunc == 1 ]]; then
        echo
        echo "² Deleted by the broker before the consumer read them: librdkafka's mock cluster keeps at most 5 MiB per partition (hard-coded) and drops the oldest message sets beyond that; the consumer logged \"Offset out of range\" resets.  A publisher that outruns the consumer by more than that loses messages on this broker whatever the client; not a plugin or sidecar loss."
    fi
    return 0
}
row_sat() {     # row_sat BROKER RUN LABEL
    local b=$1 r=$2
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$b" "$3" \
        "$(f0 "${R[$b:$r:published_per_s]}")" "$(f0 "${R[$b:$r:delivered_per_s]}")" \
        "$(ratio "${R[$b:$r:published_per_s]}" "${R[$b:direct:published_per_s]}")" \
        "$(ratio "${R[$b:$r:delivered_per_s]}" "${R[$b:direct:delivered_per_s]}")" \
        "$(ms "${R[$b:$r:pub_p50_us]}")" "$(ms "${R[$b:$r:pub_p99_us]}")" \
        "$(ms "${R[$b:$r:p50_us]}")" "$(ms "${R[$b:$r:p99_us]}")" \
        "${R[$b:$r:errors]}" "$(lost_cell "$b" "$r")" "${R[$b:$r:duplicates]}"
}
row_paced() {   # row_paced BROKER RUN LABEL
    local b=$1 r=$2
    [[ -n ${R[$b:$r:ok]:-} ]] || { printf '| %s | %s | – | – | – | – | – | – | – | – | – | – |\n' "$b" "$3"; return; }
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$b" "$3" \
        "$(f0 "${R[$b:$r:published_per_s]}")" "$(f0 "${R[$b:$r:delivered_per_s]}")" \
        "$(ms "${R[$b:$r:p50_us]}")" "$(ms "${R[$b:$r:p90_us]}")" "$(ms "${R[$b:$r:p99_us]}")" \
        "$(ratio "${R[$b:$r:p50_us]}" "${R[$b:direct_paced:p50_us]:-0}")" \
        "$(ratio "${R[$b:$r:p99_us]}" "${R[$b:direct_paced:p99_us]:-0}")" \
        "${R[$b:$r:errors]}" "$(lost_cell "$b" "$r")" "${R[$b:$r:duplicates]}"
}

# shellcheck disable=SC2016  # the backquotes are Markdown, not expansions
REPORT=$(
    echo "## $NOW — pub/sub, publish → delivery"
    echo
    echo "Machine: $(nproc) CPUs, ${CPU_MODEL:-unknown CPU}, Linux $(uname -r); load average (1 min) $LOAD_START at the start, $LOAD_END at the end."
    echo "Build: \`$BUILD\` (source rev $REV${CFLAGS_USED:+, CFLAGS \`$CFLAGS_USED\`})."
    for b in "${MEASURED[@]}"; do echo "Broker $b: ${R[$b:broker]}."; done
    [[ ${#SKIPPED[@]} -gt 0 ]] && echo "Not measured: ${SKIPPED[*]}."
    echo "Sidecars: wrk -t$THREADS -c$CONNS -d${DURATION}s \`pubsub-publish.lua\` → daprd A \`/v1.0/publish/pubsub/bench\` → broker → daprd B → \`pubsub-app.c\` (after a ${WARMUP} s warm-up); direct: \`pubsub-direct.c\`, $CONNS threads with one publish in flight each, subscription max_in_flight 32 (as daprd), same plugin .so and broker, same minute."
    echo
    echo "Saturated: publishers as fast as they go.  When published/s exceeds delivered/s a backlog builds and the latency columns measure the queue, not the path."
    echo
    echo "| broker | path | published/s | delivered/s | published ÷ direct | delivered ÷ direct | publish p50 ms | publish p99 ms | e2e p50 ms | e2e p99 ms | errors | lost | dups |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for b in "${MEASURED[@]}"; do
        row_sat "$b" side_sat 'daprd A → broker → daprd B → app'
        row_sat "$b" direct 'plugin .so direct (reference)'
    done
    echo
    echo "Paced: the same paths at a fixed offered rate (half the sidecars' saturated delivered/s unless --rate), so that nothing queues; e2e is publish → delivery."
    echo
    echo "| broker | path | published/s | delivered/s | e2e p50 ms | e2e p90 ms | e2e p99 ms | p50 ÷ direct | p99 ÷ direct | errors | lost | dups |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for b in "${MEASURED[@]}"; do
        row_paced "$b" side_paced "sidecars at ${R[$b:rate]} msg/s"
        row_paced "$b" direct_paced "plugin direct at ${R[$b:rate]} msg/s"
    done
    notes
    if [[ ${#TOOL_ROWS[@]} -gt 0 ]]; then
        echo
        echo "The broker's own tool on the same broker, right after (ratio: tool ÷ the direct plugin client's saturated published/s)."
        echo
        echo "| broker | tool | msg/s | ÷ direct plugin | p50 ms | p99 ms |"
        echo "|---|---|---:|---:|---:|---:|"
        printf '%s\n' "${TOOL_ROWS[@]}"
    fi
    for n in "${TOOL_NOTES[@]}"; do echo; echo "$n."; done
    echo
    echo "| saturated run | daprd A VmRSS idle → peak | daprd B VmRSS idle → peak | CPU % of one core: A | B | app | broker |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for b in "${MEASURED[@]}"; do
        local_a=${R[$b:a_pid]}; local_b=${R[$b:b_pid]}; local_app=${R[$b:app_pid]}; local_br=${R[$b:broker_pid]}
        printf '| %s | %s → %s MiB | %s → %s MiB | %s | %s | %s | %s |\n' "$b" \
            "$(mib "${R[$b:rss_idle:a]}")" "$(mib "${R[$b:side_sat:peak:$local_a]}")" \
            "$(mib "${R[$b:rss_idle:b]}")" "$(mib "${R[$b:side_sat:peak:$local_b]}")" \
            "${R[$b:side_sat:cpu:$local_a]}" "${R[$b:side_sat:cpu:$local_b]}" \
            "${R[$b:side_sat:cpu:$local_app]}" "${R[$b:side_sat:cpu:$local_br]}"
    done
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
