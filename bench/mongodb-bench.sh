#!/usr/bin/env bash
# mongodb-bench.sh: daprd's state API on state.mongodb next to a direct
# libmongoc loop (bench/mongodb-direct.c) doing the same MongoDB operations
# against the same server in the same run, so the daprd numbers read as
# ratios to what a plain client gets from that server.
#
# The server is FerretDB v1 (built or reused by t/mongodb/build-ferretdb.sh
# into BUILD_DIR/t/mongodb-cache/) on a throwaway PostgreSQL cluster (fsync
# off), both on free loopback ports.  Then:
#   - wrk GET  /v1.0/state/mongo/k1        vs  direct "get": find {_id} limit 1
#   - wrk POST /v1.0/state/mongo (save k1) vs  direct "save-serialized": the
#     plugin's save on FerretDB (one process-wide lock, find, replaceOne
#     upsert), and direct "save": replaceOne upsert alone, concurrently
#     (the plugin's save on a real MongoDB, for reference)
# wrk uses -t2 -cN; the direct loop uses N threads on a pool of N clients.
# It prints a Markdown table and appends it, dated, to bench/RESULTS.md.
#
# Usage: bench/mongodb-bench.sh [BUILD_DIR] [options]
#   BUILD_DIR            build tree with core/daprd, bench/mongodb-direct
#                        and plugins/state-mongodb/.libs (default: build)
#   -d, --duration SECS  length of each run (default 10)
#   --quick              3 s runs
#   -c, --connections N  wrk connections and direct threads (default 16)
#   --no-record          print the table but do not touch RESULTS.md
#   -h, --help           this text

set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(dirname "$BENCH_DIR")
BUILD=build
DURATION=10
THREADS=2
CONNS=16
RECORD=1

die() { echo "mongodb-bench: $*" >&2; exit 1; }
usage() { sed -n '/^# Usage:/,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

while [[ $# -gt 0 ]]; do
    case $1 in
        -d|--duration) DURATION=${2:?}; shift 2 ;;
        --quick) DURATION=3; shift ;;
        -c|--connections) CONNS=${2:?}; shift 2 ;;
        --no-record) RECORD=0; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) usage >&2; die "unknown option $1" ;;
        *) BUILD=$1; shift ;;
    esac
done
[[ $DURATION =~ ^[0-9]+$ && $DURATION -gt 0 ]] || die "bad duration '$DURATION'"
[[ $CONNS =~ ^[0-9]+$ && $CONNS -ge $THREADS ]] || die "bad connection count '$CONNS'"
if [[ ! -d $BUILD && $BUILD != /* && -d $TOP/$BUILD ]]; then BUILD=$TOP/$BUILD; fi
[[ -d $BUILD ]] || die "no build dir '$BUILD'"
BUILD=$(cd "$BUILD" && pwd)
DAPRD=${DAPRD:-$BUILD/core/daprd}
PLUGINS=$BUILD/plugins/state-mongodb/.libs
DIRECT=$BUILD/bench/mongodb-direct
[[ -x $DAPRD ]] || die "no daprd at $DAPRD (build first)"
[[ -f $PLUGINS/state-mongodb.so ]] || die "no state-mongodb plugin in $PLUGINS (configure found no libmongoc?)"
[[ -x $DIRECT ]] || die "no $DIRECT (make builds it with the plugin)"
PGBIN=${PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
[[ -x $PGBIN/pg_ctl ]] || die "PostgreSQL not found (apt-get install -y postgresql)"
for tool in wrk python3 curl; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y wrk python3 curl)"
done
FERRETDB_BIN=$(bash "$TOP/t/mongodb/build-ferretdb.sh" "$BUILD/t/mongodb-cache") ||
    die "no FerretDB (see the lines above)"
unset DAPR_PLUGINS_PATH

TMP=$(mktemp -d "${TMPDIR:-/tmp}/mongo-bench.XXXXXX")
chmod 755 "$TMP"
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
DAPRD_PID=
FERRET_PID=
PG_UP=0
cleanup() {
    if [[ -n $DAPRD_PID ]]; then kill "$DAPRD_PID" 2>/dev/null || true; wait "$DAPRD_PID" 2>/dev/null || true; fi
    if [[ -n $FERRET_PID ]]; then kill "$FERRET_PID" 2>/dev/null || true; wait "$FERRET_PID" 2>/dev/null || true; fi
    [[ $PG_UP == 1 ]] && as_pg "$PGBIN/pg_ctl" -D "$TMP/pg/data" -m immediate stop >/dev/null 2>&1
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# --- PostgreSQL and FerretDB --------------------------------------------------
mkdir "$TMP/pg"
[[ $(id -u) == 0 ]] && chown postgres "$TMP/pg"
as_pg "$PGBIN/initdb" -D "$TMP/pg/data" -U postgres -A trust --no-sync >/dev/null
PG_PORT=$(free_port)
as_pg "$PGBIN/pg_ctl" -D "$TMP/pg/data" -l "$TMP/pg/log" -w -t 30 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $TMP/pg -c fsync=off -c max_connections=200" \
    start >/dev/null || { cat "$TMP/pg/log" >&2; die "pg_ctl start failed"; }
PG_UP=1
M_PORT=$(free_port)
"$FERRETDB_BIN" --handler=postgresql "--postgresql-url=postgres://postgres@127.0.0.1:$PG_PORT/postgres" \
    --listen-addr="127.0.0.1:$M_PORT" --debug-addr=- --state-dir="$TMP" --telemetry=disable \
    --log-level=error >"$TMP/ferretdb.log" 2>&1 &
FERRET_PID=$!
MURI="mongodb://127.0.0.1:$M_PORT/?serverSelectionTimeoutMS=3000"
for i in $(seq 200); do
    "$DIRECT" "mongodb://127.0.0.1:$M_PORT/?serverSelectionTimeoutMS=200&connectTimeoutMS=200" \
        bench state probe get 0.01 1 >/dev/null 2>&1 && break
    kill -0 "$FERRET_PID" 2>/dev/null || { cat "$TMP/ferretdb.log" >&2; die "FerretDB exited"; }
    sleep 0.05
done

# --- daprd -----------------------------------------------------------------------
mkdir "$TMP/resources"
cat >"$TMP/resources/mongo.yaml" <<EOF
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: mongo
spec:
  type: state.mongodb
  version: v1
  metadata:
  - name: host
    value: "127.0.0.1:$M_PORT"
  - name: databaseName
    value: bench
  - name: collectionName
    value: state
EOF
DAPR_PORT=$(free_port)
"$DAPRD" --app-id bench --dapr-http-port "$DAPR_PORT" --dapr-listen-addresses 127.0.0.1 \
    --resources-path "$TMP/resources" --plugins-dir "$PLUGINS" --log-level warn \
    >"$TMP/daprd.log" 2>&1 &
DAPRD_PID=$!
BASE=http://127.0.0.1:$DAPR_PORT
code=
for i in $(seq 600); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$BASE/v1.0/healthz" || true)
    [[ $code == 204 ]] && break
    kill -0 "$DAPRD_PID" 2>/dev/null || { cat "$TMP/daprd.log" >&2; die "daprd exited"; }
    sleep 0.05
done
[[ $code == 204 ]] || { cat "$TMP/daprd.log" >&2; die "daprd not ready"; }
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
    -d '[{"key":"k1","value":{"n":1}}]' "$BASE/v1.0/state/mongo")
[[ $code == 204 ]] || { cat "$TMP/daprd.log" >&2; die "saving k1 answered $code"; }

declare -A RPS P50 P99 ERRS

run_wrk() {   # run_wrk NAME URL [LUA]
    local name=$1 url=$2 script=() out=$TMP/wrk-$1.txt
    [[ -n ${3:-} ]] && script=(-s "$3")
    wrk -t"$THREADS" -c"$CONNS" -d1s "${script[@]}" "$url" >/dev/null
    wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency "${script[@]}" "$url" >"$out"
    local conv='function ms(v) {
            if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
            if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
            if (v ~ /s$/)  return substr(v, 1, length(v) - 1) * 1000
            return v + 0 }'
    RPS[$name]=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$out")
    P50[$name]=$(awk "$conv"' $1 == "50%" { printf "%.3f", ms($2) }' "$out")
    P99[$name]=$(awk "$conv"' $1 == "99%" { printf "%.3f", ms($2) }' "$out")
    ERRS[$name]=$(awk '/Non-2xx or 3xx responses:/ { n += $NF }
        /Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 } END { print n + 0 }' "$out")
    [[ -n ${RPS[$name]} ]] || { cat "$out" >&2; die "could not parse wrk output for $name"; }
}

run_direct() {   # run_direct NAME OP: the same key as daprd's (app id "bench")
    local name=$1 line
    "$DIRECT" "$MURI" bench state 'bench||k1' "$2" 1 "$CONNS" >/dev/null
    line=$("$DIRECT" "$MURI" bench state 'bench||k1' "$2" "$DURATION" "$CONNS") || die "mongodb-direct $2 failed"
    read -r _ _ RPS[$name] P50[$name] P99[$name] ERRS[$name] <<<"$line"
}

cat >"$TMP/save.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '[{"key":"k1","value":{"n":1}}]'
EOF
echo "mongodb-bench: get (daprd, direct)" >&2
run_wrk get "$BASE/v1.0/state/mongo/k1"
run_direct dget get
echo "mongodb-bench: save (daprd, direct serialized, direct plain)" >&2
run_wrk save "$BASE/v1.0/state/mongo" "$TMP/save.lua"
run_direct dsave save-serialized
run_direct dsave-plain save
kill -0 "$DAPRD_PID" 2>/dev/null || die "daprd died under load"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
row() {   # row LABEL NAME REFERENCE-NAME
    printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "${RPS[$2]}" "$(ratio "${RPS[$2]}" "${RPS[$3]}")" \
        "${P50[$2]}" "${P99[$2]}" "${ERRS[$2]}"
}
CPU=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
REV=$(git -C "$TOP" rev-parse --short HEAD 2>/dev/null || echo unknown)
FV=$("$FERRETDB_BIN" --version | sed -n 's/^version: //p')
REPORT=$(
    echo "## $(date -u '+%Y-%m-%d %H:%M UTC') — state.mongodb"
    echo
    echo "Machine: $(nproc) CPUs, ${CPU:-unknown CPU}, Linux $(uname -r); FerretDB $FV on $("$PGBIN/postgres" --version) (fsync off), libmongoc $(pkg-config --modversion libmongoc-1.0 2>/dev/null || echo '?')."
    echo "Build: \`$BUILD\` (source rev $REV).  Load: wrk -t$THREADS -c$CONNS, and mongodb-direct with $CONNS threads, ${DURATION}s each after 1 s warm-up; one key (\`bench||k1\`)."
    echo
    echo "| run | ops/s | ratio | p50 ms | p99 ms | errors |"
    echo "|---|---:|---:|---:|---:|---:|"
    row "direct get: find {_id} limit 1" dget dget
    row "daprd GET /v1.0/state/mongo/k1 (÷ direct get)" get dget
    row "direct save as the plugin does on FerretDB (lock, find, replaceOne upsert)" dsave dsave
    row "daprd POST /v1.0/state/mongo (÷ direct serialized save)" save dsave
    row "direct replaceOne upsert, unserialized (a real MongoDB's path; ÷ serialized)" dsave-plain dsave
)
echo
echo "$REPORT"
if [[ $RECORD == 1 ]]; then
    printf '\n%s\n' "$REPORT" >>"$BENCH_DIR/RESULTS.md"
    echo "mongodb-bench: appended to $BENCH_DIR/RESULTS.md" >&2
fi
