#!/bin/bash
# t/pubsub-redis/run.sh - pubsub.redis against a real redis-server.
#
# Starts redis-server on 127.0.0.1 and free ports in a temporary folder,
# then checks, in order:
#   1. the conformance kit's pub/sub suite against the plugin (short
#      processingTimeout/redeliverInterval so that RETRY comes back fast);
#      again with redisPassword against --requirepass; init failures:
#      wrong password (never printed), unreachable host, enableTLS;
#   2. interop through a real daprd and redis-cli: publish with curl
#      (/v1.0/publish/<name>/<topic>), XRANGE shows Dapr's layout (data =
#      the CloudEvent, metadata = JSON), the consumer group is the app id,
#      the app gets the event and the entry is acked (XPENDING 0); an
#      entry added by redis-cli in Dapr's layout is delivered; RETRY from
#      the app leaves the entry pending and it comes back;
#   3. faults, counting message ids: redis-server (appendonly, fsync
#      always) killed with SIGKILL mid-run and restarted on the same port:
#      publishes fail cleanly while it is down and work after; then daprd
#      killed with SIGKILL while the app holds messages, and restarted:
#      the unacked entries are claimed again.  Every id whose publish
#      was answered 204 must reach the app; nothing stays pending.
#
# `make check` runs it from the top build folder with $srcdir exported.
# DAPRD, CONFORMANCE and PLUGIN_DIR may point at another build.  Exit 77
# only when the plugin is not built or redis-server / redis-cli (Debian:
# redis-server, redis-tools), curl or python3 are missing.

set -u
srcdir=${srcdir:-${0%/*}/../..}
builddir=$PWD
DAPRD=${DAPRD:-$builddir/core/daprd}
CONFORMANCE=${CONFORMANCE:-$builddir/plugin-sdk/conformance/dapr-plugin-conformance}
PLUGIN_DIR=${PLUGIN_DIR:-$builddir/plugins/pubsub-redis/.libs}
PLUGIN=$PLUGIN_DIR/pubsub-redis.so
APP=$srcdir/t/pubsub/pubsub_app.py

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

tmp=$(mktemp -d "${TMPDIR:-/tmp}/dapr-pubsub-redis.XXXXXX") || exit 99
pids=()
failures=0
passes=0
cleanup() {
    local p
    for p in "${pids[@]}"; do
        { kill -KILL "$p"; wait "$p"; } 2>/dev/null
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

ok()   { echo "ok: $*"; passes=$((passes + 1)); }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
check() {
    local what=$1
    shift
    if "$@"; then ok "$what"; else fail "$what"; fi
}
finish() {
    echo "# $passes passed, $failures failed"
    [ "$failures" -eq 0 ]
    exit
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# start_redis PORT NAME [redis-server args...]: start, wait for PONG, set redis_pid.
start_redis() {
    local port=$1 name=$2
    shift 2
    mkdir -p "$tmp/$name"
    (cd "$tmp/$name" && exec redis-server --port "$port" --bind 127.0.0.1 --save '' \
        --appendonly no --daemonize no "$@") >>"$tmp/$name.log" 2>&1 &
    redis_pid=$!
    pids+=("$redis_pid")
    for _ in $(seq 200); do
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

# Bound every kit run: the kit has its own per-operation timeout too.
kit() { timeout -s KILL 150 "$CONFORMANCE" --timeout 10 "$@" "$PLUGIN"; }
fast=(--metadata processingTimeout=1s --metadata redeliverInterval=300ms --redelivery-wait 3)

# ---------------------------------------------------------------- 1 -----
rport=$(free_port)
start_redis "$rport" redis || exit 99
t0=$(date +%s%N)
out=$(kit --metadata "redisHost=127.0.0.1:$rport" "${fast[@]}" 2>&1)
rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
echo "$out" | grep -E 'passed|^not ok' | tail -5
check "conformance kit (pub/sub suite) passes against redis-server in $ms ms (exit $rc)" [ "$rc" -eq 0 ]
rcli() { redis-cli -h 127.0.0.1 -p "$rport" "$@"; }
pending=$(rcli SCAN 0 TYPE stream COUNT 100000 | tail -n +2 | while read -r s; do
    rcli XPENDING "$s" conformance | head -1; done | awk '{n += $1} END {print n + 0}')
echo "# entries the kit left pending (acked RETRY after unsubscribe, as its last test does): $pending"

pport=$(free_port)
secret='s3cr3t-Pw!x'
start_redis "$pport" redis-auth --requirepass "$secret" || exit 99
out=$(kit --metadata "redisHost=127.0.0.1:$pport" --metadata "redisPassword=$secret" \
    "${fast[@]}" --skip "10000 messages" 2>&1)
rc=$?
echo "$out" | grep -E 'passed' | tail -1
check "kit passes with redisPassword against --requirepass (exit $rc)" [ "$rc" -eq 0 ]
bad='Wr0ng-Pw-plugh'
out=$(kit --metadata "redisHost=127.0.0.1:$pport" --metadata "redisPassword=$bad" 2>&1)
rc=$?
check "wrong password: init fails naming the cause" \
    eval '[ "$rc" -ne 0 ] && grep -q "authentication failed" <<<"$out"'
check "wrong password: the password is never printed" eval '! grep -q "$bad" <<<"$out"'
out=$(kit --metadata "redisHost=127.0.0.1:$pport" 2>&1)
check "no password on a --requirepass server: init fails with NOAUTH" grep -q "NOAUTH" <<<"$out"
out=$(kit --metadata "redisHost=127.0.0.1:1" 2>&1)
check "unreachable host: init fails naming host and cause" \
    grep -Eq "error connecting to redis at 127.0.0.1:1: .*refused" <<<"$out"
out=$(kit --metadata "redisHost=127.0.0.1:$rport" --metadata enableTLS=true 2>&1)
check "enableTLS=true fails init clearly (hiredis 0.14 has no TLS)" \
    grep -q "enableTLS is not supported" <<<"$out"
out=$(kit --metadata "redisHost=127.0.0.1:$rport" --metadata processingTimeout=soon 2>&1)
check "a bad processingTimeout fails init naming the field" grep -q "processingTimeout" <<<"$out"

# ---------------------------------------------------------------- 2 -----
if [ ! -x "$DAPRD" ] || [ ! -f "$APP" ]; then
    fail "daprd ($DAPRD) or the test app ($APP) is missing"
    finish
fi

# start_app NAME: start pubsub_app.py, set app_port and app_pid.
start_app() {
    python3 "$APP" --port 0 --name "$1" >"$tmp/$1.out" 2>"$tmp/$1.err" &
    app_pid=$!
    pids+=("$app_pid")
    for _ in $(seq 200); do
        app_port=$(sed -n 's/^PORT //p' "$tmp/$1.out" 2>/dev/null)
        [ -n "$app_port" ] && return 0
        kill -0 "$app_pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "test app $1 did not start"; cat "$tmp/$1.err"
    return 1
}
# appctl PORT METHOD PATH [JSON]
appctl() {
    if [ $# -ge 4 ]; then
        curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X "$2" -H 'Content-Type: application/json' \
            -d "$4" "http://127.0.0.1:$1$3"
    else
        curl -s --max-time 5 -X "$2" "http://127.0.0.1:$1$3"
    fi
}
# start_daprd NAME APP_ID APP_PORT RESOURCES TOPIC: start, wait until
# subscribed to TOPIC; sets dport and dpid.
start_daprd() {
    local name=$1 appid=$2 aport=$3 res=$4 topic=$5 attempt
    for attempt in 1 2 3; do
        dport=$(free_port)
        "$DAPRD" --app-id "$appid" --app-port "$aport" --dapr-http-port "$dport" \
            --dapr-internal-grpc-port 0 --dapr-listen-addresses 127.0.0.1 \
            --resources-path "$res" --plugins-dir "$PLUGIN_DIR" --log-level debug \
            >>"$tmp/$name.log" 2>&1 &
        dpid=$!
        pids+=("$dpid")
        for _ in $(seq 300); do
            grep -q "subscribed to topic $topic " "$tmp/$name.log" && return 0
            kill -0 "$dpid" 2>/dev/null || break
            sleep 0.05
        done
        grep -q "address already in use" "$tmp/$name.log" || break
    done
    echo "daprd $name did not subscribe to $topic:"
    tail -30 "$tmp/$name.log"
    return 1
}
# publish PORT PUBSUB TOPIC JSON: print the HTTP status.
publish() {
    curl -s -o "$tmp/pub.body" -w '%{http_code}' --max-time 10 -H 'Content-Type: application/json' \
        -d "$4" "http://127.0.0.1:$1/v1.0/publish/$2/$3"
}
# deliveries PORT: the app's deliveries as "id count" lines for events
# whose data is {"id": N}, plus "total N".
delivered_ids() {
    curl -s --max-time 10 "http://127.0.0.1:$1/_ctl/deliveries" | python3 -c '
import base64, collections, json, sys
c = collections.Counter()
for d in json.load(sys.stdin):
    try:
        ev = json.loads(base64.b64decode(d["body_b64"]))
        c[int(ev["data"]["id"])] += 1
    except Exception:
        pass
for k, v in sorted(c.items()):
    print(k, v)'
}

mkdir -p "$tmp/res"
cat >"$tmp/res/pubsub.yaml" <<EOF
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: redis-pubsub
spec:
  type: pubsub.redis
  version: v1
  metadata:
  - name: redisHost
    value: 127.0.0.1:$pport
  - name: redisPassword
    value: "$secret"
  - name: processingTimeout
    value: 1s
  - name: redeliverInterval
    value: 300ms
EOF
start_app app1 || exit 99
a1=$app_port
check "app answers /dapr/subscribe with topic orders" [ "$(appctl "$a1" PUT /_ctl/subscribe \
    '{"status":200,"body":[{"pubsubname":"redis-pubsub","topic":"orders","route":"/orders"}]}')" = 204 ]
start_daprd daprd1 myapp "$a1" "$tmp/res" orders || { fail "daprd with pubsub.redis loads and subscribes"; finish; }
ok "daprd loads pubsub.redis and subscribes to orders"
d1=$dport
pcli() { redis-cli -h 127.0.0.1 -p "$pport" -a "$secret" --no-auth-warning "$@"; }

code=$(publish "$d1" redis-pubsub orders '{"id":1,"what":"first"}')
check "curl /v1.0/publish/redis-pubsub/orders: 204" [ "$code" = 204 ]
pcli --json -2 XRANGE orders - + >"$tmp/xrange.json"
check "redis-cli XRANGE: Dapr's layout (data = the CloudEvent, metadata = JSON object)" python3 -c '
import json, sys
entries = json.load(open(sys.argv[1]))
assert len(entries) == 1, entries
eid, fields = entries[0]
f = dict(zip(fields[::2], fields[1::2]))
ev = json.loads(f["data"])
assert ev["data"] == {"id": 1, "what": "first"}, ev
assert ev["topic"] == "orders" and ev["pubsubname"] == "redis-pubsub" and ev["source"] == "myapp", ev
assert ev["specversion"] == "1.0" and ev["datacontenttype"] == "application/json", ev
assert isinstance(json.loads(f["metadata"]), dict), f
assert set(f) <= {"data", "metadata", "contentType"}, f
print("# XRANGE fields:", sorted(f), "id", eid)' "$tmp/xrange.json"
check "consumer group = the app id (consumerID default)" \
    eval 'pcli XINFO GROUPS orders | grep -qx myapp'
for _ in $(seq 100); do [ -n "$(delivered_ids "$a1")" ] && break; sleep 0.05; done
check "the app received the event" [ "$(delivered_ids "$a1")" = "1 1" ]
for _ in $(seq 100); do [ "$(pcli XPENDING orders myapp | head -1)" = 0 ] && break; sleep 0.05; done
check "acked after the app's 200: XPENDING orders myapp is 0" [ "$(pcli XPENDING orders myapp | head -1)" = 0 ]

# An entry added natively, in Dapr's layout, is delivered.
ce='{"specversion":"1.0","id":"cli-1","source":"redis-cli","type":"com.dapr.event.sent","topic":"orders","pubsubname":"redis-pubsub","datacontenttype":"application/json","data":{"id":2}}'
pcli XADD orders '*' data "$ce" >/dev/null
for _ in $(seq 100); do delivered_ids "$a1" | grep -q '^2 ' && break; sleep 0.05; done
check "an entry added by redis-cli (data = CloudEvent) reaches the app" eval 'delivered_ids "$a1" | grep -qx "2 1"'

# RETRY: the app answers RETRY to id 3 four times (daprd retries locally,
# then hands RETRY to the plugin: the entry stays pending and is claimed
# again after processingTimeout), then 200.
appctl "$a1" PUT /_ctl/rules '[{"match":"\"id\":3","times":4,"json":{"status":"RETRY"}}]' >/dev/null
code=$(publish "$d1" redis-pubsub orders '{"id":3}')
saw_pending=0
for _ in $(seq 200); do
    [ "$(pcli XPENDING orders myapp | head -1)" = 1 ] && saw_pending=1
    delivered_ids "$a1" | grep -Eq '^3 ([5-9]|[1-9][0-9])$' && break
    sleep 0.05
done
n3=$(delivered_ids "$a1" | awk '$1 == 3 {print $2}')
check "RETRY: the entry stays pending in Redis meanwhile" [ "$saw_pending" = 1 ]
check "RETRY: redelivered by the plugin and acked at last (app saw id 3 ${n3:-0} times)" \
    eval '[ "${n3:-0}" -ge 5 ]'
for _ in $(seq 100); do [ "$(pcli XPENDING orders myapp | head -1)" = 0 ] && break; sleep 0.05; done
check "nothing pending after the final 200" [ "$(pcli XPENDING orders myapp | head -1)" = 0 ]
# The group disappears under a running reader (as after a server restart
# without persistence): it is created again, from the stream's start (so
# ids 1-3 come again too, as with Dapr), and id 4 arrives.
pcli XGROUP DESTROY orders myapp >/dev/null
code=$(publish "$d1" redis-pubsub orders '{"id":4}')
for _ in $(seq 200); do delivered_ids "$a1" | grep -q '^4 ' && break; sleep 0.05; done
check "consumer group deleted under the reader: recreated (NOGROUP), id 4 delivered" \
    eval 'delivered_ids "$a1" | grep -qx "4 1" && grep -q "creating it again" "$tmp/daprd1.log"'
check "the password is not in daprd's log" eval '! grep -q "$secret" "$tmp/daprd1.log"'
kill -TERM "$dpid" 2>/dev/null
wait "$dpid"
rc=$?
check "daprd stops cleanly on SIGTERM (exit $rc, no sanitizer report)" \
    eval '[ "$rc" -eq 0 ] && ! grep -Eq "Sanitizer|runtime error" "$tmp/daprd1.log"'

# ---------------------------------------------------------------- 3 -----
fport=$(free_port)
aof=(--appendonly yes --appendfsync always)
start_redis "$fport" redis-aof "${aof[@]}" || exit 99
fcli() { redis-cli -h 127.0.0.1 -p "$fport" "$@"; }
mkdir -p "$tmp/res2"
cat >"$tmp/res2/pubsub.yaml" <<EOF
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: faultps
spec:
  type: pubsub.redis
  version: v1
  metadata:
  - name: redisHost
    value: 127.0.0.1:$fport
  - name: processingTimeout
    value: 2s
  - name: redeliverInterval
    value: 500ms
  - name: readTimeout
    value: 1s
EOF
start_app app2 || exit 99
a2=$app_port
appctl "$a2" PUT /_ctl/subscribe \
    '{"status":200,"body":[{"pubsubname":"faultps","topic":"fault","route":"/fault"}]}' >/dev/null
# A slow app, so that messages are in flight when the faults hit.
appctl "$a2" PUT /_ctl/rules '[{"delay_ms":15}]' >/dev/null
start_daprd daprd2 faultapp "$a2" "$tmp/res2" fault || { fail "daprd for the fault test"; finish; }

# publisher FROM TO: publish ids, log "id status ms".
publisher() {
    local i code t
    for i in $(seq "$1" "$2"); do
        t=$(date +%s%N)
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -H 'Content-Type: application/json' \
            -d "{\"id\":$i}" "http://127.0.0.1:$dport/v1.0/publish/faultps/fault")
        echo "$i $code $(( ($(date +%s%N) - t) / 1000000 ))" >>"$tmp/published"
        [ "$code" = 204 ] || sleep 0.02
    done
}
: >"$tmp/published"
publisher 1 400 &
ppid=$!
pids+=("$ppid")
while [ "$(wc -l <"$tmp/published")" -lt 120 ]; do sleep 0.02; done
{ kill -KILL "$redis_pid"; wait "$redis_pid"; } 2>/dev/null
sleep 1
start_redis "$fport" redis-aof "${aof[@]}" || exit 99
wait "$ppid"
ok_ids=$(awk '$2 == 204' "$tmp/published" | wc -l)
bad_ids=$(awk '$2 != 204' "$tmp/published" | wc -l)
slowest=$(awk '$2 != 204 {if ($3 > m) m = $3} END {print m + 0}' "$tmp/published")
other=$(awk '$2 != 204 && $2 != 500' "$tmp/published" | wc -l)
echo "# redis-server killed and restarted: $ok_ids publishes ok, $bad_ids failed (slowest failure $slowest ms)"
check "publish failed while redis-server was down" [ "$bad_ids" -gt 0 ]
check "... cleanly: HTTP 500 within 3 s, nothing else" eval '[ "$other" -eq 0 ] && [ "$slowest" -lt 3000 ]'
check "publish works after the restart" eval 'awk "\$1 > 300" "$tmp/published" | grep -q " 204 "'

# Second fault: daprd killed with SIGKILL while the app holds messages.
appctl "$a2" PUT /_ctl/rules '[{"delay_ms":300}]' >/dev/null
publisher 401 600 &
ppid=$!
pids+=("$ppid")
while [ "$(delivered_ids "$a2" | awk '$1 > 400' | wc -l)" -lt 20 ]; do sleep 0.05; done
{ kill -KILL "$dpid"; wait "$dpid"; } 2>/dev/null
wait "$ppid"
held=$(fcli XPENDING fault faultapp | head -1)
echo "# daprd killed: $held entries pending in the group (delivered or queued, not acked)"
check "entries were unacked when daprd died" [ "${held:-0}" -gt 0 ]
appctl "$a2" PUT /_ctl/rules '[]' >/dev/null
start_daprd daprd2b faultapp "$a2" "$tmp/res2" fault || { fail "daprd restarts"; finish; }

want=$(awk '$2 == 204 {print $1}' "$tmp/published" | sort -n | uniq)
n_want=$(echo "$want" | wc -l)
for _ in $(seq 600); do
    got=$(delivered_ids "$a2")
    missing=$(comm -23 <(echo "$want" | sort) <(echo "$got" | awk '{print $1}' | sort))
    [ -z "$missing" ] && [ "$(fcli XPENDING fault faultapp | head -1)" = 0 ] && break
    sleep 0.1
done
got=$(delivered_ids "$a2")
n_missing=$(echo -n "$missing" | grep -c .)
n_got=$(echo "$got" | grep -c .)
dups=$(echo "$got" | awk '$2 > 1' | wc -l)
extra=$(comm -13 <(echo "$want" | sort) <(echo "$got" | awk '{print $1}' | sort) | grep -c .)
echo "# ids published with 204: $n_want; delivered: $n_got distinct ($dups more than once," \
     "$extra whose publish had failed); lost: $n_missing"
check "nothing lost: every id published with 204 reached the app" [ "$n_missing" -eq 0 ]
check "the unacked entries were redelivered after the restart (duplicates: $dups)" [ "$dups" -gt 0 ]
check "nothing left pending: XPENDING fault faultapp is 0" [ "$(fcli XPENDING fault faultapp | head -1)" = 0 ]
check "the stream survived the restart (XLEN >= $n_want)" [ "$(fcli XLEN fault)" -ge "$n_want" ]
check "daprd logged the outage and the reconnect" \
    eval 'grep -q "reconnecting" "$tmp/daprd2.log" && grep -q "reconnected" "$tmp/daprd2.log"'
kill -TERM "$dpid" 2>/dev/null
wait "$dpid"
rc=$?
check "the restarted daprd stops cleanly on SIGTERM (exit $rc, no sanitizer report)" \
    eval '[ "$rc" -eq 0 ] && ! grep -Eq "Sanitizer|runtime error" "$tmp/daprd2b.log"'

finish
