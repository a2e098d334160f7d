#!/usr/bin/env bash
# postgresql-bench.sh: daprd's state API on state.postgresql (v1 and v2)
# next to pgbench running the equivalent SQL on the same server in the
# same run, so the daprd numbers read as ratios to PostgreSQL's own floor.
#
# It starts a throwaway PostgreSQL cluster (fsync off, on a free port),
# daprd with one v1 and one v2 component, then for each layout:
#   - wrk GET  /v1.0/state/{store}/k1       vs  pgbench "SELECT by key"
#   - wrk POST /v1.0/state/{store} (save k1) vs  pgbench "INSERT ... ON
#     CONFLICT (key) DO UPDATE" of the same row
# pgbench uses the extended protocol with unnamed statements (-M extended),
# as the plugin does, and as many client connections as wrk.  It prints a
# Markdown table and appends it, dated, to bench/RESULTS.md.
#
# Usage: bench/postgresql-bench.sh [BUILD_DIR] [options]
#   BUILD_DIR            build tree with core/daprd and
#                        plugins/state-postgresql/.libs (default: build)
#   -d, --duration SECS  length of each run (default 10)
#   --quick              3 s runs
#   -c, --connections N  wrk connections and pgbench clients (default 16)
#   --max-conns N        the plugin's maxConns (default: its own default)
#   --no-record          print the table but do not touch RESULTS.md
#   -h, --help           this text

set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(dirname "$BENCH_DIR")
BUILD=build
DURATION=10
THREADS=2
CONNS=16
MAXCONNS=
RECORD=1

die() { echo "postgresql-bench: $*" >&2; exit 1; }
usage() { sed -n '/^# Usage:/,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

while [[ $# -gt 0 ]]; do
    case $1 in
        -d|--duration) DURATION=${2:?}; shift 2 ;;
        --quick) DURATION=3; shift ;;
        -c|--connections) CONNS=${2:?}; shift 2 ;;
        --max-conns) MAXCONNS=${2:?}; shift 2 ;;
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
PLUGINS=$BUILD/plugins/state-postgresql/.libs
[[ -x $DAPRD ]] || die "no daprd at $DAPRD (build first)"
[[ -f $PLUGINS/state-postgresql.so ]] || die "no state-postgresql plugin in $PLUGINS (build first)"
PGBIN=${PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
[[ -x $PGBIN/pg_ctl && -x $PGBIN/pgbench ]] || die "PostgreSQL not found (apt-get install -y postgresql)"
for tool in wrk python3 curl; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y wrk python3 curl)"
done
unset DAPR_PLUGINS_PATH

TMP=$(mktemp -d "${TMPDIR:-/tmp}/pg-bench.XXXXXX")
chmod 755 "$TMP"
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
DAPRD_PID=
PG_UP=0
cleanup() {
    if [[ -n $DAPRD_PID ]]; then kill "$DAPRD_PID" 2>/dev/null || true; wait "$DAPRD_PID" 2>/dev/null || true; fi
    [[ $PG_UP == 1 ]] && as_pg "$PGBIN/pg_ctl" -D "$TMP/pg/data" -m immediate stop >/dev/null 2>&1
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# --- PostgreSQL ----------------------------------------------------------------
mkdir "$TMP/pg"
[[ $(id -u) == 0 ]] && chown postgres "$TMP/pg"
as_pg "$PGBIN/initdb" -D "$TMP/pg/data" -U postgres -A trust --no-sync >/dev/null
PG_PORT=$(free_port)
as_pg "$PGBIN/pg_ctl" -D "$TMP/pg/data" -l "$TMP/pg/log" -w -t 30 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $TMP/pg -c fsync=off -c max_connections=200" \
    start >/dev/null || { cat "$TMP/pg/log" >&2; die "pg_ctl start failed"; }
PG_UP=1
CONN="host=127.0.0.1 port=$PG_PORT user=postgres dbname=postgres"

# --- daprd -----------------------------------------------------------------------
mkdir "$TMP/resources"
for v in v1 v2; do
    cat >"$TMP/resources/pg$v.yaml" <<EOF
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pg$v
spec:
  type: state.postgresql
  version: $v
  metadata:
  - name: connectionString
    value: "$CONN"
  - name: tablePrefix
    value: "bench_"
EOF
    [[ -n $MAXCONNS ]] && printf '  - name: maxConns\n    value: "%s"\n' "$MAXCONNS" >>"$TMP/resources/pg$v.yaml"
done
DAPR_PORT=$(free_port)
"$DAPRD" --app-id bench --dapr-http-port "$DAPR_PORT" --dapr-listen-addresses 127.0.0.1 \
    --resources-path "$TMP/resources" --plugins-dir "$PLUGINS" --log-level warn \
    >"$TMP/daprd.log" 2>&1 &
DAPRD_PID=$!
BASE=http://127.0.0.1:$DAPR_PORT
for i in $(seq 600); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$BASE/v1.0/healthz" || true)
    [[ $code == 204 ]] && break
    kill -0 "$DAPRD_PID" 2>/dev/null || { cat "$TMP/daprd.log" >&2; die "daprd exited"; }
    sleep 0.05
done
[[ $code == 204 ]] || { cat "$TMP/daprd.log" >&2; die "daprd not ready"; }

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

# run_pgbench NAME SQL-FILE: tps and per-transaction latency percentiles
# (from pgbench's per-transaction log, microseconds in column 3).
run_pgbench() {
    local name=$1 sql=$2 dir=$TMP/pgbench-$1
    mkdir -p "$dir"
    local args=(-n -h 127.0.0.1 -p "$PG_PORT" -U postgres -M extended -c "$CONNS" -j "$THREADS" -f "$sql")
    "$PGBIN/pgbench" "${args[@]}" -T 1 postgres >/dev/null 2>&1
    (cd "$dir" && "$PGBIN/pgbench" "${args[@]}" -T "$DURATION" -l postgres >"$dir/out.txt" 2>&1) ||
        { cat "$dir/out.txt" >&2; die "pgbench $name failed"; }
    RPS[$name]=$(awk '/^tps = / { printf "%.0f", $3 }' "$dir/out.txt")
    ERRS[$name]=$(awk '/failed transactions:/ { print $5 }' "$dir/out.txt")
    ERRS[$name]=${ERRS[$name]:-0}
    read -r P50[$name] P99[$name] < <(cat "$dir"/pgbench_log.* | awk '{ print $3 }' | sort -n | awk '
        { v[NR] = $1 } END { i50 = int(NR * 0.50); i99 = int(NR * 0.99); if (i50 < 1) i50 = 1; if (i99 < 1) i99 = 1
            printf "%.3f %.3f\n", v[i50] / 1000, v[i99] / 1000 }')
}

cat >"$TMP/save.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '[{"key":"k1","value":{"n":1}}]'
EOF
ROWS=()
for v in v1 v2; do
    store=pg$v
    code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
        -d '[{"key":"k1","value":{"n":1}}]' "$BASE/v1.0/state/$store")
    [[ $code == 204 ]] || { cat "$TMP/daprd.log" >&2; die "saving k1 into $store answered $code"; }
    # The SQL the plugin runs for the same get and save (see state_postgresql.c).
    if [[ $v == v1 ]]; then
        echo "SELECT value::text, isbinary, xmin::text FROM state WHERE key = 'bench||k1' AND (expiredate IS NULL OR expiredate > CURRENT_TIMESTAMP);" >"$TMP/get-$v.sql"
        echo "INSERT INTO state AS t (key, value, isbinary, expiredate) VALUES ('bench||k1', '{\"n\":1}'::jsonb, false, NULL) ON CONFLICT (key) DO UPDATE SET value = excluded.value, isbinary = excluded.isbinary, updatedate = CURRENT_TIMESTAMP, expiredate = excluded.expiredate;" >"$TMP/save-$v.sql"
    else
        echo "SELECT value, etag::text FROM bench_state WHERE key = 'bench||k1' AND (expires_at IS NULL OR expires_at > now());" >"$TMP/get-$v.sql"
        echo "INSERT INTO bench_state AS t (key, value, etag, expires_at) VALUES ('bench||k1', '\\x7b226e223a317d'::bytea, gen_random_uuid(), NULL) ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = now(), etag = excluded.etag, expires_at = excluded.expires_at;" >"$TMP/save-$v.sql"
    fi
    echo "postgresql-bench: $v get (daprd, pgbench)" >&2
    run_wrk "get-$v" "$BASE/v1.0/state/$store/k1"
    run_pgbench "pgget-$v" "$TMP/get-$v.sql"
    echo "postgresql-bench: $v save (daprd, pgbench)" >&2
    run_wrk "save-$v" "$BASE/v1.0/state/$store" "$TMP/save.lua"
    run_pgbench "pgsave-$v" "$TMP/save-$v.sql"
    kill -0 "$DAPRD_PID" 2>/dev/null || die "daprd died under load"
    ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
    for op in get save; do
        d=$op-$v p=pg$op-$v
        ROWS+=("$(printf '| %s %s | %s | %s | %s | %s | %s | %s | %s | %s |' "$v" "$op" \
            "${RPS[$d]}" "${RPS[$p]}" "$(ratio "${RPS[$d]}" "${RPS[$p]}")" \
            "${P50[$d]}" "${P50[$p]}" "${P99[$d]}" "${P99[$p]}" "$((ERRS[$d] + ERRS[$p]))")")
    done
done

CPU=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
REV=$(git -C "$TOP" rev-parse --short HEAD 2>/dev/null || echo unknown)
REPORT=$(
    echo "## $(date -u '+%Y-%m-%d %H:%M UTC') — state.postgresql"
    echo
    echo "Machine: $(nproc) CPUs, ${CPU:-unknown CPU}, Linux $(uname -r); $("$PGBIN/postgres" --version), fsync off."
    echo "Build: \`$BUILD\` (source rev $REV).  Load: wrk -t$THREADS -c$CONNS and pgbench -M extended -c$CONNS -j$THREADS, ${DURATION}s each after 1 s warm-up; one key (\`bench||k1\`)."
    echo
    echo "| layout op | daprd req/s | pgbench tx/s | daprd ÷ pgbench | daprd p50 ms | pgbench p50 ms | daprd p99 ms | pgbench p99 ms | errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    printf '%s\n' "${ROWS[@]}"
)
echo
echo "$REPORT"
if [[ $RECORD == 1 ]]; then
    printf '\n%s\n' "$REPORT" >>"$BENCH_DIR/RESULTS.md"
    echo "postgresql-bench: appended to $BENCH_DIR/RESULTS.md" >&2
fi
