#!/bin/bash
# t/postgresql/run.sh - state.postgresql against a real, throwaway
# PostgreSQL cluster:
#   1. the conformance kit against v1 and v2 (must pass),
#   2. the query API of v1 through daprd (POST /v1.0-alpha1/state/{store}/query),
#   3. SQL injection through keys, filter paths, values, sort and token:
#      inert (tables intact, values literal),
#   4. interop: rows written through daprd read with psql against Dapr's
#      documented columns, rows inserted with psql in Dapr's layout read
#      through daprd, expired rows swept by cleanupInterval,
#   5. fault: the server stopped mid-run (pg_ctl stop -m fast): operations
#      fail cleanly and quickly; started again: they work, and every
#      acknowledged write is there,
#   6. secrets: the password never shows in daprd's log, also when init
#      fails; the init error names the host and the cause.
#
# `make check` runs it from the top build folder.  By hand:
#   cd build && srcdir=.. ../t/postgresql/run.sh
# Needs PostgreSQL's server binaries (Debian: apt-get install -y postgresql)
# and psql, curl, python3; exit 77 when the server binaries are missing.
# PostgreSQL refuses to run as root: as root the cluster runs as user
# "postgres" through runuser.

set -u
builddir=$PWD
PLUGIN_DIR=$builddir/plugins/state-postgresql/.libs
PLUGIN=$PLUGIN_DIR/state-postgresql.so
PLUGIN_V2FIRST=$builddir/t/postgresql/.libs/pg-v2-first.so
KIT=$builddir/plugin-sdk/conformance/dapr-plugin-conformance
DAPRD=${DAPRD:-$builddir/core/daprd}

skip() { echo "postgresql: $*: skipping"; exit 77; }
die() { echo "FAIL: $*" >&2; exit 1; }

[ -f "$PLUGIN" ] || skip "the plugin is not built (configure did not find libpq)"
PGBIN=${PG_BINDIR:-}
if [ -z "$PGBIN" ]; then
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r) \
             "$(pg_config --bindir 2>/dev/null)"; do
        [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ] && { PGBIN=$d; break; }
    done
fi
[ -n "$PGBIN" ] && [ -x "$PGBIN/pg_ctl" ] ||
    skip "PostgreSQL server binaries not found (apt-get install -y postgresql)"
PSQL_BIN=$PGBIN/psql
[ -x "$PSQL_BIN" ] || PSQL_BIN=$(command -v psql) || skip "psql not found"
for tool in curl python3; do
    command -v $tool >/dev/null || skip "$tool not found"
done
[ -x "$KIT" ] || die "conformance kit not built: $KIT"
[ -x "$DAPRD" ] || die "daprd not built: $DAPRD"
[ -f "$PLUGIN_V2FIRST" ] || die "test plugin not built: $PLUGIN_V2FIRST (make check builds it)"

# As root, run the server as postgres; otherwise as ourselves.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/pgtest.XXXXXX") || exit 99
chmod 755 "$TMP"
PGDIR=$TMP/pg
mkdir "$PGDIR"
[ "$(id -u)" = 0 ] && chown postgres "$PGDIR"
DAPRD_PID=
PG_UP=0

cleanup() {
    [ -n "$DAPRD_PID" ] && kill "$DAPRD_PID" 2>/dev/null && wait "$DAPRD_PID" 2>/dev/null
    [ "$PG_UP" = 1 ] && as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -m immediate stop >/dev/null 2>&1
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# --- the cluster: trust on the socket (psql), a password over TCP --------
PASSWORD='s3cr3t-Pw-9f1c'
echo "$PASSWORD" >"$PGDIR/pwfile"
[ "$(id -u)" = 0 ] && chown postgres "$PGDIR/pwfile"
as_pg "$PGBIN/initdb" -D "$PGDIR/data" -U postgres --auth-local=trust \
    --auth-host=scram-sha-256 --pwfile="$PGDIR/pwfile" --no-sync >"$TMP/initdb.log" 2>&1 ||
    { cat "$TMP/initdb.log"; die "initdb failed"; }
PORT=$(free_port)
pg_start() {
    as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/log" -w -t 30 \
        -o "-c listen_addresses=127.0.0.1 -p $PORT -k $PGDIR -c fsync=off" start >/dev/null ||
        { cat "$PGDIR/log"; die "pg_ctl start failed"; }
    PG_UP=1
}
pg_stop() {
    as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -m fast -w stop >/dev/null || die "pg_ctl stop failed"
    PG_UP=0
}
pg_start
# psql over the socket folder (trust): -At prints bare values.
psql_q() { "$PSQL_BIN" -X -q -At -h "$PGDIR" -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }
psql_q -c 'select 1' >/dev/null || die "psql cannot connect"
CONN="host=127.0.0.1 port=$PORT user=postgres password=$PASSWORD dbname=postgres"
CONN_URL="postgres://postgres:$PASSWORD@127.0.0.1:$PORT/postgres?pool_max_conns=4"

# --- 1. conformance kit, v1 and v2 ---------------------------------------
kit() {   # kit NAME SO [options]
    name=$1 so=$2
    shift 2
    timeout -s KILL 120 "$KIT" --type state.postgresql "$@" "$so" >"$TMP/kit-$name.log" 2>&1
    rc=$?
    summary=$(tail -n 1 "$TMP/kit-$name.log")
    echo "conformance $name: $summary"
    if [ $rc != 0 ] || ! echo "$summary" | grep -q ' 0 failed'; then
        grep -v '^ok' "$TMP/kit-$name.log" >&2
        die "conformance kit failed for $name"
    fi
    ! grep -q "$PASSWORD" "$TMP/kit-$name.log" || die "the password shows in the kit's log ($name)"
}
kit v1 "$PLUGIN" --metadata connectionString="$CONN" --metadata tableName=kit_v1
kit v2 "$PLUGIN_V2FIRST" --metadata connectionString="$CONN_URL" --metadata tablePrefix=kit_

# --- daprd with v1, v2 and a fast-sweeping v1 store -----------------------
RES=$TMP/resources
mkdir "$RES"
component() {   # component NAME VERSION [name value]...
    name=$1 version=$2
    shift 2
    {
        echo "apiVersion: dapr.io/v1alpha1"
        echo "kind: Component"
        echo "metadata:"
        echo "  name: $name"
        echo "spec:"
        echo "  type: state.postgresql"
        echo "  version: $version"
        echo "  metadata:"
        echo "  - name: connectionString"
        echo "    value: \"$CONN\""
        while [ $# -ge 2 ]; do
            echo "  - name: $1"
            echo "    value: \"$2\""
            shift 2
        done
    } >"$RES/$name.yaml"
}
component pg v1 timeout 3s
component pg2 v2 tablePrefix pg2 timeout 3s
component pgclean v1 tableName cleanstate metadataTableName clean_meta cleanupInterval 1s
# A component whose init must fail: wrong password.  Its error must name
# the host and the cause, and never the password.
cat >"$RES/pgbad.yaml" <<EOF
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pgbad
spec:
  type: state.postgresql
  ignoreErrors: true
  metadata:
  - name: connectionString
    value: "host=127.0.0.1 port=$PORT user=postgres password=wrong-$PASSWORD dbname=postgres"
  - name: timeout
    value: "3s"
EOF

HTTP_PORT=$(free_port)
"$DAPRD" --app-id myapp --dapr-http-port "$HTTP_PORT" --dapr-listen-addresses 127.0.0.1 \
    --resources-path "$RES" --plugins-dir "$PLUGIN_DIR" --log-level debug \
    >"$TMP/daprd.log" 2>&1 &
DAPRD_PID=$!
BASE=http://127.0.0.1:$HTTP_PORT
for i in $(seq 300); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$BASE/v1.0/healthz/outbound" || true)
    [ "$code" = 204 ] && break
    kill -0 "$DAPRD_PID" 2>/dev/null || { cat "$TMP/daprd.log"; die "daprd exited"; }
    sleep 0.05
done
[ "$code" = 204 ] || { cat "$TMP/daprd.log"; die "daprd not ready"; }
# The three good stores must be loaded (pgbad fails).
loaded=$(curl -s "$BASE/v1.0/metadata" | python3 -c '
import json, sys
print(" ".join(sorted(c["name"] for c in json.load(sys.stdin).get("components", []))))')
for n in pg pg2 pgclean; do
    case " $loaded " in *" $n "*) ;; *) cat "$TMP/daprd.log"; die "component $n not loaded ($loaded)";; esac
done

# http METHOD PATH [BODY]: sets CODE and BODY_OUT (and HDRS).
http() {
    if [ $# -ge 3 ]; then
        CODE=$(curl -s -o "$TMP/body" -D "$TMP/hdrs" -w '%{http_code}' --max-time 30 -X "$1" \
            -H 'Content-Type: application/json' --data-binary "$3" "$BASE$2")
    else
        CODE=$(curl -s -o "$TMP/body" -D "$TMP/hdrs" -w '%{http_code}' --max-time 30 -X "$1" "$BASE$2")
    fi
    BODY_OUT=$(cat "$TMP/body")
}
want() { [ "$CODE" = "$1" ] || die "$2: HTTP $CODE, want $1: $BODY_OUT"; }
etag_hdr() { tr -d '\r' <"$TMP/hdrs" | awk -F': ' 'tolower($1) == "etag" { print $2 }'; }
# json_eq A B: same JSON?
json_eq() { python3 -c 'import json,sys; sys.exit(0 if json.loads(sys.argv[1]) == json.loads(sys.argv[2]) else 1)' "$1" "$2"; }

# --- 2. query through daprd (v1) ------------------------------------------
http POST /v1.0/state/pg '[
 {"key":"p1","value":{"person":{"org":"Dev","id":1036},"city":"Seattle","state":"WA"}},
 {"key":"p2","value":{"person":{"org":"Hardware","id":1028},"city":"Portland","state":"OR"}},
 {"key":"p3","value":{"person":{"org":"Finance","id":1071},"city":"Sacramento","state":"CA"}},
 {"key":"p4","value":{"person":{"org":"Dev","id":1042},"city":"San Francisco","state":"CA"}},
 {"key":"p5","value":{"person":{"org":"Ops","id":1005},"city":"Seattle","state":"WA"}},
 {"key":"p6","value":{"person":{"org":"Ops","id":1013},"city":"San Diego","state":"CA"}}]'
want 204 "saving the query data set"
# Another app's row with the same shape must never come back.
psql_q -c "INSERT INTO state (key, value, isbinary) VALUES ('otherapp||p1', '{\"person\":{\"org\":\"Dev\",\"id\":1},\"state\":\"CA\"}', false)"

# query JSON EXPECTED-KEYS-IN-ORDER [ordered]
query() {
    http POST /v1.0-alpha1/state/pg/query "$1"
    if [ -z "$2" ]; then
        [ "$CODE" = 204 ] || die "query $1: HTTP $CODE, want 204: $BODY_OUT"
        return
    fi
    want 200 "query $1"
    got=$(python3 -c 'import json,sys; print(" ".join(r["key"] for r in json.loads(sys.argv[1])["results"]))' "$BODY_OUT")
    if [ "${3:-}" != ordered ]; then
        got=$(echo $got | tr ' ' '\n' | sort | tr '\n' ' ' | sed 's/ $//')
    fi
    [ "$got" = "$2" ] || die "query $1: got '$got', want '$2'"
}
query '{"filter":{"EQ":{"state":"CA"}}}' "p3 p4 p6"
query '{"filter":{"NEQ":{"state":"CA"}}}' "p1 p2 p5"
query '{"filter":{"IN":{"person.org":["Dev","Ops"]}}}' "p1 p4 p5 p6"
query '{"filter":{"AND":[{"EQ":{"state":"CA"}},{"GT":{"person.id":1020}}]}}' "p3 p4"
query '{"filter":{"OR":[{"LTE":{"person.id":1013}},{"EQ":{"city":"Portland"}}]}}' "p2 p5 p6"
query '{"filter":{"GTE":{"person.id":1042}},"sort":[{"key":"person.id","order":"DESC"}]}' "p3 p4" ordered
query '{"sort":[{"key":"state"},{"key":"person.id","order":"DESC"}]}' "p3 p4 p6 p2 p1 p5" ordered
query '{"filter":{"EQ":{"state":"NV"}}}' ""
# Paging: limit 4, then the token.
http POST /v1.0-alpha1/state/pg/query '{"sort":[{"key":"person.id"}],"page":{"limit":4}}'
want 200 "page 1"
tok=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert len(d["results"])==4; print(d["token"])' "$BODY_OUT") ||
    die "page 1: $BODY_OUT"
query "{\"sort\":[{\"key\":\"person.id\"}],\"page\":{\"limit\":4,\"token\":\"$tok\"}}" "p4 p3" ordered
http POST /v1.0-alpha1/state/pg/query '{"filter":{"GT":{"person.id":"abc"}}}'
want 500 "GT with a string"
http POST /v1.0-alpha1/state/pg2/query '{"filter":{"EQ":{"state":"CA"}}}'
want 500 "query on v2"
echo "$BODY_OUT" | grep -q ERR_STATE_STORE_NOT_SUPPORTED || die "query on v2: $BODY_OUT"
echo "query through daprd: ok"

# --- 3. injection ------------------------------------------------------------
before=$(psql_q -c "select count(*) from state")
inj_keys=("'); DROP TABLE state; --" "x' OR '1'='1" "k\"; DELETE FROM state; --" 'a$1b\\x')
for k in "${inj_keys[@]}"; do
    body=$(python3 -c 'import json,sys; print(json.dumps([{"key":sys.argv[1],"value":sys.argv[1]}]))' "$k")
    http POST /v1.0/state/pg "$body"
    want 204 "save of key $k"
    stored=$(psql_q -c "select value #>> '{}' from state where key = 'myapp||' || \$\$$k\$\$")
    [ "$stored" = "$k" ] || die "key $k: stored value '$stored'"
done
# Filter paths, values, sort keys and tokens that look like SQL.
for q in \
    '{"filter":{"EQ":{"state'"'"') OR 1=1; DROP TABLE state; --":"CA"}}}' \
    '{"filter":{"EQ":{"state":"CA'"'"' OR '"'"'1'"'"'='"'"'1"}}}' \
    '{"filter":{"IN":{"person.org":["Dev'"'"'); DELETE FROM state; --"]}}}' \
    '{"filter":{"EQ":{"value->>'"'"'state'"'"'":"CA"}}}' \
    '{"filter":{"GT":{"person.id":0}},"sort":[{"key":"state; DROP TABLE state"}]}' ; do
    http POST /v1.0-alpha1/state/pg/query "$q"
    case $CODE in
        204) ;;
        200) # only the sort-key case matches (all docs): keys must be ours
            python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert all(r["key"].startswith("p") for r in d["results"])' "$BODY_OUT" ||
                die "injection query $q returned $BODY_OUT" ;;
        *) die "injection query $q: HTTP $CODE: $BODY_OUT" ;;
    esac
done
http POST /v1.0-alpha1/state/pg/query '{"page":{"limit":1,"token":"0; DROP TABLE state"}}'
want 500 "bad token"
http POST /v1.0-alpha1/state/pg/query '{"sort":[{"key":"state","order":"ASC; DROP TABLE state"}]}'
want 500 "bad sort order"
after=$(psql_q -c "select count(*) from state")
[ "$after" = $((before + ${#inj_keys[@]})) ] || die "injection: $before rows before, $after after"
psql_q -c "select count(*) from dapr_metadata" >/dev/null || die "metadata table gone"
echo "injection: inert ($after rows, tables intact)"

# --- 4. interop with Dapr's layout ------------------------------------------
# v1, written by daprd, read by psql.
http POST /v1.0/state/pg '[{"key":"order-1","value":{"qty":2,"item":"book"},"metadata":{"ttlInSeconds":"300"}}]'
want 204 "save order-1"
http GET /v1.0/state/pg/order-1
want 200 "get order-1"
etag=$(etag_hdr)
row=$(psql_q -F '|' -c "select value->>'qty', value->>'item', isbinary, xmin::text, expiredate > now() + interval '200 seconds', insertdate is not null from state where key = 'myapp||order-1'")
[ "$row" = "2|book|f|$etag|t|t" ] || die "v1 row of order-1 is '$row' (etag header $etag)"
grep -qi '^metadata.ttlExpireTime: 20' "$TMP/hdrs" || die "no ttlExpireTime header"
# A value that is not JSON: base64 in a jsonb string, isbinary = true.
# (Through HTTP every value is JSON, so write it as Dapr's gRPC path would.)
psql_q -c "INSERT INTO state (key, value, isbinary) VALUES ('myapp||bin', to_jsonb('aGVsbG8gd29ybGQ='::text), true)"
http GET /v1.0/state/pg/bin
want 200 "get bin"
[ "$BODY_OUT" = "hello world" ] || die "binary row read as '$BODY_OUT'"
# v1, inserted by psql as Dapr would, read through daprd with its etag.
psql_q -c "INSERT INTO state (key, value, isbinary) VALUES ('myapp||from-psql', '{\"hello\": \"world\", \"n\": [1, 2]}', false)"
http GET /v1.0/state/pg/from-psql
want 200 "get from-psql"
json_eq "$BODY_OUT" '{"hello":"world","n":[1,2]}' || die "from-psql read as $BODY_OUT"
[ "$(etag_hdr)" = "$(psql_q -c "select xmin::text from state where key = 'myapp||from-psql'")" ] ||
    die "from-psql etag differs from xmin"
# The exact text comes back; after Dapr (psql) rewrites the row, its value does.
http POST /v1.0/state/pg '[{"key":"fmt","value":{"b":1,"a":[true,null]}}]'
want 204 "save fmt"
http GET /v1.0/state/pg/fmt
json_eq "$BODY_OUT" '{"b":1,"a":[true,null]}' || die "fmt read as $BODY_OUT"
psql_q -c "UPDATE state SET value = '{\"z\": 9}', updatedate = now() WHERE key = 'myapp||fmt'"
http GET /v1.0/state/pg/fmt
[ "$BODY_OUT" = '{"z": 9}' ] || die "fmt after an update by psql read as $BODY_OUT"
# Etag from daprd works as xmin; a non-numeric etag is 400.
http GET /v1.0/state/pg/order-1
etag=$(etag_hdr)
http POST /v1.0/state/pg "[{\"key\":\"order-1\",\"value\":3,\"etag\":\"$etag\"}]"
want 204 "save with etag"
http POST /v1.0/state/pg "[{\"key\":\"order-1\",\"value\":4,\"etag\":\"$etag\"}]"
want 409 "save with a stale etag"
http POST /v1.0/state/pg '[{"key":"order-1","value":4,"etag":"not-a-number"}]'
want 400 "save with an invalid v1 etag"
# v2, written by daprd, read by psql.
http POST /v1.0/state/pg2 '[{"key":"v2-1","value":{"qty":5}}]'
want 204 "save v2-1"
http GET /v1.0/state/pg2/v2-1
want 200 "get v2-1"
etag=$(etag_hdr)
row=$(psql_q -F '|' -c "select convert_from(value, 'UTF8'), etag::text, created_at is not null, expires_at is null from pg2state where key = 'myapp||v2-1'")
[ "$row" = "$BODY_OUT|$etag|t|t" ] || die "v2 row of v2-1 is '$row' (body $BODY_OUT, etag $etag)"
# v2, inserted by psql, read through daprd.
psql_q -c "INSERT INTO pg2state (key, value) VALUES ('myapp||v2-psql', convert_to('{\"a\":1}', 'UTF8'))"
http GET /v1.0/state/pg2/v2-psql
want 200 "get v2-psql"
[ "$BODY_OUT" = '{"a":1}' ] || die "v2-psql read as $BODY_OUT"
[ "$(etag_hdr)" = "$(psql_q -c "select etag::text from pg2state where key = 'myapp||v2-psql'")" ] ||
    die "v2-psql etag differs"
http POST /v1.0/state/pg2 '[{"key":"v2-1","value":1,"etag":"12345"}]'
want 400 "save with an invalid v2 etag"
# Transactions roll back as a whole.
http POST /v1.0/state/pg2/transaction '{"operations":[
  {"operation":"upsert","request":{"key":"t1","value":1}},
  {"operation":"upsert","request":{"key":"v2-1","value":2,"etag":"00000000-0000-0000-0000-000000000000"}}]}'
want 500 "transaction with a stale etag"
[ "$(psql_q -c "select count(*) from pg2state where key = 'myapp||t1'")" = 0 ] || die "transaction not rolled back"
# Migration rows as Dapr writes them.
levels=$(psql_q -F '=' -c "select key, value from dapr_metadata where key in ('migrations', 'migrations-state-v2-pg2') order by key" | tr '\n' ' ')
[ "$levels" = "migrations=2 migrations-state-v2-pg2=1 " ] || die "migration rows: $levels"
# cleanupInterval: an expired row is deleted by the sweep.
http POST /v1.0/state/pgclean '[{"key":"short","value":1,"metadata":{"ttlInSeconds":"1"}},{"key":"long","value":2}]'
want 204 "save into pgclean"
for i in $(seq 100); do
    n=$(psql_q -c "select count(*) from cleanstate where key = 'myapp||short'")
    [ "$n" = 0 ] && break
    sleep 0.1
done
[ "$n" = 0 ] || die "the expired row was not swept"
[ "$(psql_q -c "select count(*) from cleanstate")" = 1 ] || die "the sweep removed a live row"
psql_q -c "select value from clean_meta where key = 'last-cleanup'" | grep -q 20 || die "no last-cleanup row"
echo "interop with Dapr's layout: ok"

# --- 5. fault: stop the server mid-run -----------------------------------------
# A writer saves keys f-1, f-2, ... one by one and records each answer.
writer() {
    i=0
    while [ ! -f "$TMP/stop-writer" ] && [ $i -lt 2000 ]; do
        i=$((i + 1))
        start=$(date +%s%N)
        c=$(curl -s -o /dev/null -w '%{http_code}' --max-time 20 -H 'Content-Type: application/json' \
            -d "[{\"key\":\"f-$i\",\"value\":$i}]" "$BASE/v1.0/state/pg2")
        echo "$i $c $((($(date +%s%N) - start) / 1000000))"
        sleep 0.01
    done >"$TMP/writer.log"
}
writer &
WRITER=$!
sleep 1
pg_stop
sleep 2
# While down: get and save fail fast with Dapr's errors.
http GET /v1.0/state/pg/order-1
want 500 "get while the server is down"
echo "$BODY_OUT" | grep -q ERR_STATE_GET || die "get while down: $BODY_OUT"
pg_start
sleep 1.5
touch "$TMP/stop-writer"
wait "$WRITER"
ok=$(awk '$2 == 204' "$TMP/writer.log" | wc -l)
failed=$(awk '$2 != 204' "$TMP/writer.log" | wc -l)
slow=$(awk '$3 > 6000' "$TMP/writer.log" | wc -l)
bad=$(awk '$2 != 204 && $2 != 500' "$TMP/writer.log" | wc -l)
last=$(tail -n 1 "$TMP/writer.log")
[ "$failed" -gt 0 ] || die "no save failed while the server was down"
[ "$bad" = 0 ] || die "saves failed with other codes than 500: $(awk '$2 != 204 && $2 != 500' "$TMP/writer.log" | head -3)"
[ "$slow" = 0 ] || die "$slow saves took longer than the timeout (3 s) + 3 s"
[ "$(echo "$last" | cut -d' ' -f2)" = 204 ] || die "the last save after the restart failed: $last"
# Every acknowledged key is in the table with its value.
acked=$(awk '$2 == 204 { print "myapp||f-" $1 }' "$TMP/writer.log" | sort)
present=$(psql_q -c "select key from pg2state where key like 'myapp||f-%' and convert_from(value, 'UTF8') = substr(key, 10)" | sort)
missing=$(comm -23 <(echo "$acked") <(echo "$present") | wc -l)
[ "$missing" = 0 ] || die "$missing acknowledged saves are missing after the restart"
echo "fault: $ok saves acknowledged and all present, $failed failed cleanly (HTTP 500) while the server was down"
http GET /v1.0/state/pg/order-1
want 200 "get after the restart"

# --- 6. secrets -----------------------------------------------------------------
kill "$DAPRD_PID"
wait "$DAPRD_PID" 2>/dev/null
DAPRD_PID=
grep -q "pgbad" "$TMP/daprd.log" || die "no line about the failing component"
grep "pgbad" "$TMP/daprd.log" | grep -q '127.0.0.1' || {
    grep pgbad "$TMP/daprd.log"; die "the init error does not name the host"; }
grep "pgbad" "$TMP/daprd.log" | grep -qi 'password authentication failed' || {
    grep pgbad "$TMP/daprd.log"; die "the init error does not name the cause"; }
if grep -q "$PASSWORD" "$TMP/daprd.log"; then
    grep -n "$PASSWORD" "$TMP/daprd.log" | head -3
    die "the password appears in daprd's log"
fi
echo "secrets: not in the logs; init error names host and cause"
echo "PASS"
