#!/bin/bash
# t/kafka/real-broker.sh - pubsub.kafka against a real Apache Kafka broker
# (KRaft mode, one node), for what librdkafka's mock cluster cannot show:
# SASL and TLS logins and real topic auto-creation.
#
# Kafka is not in Debian: the broker's jars come from Maven Central through
# mvn (t/kafka/kafka-broker.pom), cached in the build tree
# (t/kafka/jars) so that a second run does not download again.  Skipped
# (exit 77) when java, mvn or openssl are missing, the download fails, or
# the plugin is not built.
#
# The broker listens on 127.0.0.1 with SASL_PLAINTEXT (PLAIN and
# SCRAM-SHA-256 users), SSL with client certificates required, and plain
# SSL, with a CA and certificates made here by openssl.  Checks:
#   1. the conformance kit's pub/sub suite over SASL PLAIN (authType
#      password) with the default initialOffset=newest, on topics that do
#      not exist before they are subscribed (the plugin creates them, as
#      the broker allows auto-creation);
#   2. SCRAM-SHA-256 (saslMechanism SHA-256); wrong passwords fail init
#      naming the cause and never show the password;
#   3. authType mtls (caCert, clientCert, clientKey), certificate (caCert
#      only) and skipVerify round trips; a wrong CA fails init.

set -u
srcdir=${srcdir:-${0%/*}/../..}
builddir=$PWD
CONFORMANCE=${CONFORMANCE:-$builddir/plugin-sdk/conformance/dapr-plugin-conformance}
PLUGIN=${PLUGIN_DIR:-$builddir/plugins/pubsub-kafka/.libs}/pubsub-kafka.so
CLIENT=$builddir/t/kafka/kafka-client
JARS=${KAFKA_JARS:-$builddir/t/kafka/jars}

for c in java mvn openssl timeout python3; do
    if ! command -v "$c" >/dev/null 2>&1; then
        echo "SKIP: $c not found (apt-get install -y default-jre-headless maven openssl)"
        exit 77
    fi
done
if [ ! -f "$PLUGIN" ] || [ ! -x "$CLIENT" ]; then
    echo "SKIP: pubsub-kafka.so or kafka-client is not built"
    exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/dapr-kafka-real.XXXXXX") || exit 99
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
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# ---- the broker's jars ----------------------------------------------------
if [ ! -f "$JARS/.complete" ]; then
    t0=$(date +%s%N)
    mkdir -p "$JARS"
    if ! timeout 600 mvn -q -B -f "$srcdir/t/kafka/kafka-broker.pom" dependency:copy-dependencies \
            -DoutputDirectory="$JARS" >"$tmp/mvn.log" 2>&1; then
        echo "SKIP: cannot fetch Apache Kafka from Maven Central:"
        tail -5 "$tmp/mvn.log"
        exit 77
    fi
    touch "$JARS/.complete"
    echo "# fetched $(ls "$JARS" | wc -l) jars ($(du -sh "$JARS" | cut -f1)) in $(ms_since "$t0") ms"
fi

# ---- certificates ----------------------------------------------------------
certs=$tmp/certs
mkdir -p "$certs"
mkcert() { # NAME CN [SAN]
    openssl req -newkey rsa:2048 -nodes -keyout "$certs/$1.key" -out "$certs/$1.csr" -subj "/CN=$2" 2>/dev/null &&
    if [ -n "${3:-}" ]; then printf 'subjectAltName=%s\n' "$3" >"$certs/$1.ext"; else : >"$certs/$1.ext"; fi &&
    openssl x509 -req -in "$certs/$1.csr" -CA "$certs/ca.pem" -CAkey "$certs/ca.key" -CAcreateserial \
        -out "$certs/$1.pem" -days 2 -extfile "$certs/$1.ext" 2>/dev/null
}
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$certs/ca.key" -out "$certs/ca.pem" -days 2 \
    -subj /CN=dapr-test-ca 2>/dev/null &&
mkcert server localhost "IP:127.0.0.1,DNS:localhost" && mkcert client dapr-client &&
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$certs/other.key" -out "$certs/other.pem" -days 2 \
    -subj /CN=some-other-ca 2>/dev/null || { echo "openssl failed"; exit 99; }
cat "$certs/server.key" "$certs/server.pem" >"$certs/server-store.pem"

# ---- the broker --------------------------------------------------------------
p_plain=$(free_port); p_sasl=$(free_port); p_mtls=$(free_port); p_tls=$(free_port); p_ctl=$(free_port)
secret='S3cret-Kafka!pw'
mkdir -p "$tmp/kafka"
cat >"$tmp/kafka/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$p_ctl
listeners=PLAINTEXT://127.0.0.1:$p_plain,SASL_PLAINTEXT://127.0.0.1:$p_sasl,MTLS://127.0.0.1:$p_mtls,TLS://127.0.0.1:$p_tls,CONTROLLER://127.0.0.1:$p_ctl
advertised.listeners=PLAINTEXT://127.0.0.1:$p_plain,SASL_PLAINTEXT://127.0.0.1:$p_sasl,MTLS://127.0.0.1:$p_mtls,TLS://127.0.0.1:$p_tls
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,MTLS:SSL,TLS:SSL,CONTROLLER:PLAINTEXT
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_dapr="$secret";
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PEM
ssl.keystore.location=$certs/server-store.pem
ssl.truststore.type=PEM
ssl.truststore.location=$certs/ca.pem
listener.name.mtls.ssl.client.auth=required
listener.name.tls.ssl.client.auth=none
log.dirs=$tmp/kafka/data
num.partitions=4
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
message.max.bytes=2097152
EOF
cat >"$tmp/kafka/log4j.properties" <<'EOF'
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
jvm=(java -Xms256m -Xmx512m -Dlog4j.configuration="file:$tmp/kafka/log4j.properties" -cp "$JARS/*")
t0=$(date +%s%N)
cluster_id=$("${jvm[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null)
if ! "${jvm[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$tmp/kafka/server.properties" \
        --add-scram "SCRAM-SHA-256=[name=dapr,password=$secret]" >"$tmp/kafka/format.log" 2>&1; then
    echo "formatting the broker's storage failed:"; tail -5 "$tmp/kafka/format.log"; exit 99
fi
"${jvm[@]}" kafka.Kafka "$tmp/kafka/server.properties" >"$tmp/kafka/broker.log" 2>&1 &
pids+=($!)
up=0
for _ in $(seq 600); do
    if (echo >"/dev/tcp/127.0.0.1/$p_sasl") 2>/dev/null; then up=1; break; fi
    sleep 0.05
done
[ "$up" = 1 ] || { echo "the Kafka broker did not start:"; tail -20 "$tmp/kafka/broker.log"; exit 99; }
echo "# Kafka broker (KRaft, $(ls "$JARS" | grep -o '^kafka_2.13-[0-9.]*[0-9]' | head -1)) listening after $(ms_since "$t0") ms"

client() { timeout -s KILL 60 "$CLIENT" "$@"; }
sasl=(--meta "brokers=127.0.0.1:$p_sasl" --meta authType=password --meta saslUsername=dapr
      --meta "saslPassword=$secret" --meta disableTls=true)

# ---------------------------------------------------------------- 1 -----
t0=$(date +%s%N)
timeout -s KILL 200 "$CONFORMANCE" --verbose --timeout 20 --redelivery-wait 1 --no-ordering \
    --metadata "brokers=127.0.0.1:$p_sasl" --metadata authType=password --metadata saslUsername=dapr \
    --metadata "saslPassword=$secret" --metadata disableTls=true \
    --metadata maxMessageBytes=2000000 --metadata consumeRetryInterval=50ms \
    "$PLUGIN" >"$tmp/kit.out" 2>&1
rc=$?
grep -E '^not ok|passed' "$tmp/kit.out"
check "conformance kit (pub/sub suite) over SASL PLAIN, initialOffset newest, in $(ms_since "$t0") ms (exit $rc)" \
    [ "$rc" -eq 0 ] || grep -Ev "plugin (debug|info)" "$tmp/kit.out" | tail -20
check "subscribed topics that did not exist were created (the broker allows auto-creation)" \
    grep -q "topic conformance-.*-roundtrip did not exist; created" "$tmp/kit.out"
check "the password appears nowhere in the kit's output" eval '! grep -qF "$secret" "$tmp/kit.out"'

# ---------------------------------------------------------------- 2 -----
out=$(client "${sasl[@]}" --meta saslMechanism=SHA-256 "$PLUGIN" publish scram 1 5 2>&1)
check "SCRAM-SHA-256 login: publish works" grep -q "PUBLISHED 5 FAILED 0" <<<"$out"
bad='Wr0ng-pass-xyzzy'
out=$(client --meta "brokers=127.0.0.1:$p_sasl" --meta authType=password --meta saslUsername=dapr \
    --meta "saslPassword=$bad" --meta disableTls=true "$PLUGIN" publish x 1 1 2>&1)
check "wrong PLAIN password: init fails naming the cause" \
    grep -q "INIT FAILED: .*Authentication failed: Invalid username or password" <<<"$out"
check "... and the password is printed nowhere" eval '! grep -qF "$bad" <<<"$out"'
out=$(client --meta "brokers=127.0.0.1:$p_sasl" --meta authType=password --meta saslUsername=dapr \
    --meta "saslPassword=$bad" --meta saslMechanism=SHA-256 --meta disableTls=true \
    "$PLUGIN" publish x 1 1 2>&1)
check "wrong SCRAM password: init fails naming the cause, password not shown" \
    eval 'grep -q "INIT FAILED: .*SCRAM-SHA-256" <<<"$out" && ! grep -qF "$bad" <<<"$out"'

# ---------------------------------------------------------------- 3 -----
# roundtrip NAME TOPIC [client args]: consume, publish 10 ids, all arrive.
roundtrip() {
    local name=$1 topic=$2
    shift 2
    "$CLIENT" "$@" --meta "consumerGroup=g-$name" "$PLUGIN" consume "$topic" \
        >"$tmp/$name.out" 2>"$tmp/$name.err" &
    local c=$!
    pids+=("$c")
    for _ in $(seq 400); do grep -q '^READY' "$tmp/$name.out" && break; sleep 0.05; done
    client "$@" "$PLUGIN" publish "$topic" 1 10 >"$tmp/$name.pub" 2>&1
    for _ in $(seq 200); do [ "$(grep -c '^MSG' "$tmp/$name.out")" -ge 10 ] && break; sleep 0.05; done
    kill -TERM "$c"
    timeout 20 tail --pid="$c" -f /dev/null
    grep -q "PUBLISHED 10 FAILED 0" "$tmp/$name.pub" && [ "$(grep -c '^MSG' "$tmp/$name.out")" -eq 10 ] ||
        { tail -n 3 "$tmp/$name.pub" "$tmp/$name.err"; return 1; }
}
ca=$(cat "$certs/ca.pem")
check "authType mtls (caCert, clientCert, clientKey): 10 ids round trip" \
    roundtrip mtls tls-mtls --meta "brokers=127.0.0.1:$p_mtls" --meta authType=mtls \
    --meta "caCert=$ca" --meta "clientCert=$(cat "$certs/client.pem")" \
    --meta "clientKey=$(cat "$certs/client.key")"
check "authType certificate (caCert only): 10 ids round trip" \
    roundtrip cert tls-cert --meta "brokers=127.0.0.1:$p_tls" --meta authType=certificate \
    --meta "caCert=$ca"
check "skipVerify without a CA: 10 ids round trip" \
    roundtrip skip tls-skip --meta "brokers=127.0.0.1:$p_tls" --meta authType=mtls --meta skipVerify=true
out=$(client --meta "brokers=127.0.0.1:$p_tls" --meta authType=certificate \
    --meta "caCert=$(cat "$certs/other.pem")" "$PLUGIN" publish x 1 1 2>/dev/null)
check "a CA that did not sign the broker's certificate: init fails naming the cause" \
    grep -Eq "INIT FAILED: .*(certificate verify failed|SSL handshake failed)" <<<"$out" ||
    echo "# got: $out"
out=$(client --meta "brokers=127.0.0.1:$p_mtls" --meta authType=certificate --meta "caCert=$ca" \
    "$PLUGIN" publish x 1 1 2>/dev/null)
check "no client certificate where the broker requires one: init fails" \
    grep -q "INIT FAILED" <<<"$out" || echo "# got: $out"

check "no sanitizer report" \
    eval '! cat "$tmp"/*.out "$tmp"/*.err 2>/dev/null | grep -Eq "Sanitizer|runtime error"'
finish
