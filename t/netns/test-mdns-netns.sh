#!/bin/sh
# test-mdns-netns.sh - nameresolution.mdns across two network namespaces.
#
#   ns A: veth 10.200.0.1/24, sidecar "alpha" on internal port 7001
#   ns B: veth 10.200.0.2/24, two sidecars "beta" on ports 7002 and 7003
#
# Checks: alpha resolves beta to both of B's instances (round-robin across
# namespaces); each beta resolves alpha to 10.200.0.1:7001 and resolves
# "beta" within its own namespace (two sidecars on one host hear each other
# through multicast loopback); after the betas withdraw (goodbye packets),
# alpha no longer resolves beta.  Then, in a third namespace with only a
# loopback interface (a container without multicast links), two sidecars
# on 127.0.0.1 find each other.
#
# Needs root and iproute2 with netns support: exits 77 (skipped) otherwise.
# The addresses exist only inside the namespaces made here.
set -u

[ "$(id -u)" = 0 ] || { echo "SKIP: needs root"; exit 77; }
command -v ip >/dev/null 2>&1 || { echo "SKIP: no ip (iproute2)"; exit 77; }

PEER=${MDNS_PEER:-./t/netns/mdns-peer}
PLUGIN=${MDNS_PLUGIN:-./plugins/nameresolution-mdns/.libs/nameresolution-mdns.so}
for f in "$PEER" "$PLUGIN"; do
    [ -e "$f" ] || { echo "FAIL: $f not built"; exit 1; }
done
PLUGIN=$(cd "$(dirname "$PLUGIN")" && pwd)/$(basename "$PLUGIN")

NSA=dapr-mdns-a-$$
NSB=dapr-mdns-b-$$
NSL=dapr-mdns-l-$$
TMP=$(mktemp -d)
PIDS=""

cleanup() {
    for p in $PIDS; do kill -KILL "$p" 2>/dev/null; done
    for p in $PIDS; do wait "$p" 2>/dev/null; done
    ip netns del "$NSA" 2>/dev/null
    ip netns del "$NSB" 2>/dev/null
    ip netns del "$NSL" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
    echo "FAIL: $*"
    for f in "$TMP"/*.out "$TMP"/*.err; do
        [ -s "$f" ] && { echo "--- $f"; cat "$f"; }
    done
    exit 1
}

if ! ip netns add "$NSA" 2>/dev/null; then
    echo "SKIP: cannot create network namespaces"
    exit 77
fi
ip netns add "$NSB" || fail "ip netns add $NSB"
ip -n "$NSA" link add veth0 type veth peer name veth1 netns "$NSB" ||
    fail "cannot create the veth pair"
for side in "$NSA veth0 10.200.0.1" "$NSB veth1 10.200.0.2"; do
    set -- $side
    ip -n "$1" link set lo up &&
    ip -n "$1" addr add "$3/24" dev "$2" &&
    ip -n "$1" link set "$2" multicast on up &&
    ip -n "$1" route add 224.0.0.0/4 dev "$2" ||
        fail "cannot configure $2 in $1"
done

# start NAME NS ARGS...: run a peer in the background, output in $TMP/NAME.*
start() {
    name=$1 ns=$2
    shift 2
    ip netns exec "$ns" "$PEER" "$PLUGIN" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
    PIDS="$PIDS $!"
    eval "PID_$name=$!"
}

# wait_for NAME PATTERN SECONDS
wait_for() {
    i=0
    while ! grep -q "$2" "$TMP/$1.out" 2>/dev/null; do
        i=$((i + 1))
        [ $i -gt $(($3 * 10)) ] && fail "$1: no '$2' within $3 s"
        sleep 0.1
    done
}

# The betas come first so that alpha's first query is answered by both.
start beta1 "$NSB" beta 10.200.0.2 7002 1 alpha beta
start beta2 "$NSB" beta 10.200.0.2 7003 1 alpha
wait_for beta1 ANNOUNCED 5
wait_for beta2 ANNOUNCED 5
start alpha "$NSA" alpha 10.200.0.1 7001 6 beta

for p in alpha beta1 beta2; do wait_for $p DONE 12; done

grep -q '^RESOLVED beta 10.200.0.2:7002$' "$TMP/alpha.out" ||
    fail "alpha did not resolve beta's instance on port 7002"
grep -q '^RESOLVED beta 10.200.0.2:7003$' "$TMP/alpha.out" ||
    fail "alpha did not resolve beta's instance on port 7003"
[ "$(grep -c '^RESOLVED beta 10.200.0.2:700[23]$' "$TMP/alpha.out")" = 6 ] ||
    fail "alpha resolved something else"
for b in beta1 beta2; do
    grep -q '^RESOLVED alpha 10.200.0.1:7001$' "$TMP/$b.out" ||
        fail "$b did not resolve alpha to 10.200.0.1:7001"
done
grep -q '^RESOLVED beta 10.200.0.2:700[23]$' "$TMP/beta1.out" ||
    fail "beta1 did not resolve beta in its own namespace"

# Goodbye: the betas withdraw on SIGTERM; alpha must then miss.
for b in beta1 beta2; do
    eval "kill -TERM \$PID_$b"
    eval "wait \$PID_$b" || fail "$b exited with an error"
done
kill -USR1 "$PID_alpha"
wait_for alpha '^AFTER beta' 5
grep -q '^AFTER beta NOTFOUND$' "$TMP/alpha.out" ||
    fail "alpha still resolves beta after its goodbye"
kill -TERM "$PID_alpha"
wait "$PID_alpha" || fail "alpha exited with an error"
PIDS=""

# Loopback only.
ip netns add "$NSL" && ip -n "$NSL" link set lo up || fail "cannot make $NSL"
start lo1 "$NSL" one 127.0.0.1 7101 1 two
start lo2 "$NSL" two 127.0.0.1 7102 1 one
for p in lo1 lo2; do wait_for $p DONE 12; done
grep -q '^RESOLVED two 127.0.0.1:7102$' "$TMP/lo1.out" || fail "loopback: one did not find two"
grep -q '^RESOLVED one 127.0.0.1:7101$' "$TMP/lo2.out" || fail "loopback: two did not find one"
kill -TERM "$PID_lo1" "$PID_lo2"
wait "$PID_lo1" || fail "lo1 exited with an error"
wait "$PID_lo2" || fail "lo2 exited with an error"
PIDS=""

echo "PASS: mDNS across namespaces (alpha <-> 2 x beta, goodbye) and on loopback"
exit 0
