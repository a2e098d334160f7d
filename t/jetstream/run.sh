#!/bin/bash
# t/jetstream/run.sh - pubsub.jetstream against a real nats-server -js.
#
# Starts nats-server (JetStream, file store in a temporary folder) on
# 127.0.0.1 and free ports, then checks, in order:
#   1. the conformance kit's pub/sub suite against the plugin, with a
#      stream "ALL" capturing every one-token subject (the kit's topics);
#      init failures (unreachable server, a server without JetStream, bad
#      metadata, a bad seedKey) give one clear line and never print
#      secrets; token auth (--auth) and mutual TLS (when openssl is here)
#      pass the kit too;
#   2. faults, plugin level (js_tool fault, a minimal host): nats-server
#      killed with SIGKILL mid-run and started again on the same port and
#      store folder: publishes fail cleanly while it is down and succeed
#      after, messages the app held unacked across the restart come back
#      (ackWait), and every id published OK is delivered;
#   3. one daprd with a pubsub.jetstream manifest: curl
#      /v1.0/publish/<name>/<topic> stores the CloudEvent in the stream,
#      the subscribed app gets it, the consumer ends with nothing pending;
#      the consumer deleted under the running subscription is created
#      again; a topic no stream captures gives a 500 naming the cause.
#
# `make check` runs it from the top build folder.  DAPRD, CONFORMANCE,
# PLUGIN_DIR and JS_TOOL may point at another build; KEEP_TMP=1 keeps the
# temporary folder (server and daprd logs).  Exit 77 when the
# plugin is not built or nats-server, curl or python3 is missing.

set -u
srcdir=${srcdir:-${0%/*}/../..}
builddir=$PWD
DAPRD=${DAPRD:-$builddir/core/daprd}
CONFORMANCE=${CONFORMANCE:-$builddir/plugin-sdk/conformance/dapr-plugin-conformance}
PLUGIN_DIR=${PLUGIN_DIR:-$builddir/plugins/pubsub-jetstream/.libs}
PLUGIN=$PLUGIN_DIR/pubsub-jetstream.so
JS_TOOL=${JS_TOOL:-$builddir/t/jetstream/js_tool}
APP=$srcdir/t/pubsub/pubsub_app.py

for c in nats-server curl python3; do
    if ! command -v "$c" >/dev/null 2>&1; then
        echo "SKIP: $c not found (apt-get install -y nats-server curl python3)"
        exit 77
    fi
done
if [ ! -f "$PLUGIN" ] || [ ! -x "$JS_TOOL" ]; then
    echo "SKIP: $PLUGIN or $JS_TOOL is not built (configure did not find libnats)"
    exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/dapr-jetstream.XXXXXX") || exit 99
pids=()
failures=0
passes=0
cleanup() {
    local p f
    for p in "${pids[@]}"; do
        { kill -KILL "$p"; wait "$p"; } 2>/dev/null
    done
    # nats-servers started by natsctl (also from js_tool) are not children.
    for f in "$tmp"/*.pid; do
        [ -f "$f" ] && kill -KILL "$(cat "$f")" 2>/dev/null
    done
    if [ -n "${KEEP_TMP:-}" ]; then echo "# kept $tmp"; else rm -rf "$tmp"; fi
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

# natsctl start NAME PORT MPORT [nats-server args...] | natsctl kill NAME
# A script rather than functions so that js_tool can run it too.  The
# store folder ($tmp/NAME.store) survives a kill, so a start after it
# finds the streams, consumers and messages again.  max_payload is raised
# for the kit's 1 MiB message (plus headers).
cat >"$tmp/natsctl" <<EOF
#!/bin/bash
tmp='$tmp'
cmd=\$1 name=\$2
case \$cmd in
kill)
    pid=\$(cat "\$tmp/\$name.pid" 2>/dev/null) || exit 0
    kill -KILL "\$pid" 2>/dev/null
    while kill -0 "\$pid" 2>/dev/null; do sleep 0.02; done
    rm -f "\$tmp/\$name.pid"
    ;;
start)
    port=\$3 mport=\$4
    shift 4
    echo 'max_payload: 4MB' >"\$tmp/\$name.conf"
    nats-server -c "\$tmp/\$name.conf" -a 127.0.0.1 -p "\$port" -m "\$mport" "\$@" \\
        >>"\$tmp/\$name.log" 2>&1 </dev/null &
    echo \$! >"\$tmp/\$name.pid"
    q=
    case " \$* " in *" -js "*) q='?js-enabled=true' ;; esac
    for _ in \$(seq 300); do
        curl -s --max-time 1 "http://127.0.0.1:\$mport/healthz\$q" 2>/dev/null | grep -q '"ok"' && exit 0
        kill -0 \$! 2>/dev/null || break
        sleep 0.02
    done
    echo "nats-server \$name did not start:" >&2
    tail -20 "\$tmp/\$name.log" >&2
    exit 1
    ;;
esac
EOF
chmod +x "$tmp/natsctl"

# Bound every kit run: the kit has its own per-operation timeout too.
kit() { timeout -s KILL 150 "$CONFORMANCE" --timeout 10 "$@" "$PLUGIN"; }

# ---------------------------------------------------------------- 1 -----
port=$(free_port) mport=$(free_port)
url=nats://127.0.0.1:$port
"$tmp/natsctl" start main "$port" "$mport" -js -sd "$tmp/main.store" || exit 99
"$JS_TOOL" stream-add "$url" ALL '*' || exit 99
t0=$(date +%s%N)
out=$(kit --metadata "natsURL=$url" 2>&1)
rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
echo "$out" | grep -E '^not ok|passed' | tail -5
check "conformance kit (pub/sub suite) passes against nats-server -js in $ms ms (exit $rc)" [ "$rc" -eq 0 ]
consumers=$(curl -s "http://127.0.0.1:$mport/jsz?consumers=true" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(d.get("consumers", 0))')
echo "# durable consumers the kit left on the server: $consumers (one per topic and subscription slot)"

out=$(kit --metadata natsURL=nats://127.0.0.1:1 2>&1)
check "unreachable server: init fails naming the URL and the cause" \
    grep -Eq "cannot connect to NATS at nats://127.0.0.1:1: .*refused" <<<"$out"
pw='Sup3r-S3cret-pw'
out=$(kit --metadata "natsURL=nats://dapr:$pw@127.0.0.1:1" 2>&1)
check "credentials in natsURL are not printed (shown as ***)" \
    eval '! grep -q "$pw" <<<"$out" && grep -q "nats://\*\*\*@127.0.0.1:1" <<<"$out"'
nport=$(free_port) nmport=$(free_port)
"$tmp/natsctl" start nojs "$nport" "$nmport" || exit 99
out=$(kit --metadata "natsURL=nats://127.0.0.1:$nport" 2>&1)
check "a server without -js: init fails saying JetStream is not available" \
    grep -q "JetStream is not available on the NATS server at nats://127.0.0.1:$nport" <<<"$out"
"$tmp/natsctl" kill nojs
out=$(kit --metadata "natsURL=$url" --metadata deliverPolicy=sometimes 2>&1)
check "a bad deliverPolicy fails init naming the field" grep -q "deliverPolicy 'sometimes'" <<<"$out"
out=$(kit --metadata "natsURL=$url" --metadata ackWait=soon 2>&1)
check "a bad ackWait fails init naming the field" grep -q "ackWait" <<<"$out"
seed='SUNOTAVALIDSEEDATALLXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX'
out=$(kit --metadata "natsURL=$url" --metadata jwt=eyJhbGciOiJlZDI1NTE5In0.e30.x --metadata "seedKey=$seed" 2>&1)
check "a bad seedKey fails init, and is not printed" \
    eval 'grep -q "seedKey is not a valid" <<<"$out" && ! grep -q "$seed" <<<"$out"'
out=$(kit --metadata "natsURL=$url" --metadata jwt=x 2>&1)
check "jwt without seedKey fails init" grep -q "seedKey is missing" <<<"$out"

# Token authentication.
tport=$(free_port) tmport=$(free_port)
token='t0ken-Secr3t-xyzzy'
"$tmp/natsctl" start tok "$tport" "$tmport" -js -sd "$tmp/tok.store" --auth "$token" || exit 99
"$JS_TOOL" stream-add "nats://$token@127.0.0.1:$tport" ALL '*' || exit 99
out=$(kit --metadata "natsURL=nats://127.0.0.1:$tport" --metadata "token=$token" \
    --skip "10000 messages" 2>&1)
rc=$?
echo "$out" | grep -E '^not ok|passed' | tail -3
check "kit passes with token auth against nats-server --auth (exit $rc)" [ "$rc" -eq 0 ]
bad='Wr0ng-t0ken-plugh'
out=$(kit --metadata "natsURL=nats://127.0.0.1:$tport" --metadata "token=$bad" 2>&1)
check "wrong token: init fails (authorization) and the token is not printed" \
    eval 'grep -qi "authorization" <<<"$out" && ! grep -q "$bad" <<<"$out"'
"$tmp/natsctl" kill tok

# Mutual TLS with a CA made here.
if command -v openssl >/dev/null 2>&1; then
    pki=$tmp/pki
    mkdir -p "$pki"
    (
        cd "$pki" || exit 1
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca -keyout ca.key -out ca.pem
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >san.ext
        openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
            -extfile san.ext -out server.pem
        openssl req -newkey rsa:2048 -nodes -subj /CN=dapr-client -keyout client.key -out client.csr
        openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out client.pem
    ) >"$tmp/pki.log" 2>&1 || { cat "$tmp/pki.log"; exit 99; }
    sport=$(free_port) smport=$(free_port)
    "$tmp/natsctl" start tls "$sport" "$smport" -js -sd "$tmp/tls.store" --tlsverify \
        --tlscert "$pki/server.pem" --tlskey "$pki/server.key" --tlscacert "$pki/ca.pem" || exit 99
    tlsmeta=(--metadata "natsURL=tls://127.0.0.1:$sport" --metadata "tls_ca_cert=$pki/ca.pem"
             --metadata "tls_client_cert=$pki/client.pem" --metadata "tls_client_key=$pki/client.key"
             --metadata streamName=TLSALL)
    JS_CA=$pki/ca.pem JS_CERT=$pki/client.pem JS_KEY=$pki/client.key \
        "$JS_TOOL" stream-add "tls://127.0.0.1:$sport" TLSALL '*' || exit 99
    out=$(kit "${tlsmeta[@]}" --skip "10000 messages" 2>&1)
    rc=$?
    echo "$out" | grep -E '^not ok|passed' | tail -3
    check "kit passes over mutual TLS (tls_ca_cert, tls_client_cert/key) (exit $rc)" [ "$rc" -eq 0 ]
    out=$(kit --metadata "natsURL=tls://127.0.0.1:$sport" --metadata "tls_ca_cert=$pki/ca.pem" 2>&1)
    check "TLS without a client certificate on a --tlsverify server: init fails" \
        grep -q "cannot connect to NATS at tls://127.0.0.1:$sport" <<<"$out"
    "$tmp/natsctl" kill tls
else
    echo "# openssl not found: TLS not tested"
fi

# ---------------------------------------------------------------- 2 -----
fport=$(free_port) fmport=$(free_port)
"$tmp/natsctl" start fault "$fport" "$fmport" -js -sd "$tmp/fault.store" || exit 99
"$JS_TOOL" stream-add "nats://127.0.0.1:$fport" FAULT fault || exit 99
t0=$(date +%s%N)
timeout -s KILL 90 "$JS_TOOL" fault "$PLUGIN" "nats://127.0.0.1:$fport" \
    "'$tmp/natsctl' kill fault" \
    "'$tmp/natsctl' start fault $fport $fmport -js -sd '$tmp/fault.store'" \
    >"$tmp/fault.out" 2>"$tmp/fault.err"
rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
cat "$tmp/fault.out"
val() {
    local v
    v=$(sed -n "s/.*\\b$1=\\([0-9]*\\).*/\\1/p" "$tmp/fault.out")
    echo "${v:-0}"
}
check "fault run completed in $ms ms (exit $rc)" [ "$rc" -eq 0 ]
check "publishes failed while nats-server was down ($(val published_failed) of them)" \
    eval '[ "$(val published_failed)" -gt 0 ]'
check "... cleanly and fast (slowest failure $(val slowest_failure_ms) ms < 3000)" \
    eval '[ "$(val slowest_failure_ms)" -lt 3000 ]'
check "publishes succeed after the restart (last 51 ids: $(val last50_ok) ok)" \
    eval '[ "$(val last50_ok)" -eq 51 ]'
check "the app held $(val held) messages unacked across the restart; all redelivered after ackWait" \
    eval '[ "$(val held)" -gt 0 ] && [ "$(val held_redelivered)" -eq "$(val held)" ]'
check "nothing lost: every id published OK ($(val published_ok)) was delivered" \
    eval '[ "$(val lost)" -eq 0 ] && [ "$(val published_ok)" -gt 300 ]'
cinfo=$("$JS_TOOL" consumer "nats://127.0.0.1:$fport" FAULT faulttest_fault 2>&1)
echo "# consumer faulttest_fault after the run: $cinfo"
check "the durable pull consumer ends with nothing pending or unacked" \
    grep -q "pending=0 ack_pending=0 .*pull=1" <<<"$cinfo"
check "the plugin logged the outage and the reconnect" \
    eval 'grep -q "lost the connection to NATS" "$tmp/fault.err" && grep -q "reconnected to NATS" "$tmp/fault.err"'
if grep -Eq "Sanitizer|runtime error" "$tmp/fault.err"; then
    fail "sanitizer report in the fault run"
    cat "$tmp/fault.err"
fi

# ---------------------------------------------------------------- 3 -----
if [ ! -x "$DAPRD" ] || [ ! -f "$APP" ]; then
    fail "daprd ($DAPRD) or the test app ($APP) is missing"
    finish
fi
"$JS_TOOL" stream-add "$url" ORDERS 'orders.*' || exit 99
mkdir -p "$tmp/res"
cat >"$tmp/res/pubsub.yaml" <<EOF
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: jetstream-pubsub
spec:
  type: pubsub.jetstream
  version: v1
  metadata:
  - name: natsURL
    value: "$url"
  - name: name
    value: daprd-jetstream-test
  - name: deliverPolicy
    value: all
  - name: ackWait
    value: 10s
  - name: maxDeliver
    value: 5
  - name: ackPolicy
    value: explicit
EOF
python3 "$APP" --port 0 --name app1 >"$tmp/app1.out" 2>"$tmp/app1.err" &
app_pid=$!
pids+=("$app_pid")
for _ in $(seq 200); do
    aport=$(sed -n 's/^PORT //p' "$tmp/app1.out" 2>/dev/null)
    [ -n "$aport" ] && break
    sleep 0.05
done
[ -n "${aport:-}" ] || { fail "test app did not start"; finish; }
curl -s -o /dev/null -X PUT -H 'Content-Type: application/json' \
    -d '{"status":200,"body":[{"pubsubname":"jetstream-pubsub","topic":"orders.new","route":"/orders"}]}' \
    "http://127.0.0.1:$aport/_ctl/subscribe"
started=0
for attempt in 1 2 3; do
    dport=$(free_port)
    "$DAPRD" --app-id jsapp --app-port "$aport" --dapr-http-port "$dport" \
        --dapr-internal-grpc-port 0 --dapr-listen-addresses 127.0.0.1 \
        --resources-path "$tmp/res" --plugins-dir "$PLUGIN_DIR" --log-level debug \
        >>"$tmp/daprd.log" 2>&1 &
    dpid=$!
    pids+=("$dpid")
    for _ in $(seq 300); do
        grep -q "subscribed to topic orders.new " "$tmp/daprd.log" && { started=1; break; }
        kill -0 "$dpid" 2>/dev/null || break
        sleep 0.05
    done
    [ "$started" = 1 ] && break
    grep -q "address already in use" "$tmp/daprd.log" || break
done
if [ "$started" != 1 ]; then
    fail "daprd loads pubsub.jetstream and subscribes"
    tail -30 "$tmp/daprd.log"
    finish
fi
ok "daprd loads pubsub.jetstream and subscribes to orders.new"
code=$(curl -s -o "$tmp/pub.body" -w '%{http_code}' --max-time 10 -H 'Content-Type: application/json' \
    -d '{"id":1,"item":"book"}' "http://127.0.0.1:$dport/v1.0/publish/jetstream-pubsub/orders.new")
check "curl /v1.0/publish/jetstream-pubsub/orders.new: 204" [ "$code" = 204 ]
check "the CloudEvent is stored in stream ORDERS" [ "$("$JS_TOOL" stream-msgs "$url" ORDERS)" = 1 ]
# delivered_items: "item topic pubsubname source" per delivery.
delivered_items() {
    curl -s "http://127.0.0.1:$aport/_ctl/deliveries" | python3 -c '
import base64, json, sys
for d in json.load(sys.stdin):
    ev = json.loads(base64.b64decode(d["body_b64"]))
    print(ev["data"]["item"], ev["topic"], ev["pubsubname"], ev["source"])' 2>/dev/null
}
got=
for _ in $(seq 100); do
    got=$(delivered_items)
    [ -n "$got" ] && break
    sleep 0.05
done
check "the app received it through JetStream ($got)" [ "$got" = "book orders.new jetstream-pubsub jsapp" ]
# Consumer name: <app id>_<subject with "." made "_">_<FNV-1a of the subject>.
cname=jsapp_orders_new_$(python3 -c '
h = 2166136261
for c in b"orders.new":
    h = ((h ^ c) * 16777619) & 0xffffffff
print("%08x" % h)')
cinfo=
for _ in $(seq 100); do
    cinfo=$("$JS_TOOL" consumer "$url" ORDERS "$cname" 2>&1)
    grep -q "pending=0 ack_pending=0" <<<"$cinfo" && break
    sleep 0.05
done
check "durable consumer jsapp_orders_new_<hash> acked after the app's 200 ($cinfo)" \
    grep -q "pending=0 ack_pending=0 .*pull=1" <<<"$cinfo"
# An operator deletes the consumer under the running subscription: the
# plugin creates it again (deliverPolicy all: from the stream's start, so
# "book" comes again too) and "pen" arrives.
"$JS_TOOL" consumer-delete "$url" ORDERS "$cname" || fail "cannot delete consumer $cname"
code=$(curl -s -o "$tmp/pub.body" -w '%{http_code}' --max-time 10 -H 'Content-Type: application/json' \
    -d '{"id":2,"item":"pen"}' "http://127.0.0.1:$dport/v1.0/publish/jetstream-pubsub/orders.new")
for _ in $(seq 200); do
    items=$(delivered_items)
    grep -q pen <<<"$items" && break
    sleep 0.05
done
check "consumer deleted under the subscription: created again, the next message arrives ($(echo $items))" \
    eval 'grep -q pen <<<"$items" && grep -q "consumer created again" "$tmp/daprd.log"'
code=$(curl -s -o "$tmp/pub.body" -w '%{http_code}' --max-time 10 -H 'Content-Type: application/json' \
    -d '{"id":3}' "http://127.0.0.1:$dport/v1.0/publish/jetstream-pubsub/no.stream.here")
check "a topic no stream captures: 500 naming the cause" \
    eval '[ "$code" = 500 ] && grep -q "no JetStream stream captures subject" "$tmp/pub.body"'
kill -TERM "$dpid" 2>/dev/null
wait "$dpid"
rc=$?
check "daprd stops cleanly on SIGTERM (exit $rc, no sanitizer report)" \
    eval '[ "$rc" -eq 0 ] && ! grep -Eq "Sanitizer|runtime error" "$tmp/daprd.log"'

finish
