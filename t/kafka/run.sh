#!/bin/bash
# t/kafka/run.sh - pubsub.kafka against librdkafka's mock Kafka cluster.
#
# Debian has no Kafka broker; t/kafka/mock-cluster runs librdkafka's mock
# cluster (3 brokers on 127.0.0.1, the Kafka protocol over TCP, consumer
# groups and committed offsets included).  Two are started: one for the
# conformance kit, which runs in the background meanwhile, one for the
# rest (its brokers are taken down on purpose).  Checks:
#   1. the conformance kit's pub/sub suite (publish order is only kept per
#      partition, as with Dapr, hence --no-ordering; see section 4);
#   2. init failures: unreachable broker, SASL against a broker without
#      it (the password never printed), TLS against a plaintext broker,
#      a missing authType -- each naming brokers and cause;
#   3. restart: consumer A gets 200 ids and acks 1..100 plus every third
#      id, holding the rest; a rebalance (A subscribes a second topic)
#      must not deliver anything to A twice; A is killed (SIGKILL);
#      consumer B of the same group must get every id A did not ack
#      (nothing lost) and none of 1..100 (their offsets were committed,
#      contiguously per partition); ids acked out of order behind a held
#      one come again;
#   4. partitionKey: 100 ids with one key reach a max_in_flight 1
#      consumer in publish order, with key, content type and headers;
#   5. outage: every broker taken down for 2 s while publishing and
#      consuming: every publish succeeds once they are back, every id
#      arrives, and the outage is logged;
#   6. daprd with a pubsub.kafka manifest: curl /v1.0/publish/<name>/<topic>
#      reaches the app as a CloudEvent; a RETRY answered by the app comes
#      back; SIGTERM stops daprd cleanly.
#
# The mock cluster needs about 3 s for every consumer group (re)join, and
# a member killed without leaving holds its group for sessionTimeout:
# the tests use sessionTimeout=4s (above the mock's 3 s join delay).
#
# `make check` runs it from the top build folder.  Exit 77 when the plugin
# is not built (configure found no librdkafka) or curl/python3 are missing.

set -u
srcdir=${srcdir:-${0%/*}/../..}
builddir=$PWD
DAPRD=${DAPRD:-$builddir/core/daprd}
CONFORMANCE=${CONFORMANCE:-$builddir/plugin-sdk/conformance/dapr-plugin-conformance}
PLUGIN_DIR=${PLUGIN_DIR:-$builddir/plugins/pubsub-kafka/.libs}
PLUGIN=$PLUGIN_DIR/pubsub-kafka.so
MOCK=$builddir/t/kafka/mock-cluster
CLIENT=$builddir/t/kafka/kafka-client
APP=$srcdir/t/pubsub/pubsub_app.py

for c in curl python3 timeout; do
    if ! command -v "$c" >/dev/null 2>&1; then
        echo "SKIP: $c not found (apt-get install -y curl python3 coreutils)"
        exit 77
    fi
done
if [ ! -f "$PLUGIN" ] || [ ! -x "$MOCK" ] || [ ! -x "$CLIENT" ]; then
    echo "SKIP: pubsub-kafka.so or the test helpers are not built (configure did not find librdkafka)"
    exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/dapr-kafka.XXXXXX") || exit 99
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
    if "$@"; then ok "$what"; else fail "$what"; return 1; fi
}
finish() {
    echo "# $passes passed, $failures failed"
    [ "$failures" -eq 0 ]
    exit
}
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

# start_mock NAME: start a mock cluster, set mock_pid and bootstrap.
start_mock() {
    "$MOCK" >"$tmp/$1.out" 2>"$tmp/$1.err" &
    mock_pid=$!
    pids+=("$mock_pid")
    for _ in $(seq 100); do
        bootstrap=$(sed -n 's/^BOOTSTRAP //p' "$tmp/$1.out")
        [ -n "$bootstrap" ] && return 0
        kill -0 "$mock_pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "mock cluster $1 did not start:"
    cat "$tmp/$1.err"
    return 1
}

group_meta=(--meta sessionTimeout=4s --meta heartbeatInterval=500ms)

# ---------------------------------------------------------------- 1 -----
start_mock mock-kit || exit 99
kit_bootstrap=$bootstrap
t_kit=$(date +%s%N)
# oldest: a subscription completes without waiting for the group to
# settle (nothing published later can be missed), which saves a join per
# test; the newest path is what sections 3-6 use.
timeout -s KILL 170 "$CONFORMANCE" --verbose --timeout 20 --redelivery-wait 1 --no-ordering \
    --metadata "brokers=$kit_bootstrap" --metadata authType=none \
    --metadata sessionTimeout=4s --metadata heartbeatInterval=500ms \
    --metadata initialOffset=oldest --metadata maxMessageBytes=2097152 \
    --metadata consumeRetryInterval=50ms \
    "$PLUGIN" >"$tmp/kit.out" 2>&1 &
kit_pid=$!
pids+=("$kit_pid")

start_mock mock || exit 99
mock_bs=$bootstrap
base=(--meta "brokers=$mock_bs" --meta authType=none "${group_meta[@]}")
client() { timeout -s KILL 60 "$CLIENT" "$@"; }

# ---------------------------------------------------------------- 2 -----
out=$(client --meta brokers=127.0.0.1:1 --meta authType=none "$PLUGIN" publish t 1 1 2>/dev/null)
check "unreachable broker: init fails naming broker and cause" \
    grep -Eq "INIT FAILED: kafka: cannot connect to brokers 127.0.0.1:1: .*Connection refused" <<<"$out"
secret='Zekr3t-Pw!q'
out=$(client --meta "brokers=$mock_bs" --meta authType=password --meta saslUsername=dapr \
    --meta "saslPassword=$secret" --meta disableTls=true "$PLUGIN" publish t 1 1 2>&1)
check "SASL against a broker without SASL: init fails naming the cause" \
    grep -q "INIT FAILED: .*SASL" <<<"$out"
check "... and the password is printed nowhere (stdout and every log line)" \
    eval '! grep -qF "$secret" <<<"$out"'
out=$(client --meta "brokers=$mock_bs" --meta authType=mtls "$PLUGIN" publish t 1 1 2>/dev/null)
check "TLS against a plaintext broker: init fails naming the cause" \
    grep -Eq "INIT FAILED: kafka: cannot connect to brokers .*ssl://.*(SSL|TLS|ssl)" <<<"$out" ||
    echo "# got: $out"
out=$(client --meta "brokers=$mock_bs" "$PLUGIN" publish t 1 1 2>/dev/null)
check "no authType: init fails naming the field" grep -q "INIT FAILED: .*'authType'" <<<"$out"
out=$(client --meta "brokers=$mock_bs" --meta authType=none --meta initialOffset=latest \
    "$PLUGIN" publish t 1 1 2>/dev/null)
check "bad initialOffset: init fails naming the field" grep -q "INIT FAILED: .*initialOffset" <<<"$out"

# ---------------------------------------------------------------- 3 -----
# consume NAME TOPIC GROUP [args]: start a consumer, wait for READY; sets cpid.
consume() {
    local name=$1 topic=$2 group=$3
    shift 3
    "$CLIENT" "${base[@]}" --meta "consumerGroup=$group" "$PLUGIN" consume "$topic" "$@" \
        >"$tmp/$name.out" 2>"$tmp/$name.err" &
    cpid=$!
    pids+=("$cpid")
    for _ in $(seq 600); do
        grep -q '^READY' "$tmp/$name.out" && return 0
        kill -0 "$cpid" 2>/dev/null || break
        sleep 0.05
    done
    echo "consumer $name did not get ready:"
    tail -5 "$tmp/$name.err"
    return 1
}
# wait_msgs NAME N [SECONDS]: until NAME printed N MSG lines.
wait_msgs() {
    local limit=$(( ${3:-20} * 20 ))
    for _ in $(seq "$limit"); do
        [ "$(grep -c '^MSG' "$tmp/$1.out")" -ge "$2" ] && return 0
        sleep 0.05
    done
    return 1
}
ids_of() { awk '/^MSG/ {print $2}' "$tmp/$1.out" | sort -n; }
stop_client() {
    kill -TERM "$1" 2>/dev/null
    timeout 30 tail --pid="$1" -f /dev/null
    wait "$1"
}

t0=$(date +%s%N)
consume A restart rg --mif 1000 --hold --ack-upto 100 --ack-mod 3 \
    --extra restart-extra --extra-after 200 || { fail "consumer A starts"; finish; }
a_pid=$cpid
out=$(client "${base[@]}" "$PLUGIN" publish restart 1 200 --bulk 50 2>&1)
check "200 ids published (bulk publish, 50 per call)" grep -q "PUBLISHED 200 FAILED 0" <<<"$out"
wait_msgs A 200
check "consumer A received all 200" [ "$(ids_of A | uniq | wc -l)" -eq 200 ]
# A then subscribes to a second topic: a rebalance while it holds 67
# messages.  It gets its partitions back and must not receive anything
# twice.
for _ in $(seq 400); do grep -q '^EXTRA' "$tmp/A.out" && break; sleep 0.05; done
sleep 0.5
check "a rebalance while A holds unacked messages: nothing delivered to A twice ($(grep -c '^MSG' "$tmp/A.out") deliveries)" \
    eval 'grep -q "^EXTRA READY" "$tmp/A.out" && [ "$(grep -c "^MSG" "$tmp/A.out")" -eq 200 ] &&
          grep -q "kept from before the rebalance" "$tmp/A.err"'
sleep 0.5 # the acks' commits go out asynchronously
{ kill -KILL "$a_pid"; wait "$a_pid"; } 2>/dev/null
consume B restart rg || { fail "consumer B starts"; finish; }
b_pid=$cpid
seq 101 200 | awk '$1 % 3 != 0' >"$tmp/unacked"
for _ in $(seq 300); do
    [ -z "$(comm -23 "$tmp/unacked" <(ids_of B | uniq))" ] && break
    sleep 0.05
done
sleep 0.5
lost=$(comm -23 "$tmp/unacked" <(ids_of B | uniq) | wc -l)
early=$(ids_of B | awk '$1 <= 100' | wc -l)
again=$(ids_of B | uniq | awk '$1 > 100 && $1 % 3 == 0' | wc -l)
echo "# restart: A acked 133 of 200 and was killed; B got $(ids_of B | wc -l) deliveries:" \
     "$(( $(wc -l <"$tmp/unacked") - lost )) of the $(wc -l <"$tmp/unacked") unacked ids, $again acked" \
     "ids queued behind unacked ones, $early of the committed 1..100 ($(ms_since "$t0") ms)"
check "restart: nothing lost (every id A did not ack reached B)" [ "$lost" -eq 0 ]
check "restart: the contiguously acked 1..100 were committed (B got none of them)" [ "$early" -eq 0 ]
stop_client "$b_pid"
check "consumer B stops cleanly on SIGTERM" grep -q '^CLOSED' "$tmp/B.out"

# ---------------------------------------------------------------- 4 -----
consume K keyed kg --mif 1 || { fail "keyed consumer starts"; finish; }
k_pid=$cpid
out=$(client "${base[@]}" "$PLUGIN" publish keyed 1 100 --key customer-7 2>&1)
check "100 ids published with partitionKey" grep -q "PUBLISHED 100 FAILED 0" <<<"$out"
wait_msgs K 100
check "partitionKey + max_in_flight 1: publish order kept" \
    eval '[ "$(awk "/^MSG/ {print \$2}" "$tmp/K.out" | tr "\n" " ")" = "$(seq 1 100 | tr "\n" " ")" ]'
check "partitionKey: one partition, key in __key" \
    eval '[ "$(awk "/^MSG/ {print \$3, \$5}" "$tmp/K.out" | sort -u | wc -l)" -eq 1 ] &&
          grep -q "key=customer-7" "$tmp/K.out"'
check "content type and metadata headers come back (ct=application/json, trace=t<id>)" \
    eval 'awk "/^MSG/ && (\$6 != \"ct=application/json\" || \$7 != \"trace=t\" \$2) {bad++} END {exit bad}" "$tmp/K.out"'
stop_client "$k_pid"

# ---------------------------------------------------------------- 5 -----
consume O outage og || { fail "outage consumer starts"; finish; }
o_pid=$cpid
client "${base[@]}" "$PLUGIN" publish outage 1 60 --interval 50 >"$tmp/pub-outage.out" 2>"$tmp/pub-outage.err" &
p_pid=$!
pids+=("$p_pid")
wait_msgs O 15
kill -USR1 "$mock_pid"   # every broker down
t_down=$(date +%s%N)
sleep 2
kill -USR2 "$mock_pid"   # and up again
wait "$p_pid"
wait_msgs O 60 20
echo "# outage: brokers down 2 s; publisher: $(grep PUBLISHED "$tmp/pub-outage.out");" \
     "consumer got $(ids_of O | uniq | wc -l) distinct of 60 ($(ms_since "$t_down") ms after the outage began)"
check "outage: every publish succeeded once the brokers were back" \
    grep -q "PUBLISHED 60 FAILED 0" "$tmp/pub-outage.out" ||
    grep "kafka-client: publish" "$tmp/pub-outage.err"
check "outage: every id reached the consumer" [ "$(ids_of O | uniq | wc -l)" -eq 60 ]
check "outage: logged as brokers unreachable, then reachable again" \
    eval 'grep -q "is unreachable" "$tmp/O.err" && grep -q "receiving from brokers again" "$tmp/O.err"'
stop_client "$o_pid"

# ---------------------------------------------------------------- 6 -----
if [ ! -x "$DAPRD" ] || [ ! -f "$APP" ]; then
    fail "daprd ($DAPRD) or the test app ($APP) is missing"
else
    python3 "$APP" --port 0 --name app >"$tmp/app.out" 2>"$tmp/app.err" &
    pids+=($!)
    for _ in $(seq 200); do
        app_port=$(sed -n 's/^PORT //p' "$tmp/app.out")
        [ -n "$app_port" ] && break
        sleep 0.05
    done
    curl -s -o /dev/null -X PUT -H 'Content-Type: application/json' \
        -d '{"status":200,"body":[{"pubsubname":"kafka-pubsub","topic":"orders","route":"/orders"}]}' \
        "http://127.0.0.1:$app_port/_ctl/subscribe"
    mkdir -p "$tmp/res"
    cat >"$tmp/res/kafka.yaml" <<EOF
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: kafka-pubsub
spec:
  type: pubsub.kafka
  version: v1
  metadata:
  - name: brokers
    value: "$mock_bs"
  - name: authType
    value: "none"
  - name: sessionTimeout
    value: 4s
  - name: heartbeatInterval
    value: 500ms
  - name: consumeRetryInterval
    value: 100ms
EOF
    started=0
    for attempt in 1 2 3; do
        dport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
        "$DAPRD" --app-id kafkaapp --app-port "$app_port" --dapr-http-port "$dport" \
            --dapr-internal-grpc-port 0 --dapr-listen-addresses 127.0.0.1 \
            --resources-path "$tmp/res" --plugins-dir "$PLUGIN_DIR" --log-level debug \
            >>"$tmp/daprd.log" 2>&1 &
        dpid=$!
        pids+=("$dpid")
        for _ in $(seq 400); do
            grep -q "subscribed to topic orders " "$tmp/daprd.log" && { started=1; break; }
            kill -0 "$dpid" 2>/dev/null || break
            sleep 0.05
        done
        [ "$started" = 1 ] && break
        grep -q "address already in use" "$tmp/daprd.log" || break
    done
    if [ "$started" != 1 ]; then
        fail "daprd loads pubsub.kafka and subscribes to orders"
        tail -20 "$tmp/daprd.log"
    else
        ok "daprd loads pubsub.kafka and subscribes to orders"
        publish() {
            curl -s -o /dev/null -w '%{http_code}' --max-time 15 -H 'Content-Type: application/json' \
                -d "$2" "http://127.0.0.1:$dport/v1.0/publish/kafka-pubsub/orders$1"
        }
        # The app answers RETRY to id 3 four times (daprd retries locally,
        # then the plugin redelivers after consumeRetryInterval).
        curl -s -o /dev/null -X PUT -H 'Content-Type: application/json' \
            -d '[{"match":"\"id\":3","times":4,"json":{"status":"RETRY"}}]' \
            "http://127.0.0.1:$app_port/_ctl/rules"
        codes=""
        for i in 1 2 3 4 5; do codes="$codes$(publish "" "{\"id\":$i}")"; done
        codes="$codes$(publish "?metadata.partitionKey=k6" '{"id":6}')"
        check "curl POST /v1.0/publish/kafka-pubsub/orders: 204 for each of 6" \
            [ "$codes" = "204204204204204204" ]
        got=""
        for _ in $(seq 300); do
            got=$(curl -s --max-time 5 "http://127.0.0.1:$app_port/_ctl/deliveries" | python3 -c '
import base64, json, sys
ids, bad = {}, 0
for d in json.load(sys.stdin):
    ev = json.loads(base64.b64decode(d["body_b64"]))
    ok = ev.get("topic") == "orders" and ev.get("pubsubname") == "kafka-pubsub" \
        and ev.get("source") == "kafkaapp" and ev.get("specversion") == "1.0"
    bad += not ok
    i = ev["data"]["id"]
    ids[i] = ids.get(i, 0) + 1
print(" ".join("%d:%d" % (k, ids[k]) for k in sorted(ids)), "bad=%d" % bad)')
            case $got in 1:1\ 2:1\ 3:5\ 4:1\ 5:1\ 6:1\ bad=0) break ;; esac
            sleep 0.05
        done
        echo "# daprd: the app got (id:times) $got"
        check "the app received every event as a CloudEvent (topic, pubsubname, source)" \
            eval 'grep -Eq "^1:1 2:1 3:[0-9]+ 4:1 5:1 6:1 bad=0$" <<<"$got"'
        check "RETRY from the app: id 3 redelivered until it succeeded (5 deliveries)" \
            grep -q " 3:5 " <<<"$got"
        kill -TERM "$dpid"
        timeout 30 tail --pid="$dpid" -f /dev/null
        wait "$dpid"
        rc=$?
        check "daprd stops cleanly on SIGTERM (exit $rc, no sanitizer report)" \
            eval '[ "$rc" -eq 0 ] && ! grep -Eq "Sanitizer|runtime error" "$tmp/daprd.log"'
    fi
fi

# ---------------------------------------------------------------- 1 -----
wait "$kit_pid"
rc=$?
grep -E '^not ok|passed' "$tmp/kit.out"
grep '^ok.*SKIP' "$tmp/kit.out" | sed 's/^/# /'
check "conformance kit (pub/sub suite) passes against the mock cluster in $(ms_since "$t_kit") ms (exit $rc)" \
    [ "$rc" -eq 0 ]
[ "$rc" -eq 0 ] || grep -Ev "plugin (debug|info): librdkafka" "$tmp/kit.out" | tail -40
check "no sanitizer report from the kit or the clients" \
    eval '! cat "$tmp"/*.out "$tmp"/*.err | grep -Eq "Sanitizer|runtime error"' ||
    grep -El "Sanitizer|runtime error" "$tmp"/*.out "$tmp"/*.err | while read -r f; do
        echo "# in ${f##*/}:"; grep -EA12 "Sanitizer|runtime error|Direct leak" "$f" | head -60; done

finish
