#!/bin/bash
# t/redis/run.sh - state.redis against a real redis-server.
#
# Starts redis-server on 127.0.0.1 and a free port in a temporary folder,
# then checks, in order:
#   1. the conformance kit against the plugin (must pass what it runs);
#   2. the kit again against a server with --requirepass (redisPassword),
#      a wrong password failing init without showing it, an ACL user
#      (redisUsername) and enableTLS=true failing init clearly;
#   3. interop through a real daprd and redis-cli: Dapr's hash layout
#      (data / version) both ways, ETag = version, TTL as Redis expiry;
#   4. injection: odd keys are stored and read back literally, nothing
#      else is touched;
#   5. faults: the server is shut down while writes run (they fail fast
#      and cleanly), then restarted on the same port (they work again).
#
# `make check` runs it from the top build folder with $srcdir exported.
# DAPRD, CONFORMANCE and PLUGIN_DIR may point at another build.  Exit 77
# only when redis-server / redis-cli (Debian: redis-server, redis-tools),
# curl or python3 are missing.

set -u
builddir=$PWD
DAPRD=${DAPRD:-$builddir/core/daprd}
CONFORMANCE=${CONFORMANCE:-$builddir/plugin-sdk/conformance/dapr-plugin-conformance}
PLUGIN_DIR=${PLUGIN_DIR:-$builddir/plugins/state-redis/.libs}
PLUGIN=$PLUGIN_DIR/state-redis.so

for c in redis-server redis-cli curl python3; do
    if ! command -v "$c" >/dev/null 2>&1; then
        echo "SKIP: $c not found (apt-get install -y redis-server curl python3)"
        exit 77
    fi
done
if [ ! -f "$PLUGIN" ]; then
    echo "SKIP: $PLUGIN is not built (configure did not find hiredis)"
    exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/dapr-redis.XXXXXX") || exit 99
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

ok()   { echo "ok: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
# check DESCRIPTION COMMAND...: run the command, report ok or FAIL.
check() {
    local what=$1
    shift
    if "$@"; then ok "$what"; else fail "$what"; fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# start_redis PORT NAME [redis-server args...]: start and wait for PONG.
# Sets redis_pid.
start_redis() {
    local port=$1 name=$2
    shift 2
    (cd "$tmp" && exec redis-server --port "$port" --bind 127.0.0.1 --save '' \
        --appendonly no --daemonize no "$@") >"$tmp/$name.log" 2>&1 &
    redis_pid=$!
    pids+=("$redis_pid")
    for _ in $(seq 100); do
        # NOAUTH also proves the server is up.
        case $(redis-cli -h 127.0.0.1 -p "$port" ping 2>&1) in
            PONG|*NOAUTH*) return 0 ;;
        esac
        kill -0 "$redis_pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "redis-server did not start:"
    cat "$tmp/$name.log"
    return 1
}

rcli() { redis-cli -h 127.0.0.1 -p "$rport" "$@"; }

# Bound every kit run: the kit has its own per-operation timeout too.
kit() { timeout -s KILL 120 "$CONFORMANCE" --timeout 10 "$@" "$PLUGIN"; }

# ---------------------------------------------------------------- 1 -----
rport=$(free_port)
start_redis "$rport" redis || exit 99
redis_pid_main=$redis_pid
out=$(kit --metadata "redisHost=127.0.0.1:$rport" 2>&1)
rc=$?
echo "$out" | grep -E '^(not ok|#.*(passed|failed))|passed' | tail -3
check "conformance kit passes against redis-server (exit $rc)" [ "$rc" -eq 0 ]
echo "$out" | grep '^not ok' || true

# ---------------------------------------------------------------- 2 -----
pport=$(free_port)
secret='s3cr3t-Pw!'
start_redis "$pport" redis-auth --requirepass "$secret" || exit 99
out=$(kit --metadata "redisHost=127.0.0.1:$pport" --metadata "redisPassword=$secret" 2>&1)
rc=$?
echo "$out" | grep -E 'passed' | tail -1
check "conformance kit passes with redisPassword against --requirepass (exit $rc)" [ "$rc" -eq 0 ]

bad='Wr0ng-Pw-xyzzy'
out=$(kit --metadata "redisHost=127.0.0.1:$pport" --metadata "redisPassword=$bad" 2>&1)
rc=$?
check "wrong password: init fails" [ "$rc" -ne 0 ]
check "wrong password: the error names the cause" grep -qi "authentication failed" <<<"$out"
check "wrong password: the password is never printed" eval '! grep -q "$bad" <<<"$out"'
out=$(kit --metadata "redisHost=127.0.0.1:$pport" 2>&1)
check "no password on a --requirepass server: init fails with NOAUTH" \
    grep -q "NOAUTH" <<<"$out"

redis-cli -h 127.0.0.1 -p "$pport" -a "$secret" --no-auth-warning \
    ACL SETUSER dapruser on '>user-pw' '~*' '+@all' >/dev/null
out=$(kit --metadata "redisHost=127.0.0.1:$pport" --metadata redisUsername=dapruser \
    --metadata redisPassword=user-pw 2>&1)
rc=$?
check "ACL user (redisUsername + redisPassword) passes the kit (exit $rc)" [ "$rc" -eq 0 ]

out=$(kit --metadata "redisHost=127.0.0.1:$rport" --metadata enableTLS=true 2>&1)
rc=$?
check "enableTLS=true fails init with a clear message" \
    eval '[ "$rc" -ne 0 ] && grep -q "enableTLS is not supported" <<<"$out"'
out=$(kit --metadata "redisHost=127.0.0.1:1" 2>&1)
check "unreachable host: init fails naming the host" grep -q "127.0.0.1:1" <<<"$out"

# ---------------------------------------------------------------- 3 -----
if [ ! -x "$DAPRD" ]; then
    fail "daprd not built at $DAPRD"
    echo "$failures failure(s)"
    exit 1
fi
mkdir -p "$tmp/res"
cat >"$tmp/res/statestore.yaml" <<EOF
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.redis
  version: v1
  metadata:
  - name: redisHost
    value: 127.0.0.1:$rport
  - name: readTimeout
    value: 2s
  - name: actorStateStore
    value: "true"
EOF
cat >"$tmp/res/slowstore.yaml" <<EOF
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: slowstore
spec:
  type: state.redis
  version: v1
  metadata:
  - name: redisHost
    value: 127.0.0.1:$rport
  - name: readTimeout
    value: 300ms
EOF
cat >"$tmp/res/authstore.yaml" <<EOF
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: authstore
spec:
  type: state.redis
  version: v1
  metadata:
  - name: redisHost
    value: 127.0.0.1:$pport
  - name: redisPassword
    value: "$secret"
  - name: redisDB
    value: "3"
  - name: ttlInSeconds
    value: "500"
EOF

for _ in 1 2 3; do
    dport=$(free_port)
    "$DAPRD" --app-id myapp --dapr-http-port "$dport" --dapr-listen-addresses 127.0.0.1 \
        --resources-path "$tmp/res" --plugins-dir "$PLUGIN_DIR" --log-level debug \
        >"$tmp/daprd.log" 2>&1 &
    dpid=$!
    pids+=("$dpid")
    up=0
    for _ in $(seq 200); do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$dport/v1.0/healthz")
        [ "$code" = 204 ] && { up=1; break; }
        kill -0 "$dpid" 2>/dev/null || break
        sleep 0.05
    done
    [ "$up" = 1 ] && break
done
if [ "$up" != 1 ]; then
    fail "daprd did not start"
    cat "$tmp/daprd.log"
    exit 1
fi
base=http://127.0.0.1:$dport/v1.0/state

# save STORE JSON: POST the state array, print the HTTP status.
save() { curl -s -o "$tmp/body" -w '%{http_code}' --max-time 10 -H 'Content-Type: application/json' \
    -d "$2" "$base/$1"; }
# get STORE KEY: body to $tmp/body, headers to $tmp/hdr, print the status.
get() { curl -s -D "$tmp/hdr" -o "$tmp/body" -w '%{http_code}' --max-time 10 "$base/$1/$2"; }
hdr() { tr -d '\r' <"$tmp/hdr" | awk -v h="$1" 'BEGIN{IGNORECASE=1} index(tolower($0), tolower(h) ":")==1 {sub(/^[^:]*: */, ""); print}'; }

check "save through daprd" [ "$(save statestore '[{"key":"k1","value":{"a":1}}]')" = 204 ]
check "redis-cli: key is a hash" [ "$(rcli TYPE 'myapp||k1')" = hash ]
check "redis-cli: data field holds the JSON value" [ "$(rcli HGET 'myapp||k1' data)" = '{"a":1}' ]
check "redis-cli: version field is 1 after the first write" [ "$(rcli HGET 'myapp||k1' version)" = 1 ]
save statestore '[{"key":"k1","value":"two"}]' >/dev/null
check "redis-cli: version is 2 after a second write" [ "$(rcli HGET 'myapp||k1' version)" = 2 ]
check "redis-cli: no expiry without ttlInSeconds" [ "$(rcli TTL 'myapp||k1')" = -1 ]
get statestore k1 >/dev/null
check "daprd: ETag header is the version" [ "$(hdr ETag)" = 2 ]
check "save with a stale etag: 409" \
    [ "$(save statestore '[{"key":"k1","value":3,"etag":"1"}]')" = 409 ]
check "save with a non-numeric etag: 400 (invalid etag)" \
    [ "$(save statestore '[{"key":"k1","value":3,"etag":"abc"}]')" = 400 ]
check "save with the current etag: 204" \
    [ "$(save statestore '[{"key":"k1","value":3,"etag":"2"}]')" = 204 ]
check "save with first-write writes the first-write field as Dapr" eval \
    '[ "$(save statestore "[{\"key\":\"fw\",\"value\":1,\"options\":{\"concurrency\":\"first-write\"}}]")" = 204 ] && [ "$(rcli HGET "myapp||fw" first-write)" = 0 ]'

# A hash written natively in Dapr's layout reads back through daprd.
rcli HSET 'myapp||native' data '{"from":"redis-cli"}' version 7 >/dev/null
check "native hash reads back through daprd" eval \
    '[ "$(get statestore native)" = 200 ] && [ "$(cat "$tmp/body")" = "{\"from\":\"redis-cli\"}" ]'
check "native hash: ETag = version" [ "$(hdr ETag)" = 7 ]
check "native hash: write with its etag" \
    [ "$(save statestore '[{"key":"native","value":"x","etag":"7"}]')" = 204 ]
check "redis-cli sees version 8" [ "$(rcli HGET 'myapp||native' version)" = 8 ]
# A plain string (very old Dapr) reads back as its value.
rcli SET 'myapp||plain' '"old"' >/dev/null
check "plain string key reads back" eval '[ "$(get statestore plain)" = 200 ] && [ "$(cat "$tmp/body")" = "\"old\"" ]'

# TTL: item metadata, then the store default (authstore, db 3).
save statestore '[{"key":"t1","value":1,"metadata":{"ttlInSeconds":"100"}}]' >/dev/null
t=$(rcli TTL 'myapp||t1')
check "ttlInSeconds=100 is the Redis expiry (TTL $t)" [ "$t" -gt 90 ] 2>/dev/null
get statestore t1 >/dev/null
check "get returns metadata.ttlExpireTime" eval 'hdr metadata.ttlExpireTime | grep -Eq "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$"'
save statestore '[{"key":"t1","value":2}]' >/dev/null
check "an overwrite without TTL removes the expiry" [ "$(rcli TTL 'myapp||t1')" = -1 ]
save authstore '[{"key":"d1","value":1},{"key":"d2","value":1,"metadata":{"ttlInSeconds":"-1"}}]' >/dev/null
pcli() { redis-cli -h 127.0.0.1 -p "$pport" -a "$secret" --no-auth-warning -n 3 "$@"; }
t=$(pcli TTL 'myapp||d1')
check "store ttlInSeconds=500 applies (db 3, TTL $t)" [ "$t" -gt 490 ] 2>/dev/null
check "item ttlInSeconds=-1 overrides the store default" [ "$(pcli TTL 'myapp||d2')" = -1 ]
check "the password is not in daprd's log" eval '! grep -q "$secret" "$tmp/daprd.log"'

# Transaction through daprd: all or nothing, as seen by redis-cli.
txn() { curl -s -o "$tmp/body" -w '%{http_code}' --max-time 10 -H 'Content-Type: application/json' \
    -d "$1" "$base/statestore/transaction"; }
save statestore '[{"key":"a","value":"A"}]' >/dev/null
code=$(txn '{"operations":[
  {"operation":"upsert","request":{"key":"b","value":"B"}},
  {"operation":"delete","request":{"key":"a","etag":"99"}}]}')
check "transaction with a stale etag fails (HTTP $code, etag mismatch)" \
    eval '[ "${code#[45]}" != "$code" ] && grep -q "etag mismatch" "$tmp/body"'
check "... and writes nothing" eval '[ "$(rcli EXISTS "myapp||b")" = 0 ] && [ "$(rcli HGET "myapp||a" data)" = "\"A\"" ]'
check "transaction applies upsert and delete" [ "$(txn '{"operations":[
  {"operation":"upsert","request":{"key":"b","value":"B"}},
  {"operation":"delete","request":{"key":"a","etag":"1"}}]}')" = 204 ]
check "... redis-cli agrees" eval '[ "$(rcli EXISTS "myapp||a")" = 0 ] && [ "$(rcli HGET "myapp||b" version)" = 1 ]'

# readTimeout: a paused server makes a command time out, not hang.
rcli CLIENT PAUSE 1500 ALL >/dev/null
t0=$(date +%s%N)
code=$(get slowstore k1)
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
check "readTimeout=300ms bounds a get on a paused server (HTTP $code in $ms ms)" \
    eval '[ "$code" = 500 ] && [ "$ms" -lt 1200 ] && grep -q "within 300 ms" "$tmp/body"'
rcli CLIENT UNPAUSE >/dev/null
check "after the pause: get works again" [ "$(get slowstore k1)" = 200 ]

# ---------------------------------------------------------------- 4 -----
# Keys that look like Redis protocol, Lua, globs, or are just unusual.
# They travel inside JSON bodies (save, bulk get), so no URL encoding.
python3 - "$tmp/keys.json" <<'EOF'
import json, sys
keys = ["*", "\r\nFLUSHALL\r\n", "*1\r\n$8\r\nFLUSHDB\r\n", "') redis.call('FLUSHALL') --",
        "]]..redis.call('del',KEYS[1])..[[", "KEYS[1]", "a b  c", "ключ-🔑-键",
        "{\"$gt\":\"\"}", "'; DROP TABLE state; --", "%s%n%x", "tab\there"]
json.dump(keys, open(sys.argv[1], "w"))
EOF
save statestore '[{"key":"sentinel","value":"keep"}]' >/dev/null
before=$(rcli DBSIZE)
items=$(python3 -c 'import json,sys; k=json.load(open(sys.argv[1])); print(json.dumps([{"key":x,"value":"v%d" % i} for i,x in enumerate(k)]))' "$tmp/keys.json")
check "odd keys saved through daprd" [ "$(save statestore "$items")" = 204 ]
after=$(rcli DBSIZE)
nkeys=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$tmp/keys.json")
check "exactly $nkeys new Redis keys ($before -> $after)" [ "$after" -eq $((before + nkeys)) ]
check "sentinel untouched" [ "$(rcli HGET 'myapp||sentinel' data)" = '"keep"' ]
bulk=$(curl -s --max-time 10 -H 'Content-Type: application/json' \
    -d "{\"keys\":$(cat "$tmp/keys.json")}" "$base/statestore/bulk")
check "odd keys read back literally through bulk get" python3 -c '
import json, sys
keys = json.load(open(sys.argv[1])); got = json.loads(sys.argv[2])
byk = {g["key"]: g for g in got}
bad = [k for i, k in enumerate(keys) if byk.get(k, {}).get("data") != "v%d" % i or byk[k].get("etag") != "1"]
sys.exit(1 if bad or len(got) != len(keys) else 0)' "$tmp/keys.json" "$bulk"
# redis-cli sees each key verbatim (prefixed by the app id).
check "redis-cli finds each odd key verbatim" python3 -c '
import json, subprocess, sys
keys = json.load(open(sys.argv[1]))
for i, k in enumerate(keys):
    out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", sys.argv[2], "-x", "HGET", "myapp||" + k],
                         input=b"data", capture_output=True).stdout
    if out.strip() != ("\"v%d\"" % i).encode():
        sys.exit(1)' "$tmp/keys.json" "$rport"

# ---------------------------------------------------------------- 5 -----
# Writes run in the background while the server shuts down.
writer() {
    local i=0 code
    while [ ! -f "$tmp/stop" ]; do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 8 -H 'Content-Type: application/json' \
            -d "[{\"key\":\"f$i\",\"value\":$i}]" "$base/statestore")
        echo "$code" >>"$tmp/writes"
        i=$((i + 1))
    done
}
: >"$tmp/writes"
writer &
wpid=$!
pids+=("$wpid")
sleep 0.5
rcli SHUTDOWN NOSAVE >/dev/null 2>&1
wait "$redis_pid_main" 2>/dev/null
sleep 0.5
t0=$(date +%s%N)
code=$(get statestore k1)
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
check "get while redis is down fails cleanly (HTTP $code in $ms ms)" \
    eval '[ "$code" = 500 ] && [ "$ms" -lt 3000 ]'
check "the error says the store is unreachable" grep -qi "redis" "$tmp/body"
start_redis "$rport" redis-again || exit 99
sleep 0.5
touch "$tmp/stop"
wait "$wpid"
ok_n=$(grep -c '^204$' "$tmp/writes")
err_n=$(grep -c '^500$' "$tmp/writes")
other=$(grep -vc -e '^204$' -e '^500$' "$tmp/writes")
echo "# writes during the fault: $ok_n ok, $err_n failed with 500, $other other"
check "writes during the outage failed with 500, none hung or crashed" \
    eval '[ "$err_n" -gt 0 ] && [ "$other" -eq 0 ]'
check "after restart: the first save works" [ "$(save statestore '[{"key":"r1","value":"back"}]')" = 204 ]
check "after restart: get works" eval '[ "$(get statestore r1)" = 200 ] && [ "$(cat "$tmp/body")" = "\"back\"" ]'
check "after restart: redis-cli sees version 1" [ "$(rcli HGET 'myapp||r1' version)" = 1 ]
check "daprd still running" kill -0 "$dpid"

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
