#!/bin/bash
# test-loader.sh - daprd's plugin loader and its worker pool, end to end.
#
#  1. daprd loads the real state.in-memory plugin and the test plugins of
#     t/plugins/: each bad one is refused with one log line naming its
#     file and the reason, the others load, and the real state.in-memory
#     still serves the "statestore" component.
#  2. A state get on state.sleepy (blocks 2 s in the plugin) is in flight
#     while /v1.0/healthz answers at once: a blocking plugin never stalls
#     the event loop.  This is a correctness check, not a benchmark: the
#     bound (1 s) is half the plugin's sleep.
#  3. A component whose init fails stops daprd with a message naming it,
#     unless its manifest says ignoreErrors: true.
#
# `make check` runs it from the top build folder (builddir=$PWD) with
# $srcdir set; the test plugins are built by `make check` only.
set -u
builddir=$PWD
srcdir=${srcdir:-$(dirname "$0")/../..}
# shellcheck source=t/system/lib.sh
. "$srcdir/t/system/lib.sh"

need curl python3
for f in "$DAPRD" "$MEMORY_PLUGINS/state-memory.so" "$TEST_PLUGINS/sleepy.so"; do
    if [ ! -e "$f" ]; then
        echo "ERROR: $f missing: run this test through make check"
        exit 99
    fi
done

# ---- 1. refused plugins ---------------------------------------------------

mkdir "$tmp/res"
component "$tmp/res/statestore.yaml" statestore state.in-memory
component "$tmp/res/sleepy.yaml" sleepy state.sleepy
log=$tmp/loader.log
start_daprd loader "$log" --resources-path "$tmp/res" \
    --plugins-dir "$MEMORY_PLUGINS" --plugins-dir "$TEST_PLUGINS" || exit 1
port=$daprd_port
pid=$daprd_pid

# refused FILE SUBSTRING...: exactly one "refused" line names FILE, and it
# holds every SUBSTRING.
refused() {
    local file=$1 lines line s
    shift
    lines=$(grep -F "$file" "$log" | grep -F refused)
    if [ "$(printf '%s\n' "$lines" | grep -c .)" != 1 ]; then
        fail "$file: expected one 'refused' log line, got: ${lines:-none}"
        return
    fi
    line=$lines
    for s in "$@"; do
        case $line in
        *"$s"*) ;;
        *) fail "$file: refusal line lacks '$s': $line"; return ;;
        esac
    done
    ok "$file refused ($*)"
}
refused bad-abi-major.so ABI
refused bad-abi-minor.so ABI
refused no-entry.so dapr_plugin_entry
refused dup-type.so state.in-memory already
# A good file may appear after "refused" (dup-type's line names the file
# that already provides the type), so look only before the word.
for f in sleepy.so failing-init.so state-memory.so; do
    if grep -F refused "$log" | sed 's/refused.*//' | grep -qF "/$f"; then
        fail "$f was refused: $(grep -F refused "$log" | grep -F "/$f")"
    else
        ok "$f not refused"
    fi
done

# The real state.in-memory serves statestore (the duplicate's stub would
# answer "not found").
base=http://127.0.0.1:$port/v1.0/state
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X POST \
    -H 'Content-Type: application/json' -d '[{"key":"k","value":1}]' "$base/statestore")
check "save to statestore answers 204 (got $code)" [ "$code" = 204 ]
body=$(curl -s --max-time 10 "$base/statestore/k")
check "get from statestore returns the saved value (got '$body')" [ "$body" = 1 ]

# ---- 2. a blocking plugin does not block the event loop --------------------

curl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time 30 \
    "$base/sleepy/k" >"$tmp/sleepy.out" &
sleepy_curl=$!
pids+=("$sleepy_curl")
# Give the request time to reach the plugin; the checks below prove that
# the two requests really overlapped.
sleep 0.3
health=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time 10 \
    "http://127.0.0.1:$port/v1.0/healthz")
if kill -0 "$sleepy_curl" 2>/dev/null; then
    ok "the sleepy get was still in flight after the healthz answer"
else
    fail "the sleepy get finished before healthz answered: the requests did not overlap"
fi
check "healthz answers 204 while the sleepy get is in flight (got '$health')" \
    [ "${health%% *}" = 204 ]
check "healthz answers in under 1 s while the sleepy get is in flight (${health#* } s)" \
    python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) < 1.0 else 1)' "${health#* }"
wait "$sleepy_curl"
sleepy=$(cat "$tmp/sleepy.out")
check "the sleepy get answers 204 (not found) (got '$sleepy')" [ "${sleepy%% *}" = 204 ]
check "the sleepy get took its 2 s (${sleepy#* } s)" \
    python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= 1.5 else 1)' "${sleepy#* }"

if stop_daprd "$pid"; then ok "daprd exits 0 on SIGTERM"; else fail "daprd exit status $? on SIGTERM"; fi

# ---- 3. a component whose init fails -----------------------------------------

mkdir "$tmp/fail"
component "$tmp/fail/statestore.yaml" statestore state.in-memory
component "$tmp/fail/broken.yaml" brokenstore state.failinit
flog=$tmp/failinit.log
port=$(free_port)
timeout -s KILL 30 "$DAPRD" --app-id failinit --dapr-http-port "$port" \
    --dapr-listen-addresses 127.0.0.1 --resources-path "$tmp/fail" \
    --plugins-dir "$MEMORY_PLUGINS" --plugins-dir "$TEST_PLUGINS" >"$flog" 2>&1
rc=$?
# 137: killed by the timeout, i.e. daprd hung instead of exiting.
check "daprd exits non-zero when a component's init fails (exit $rc)" \
    test "$rc" -ne 0 -a "$rc" -ne 137
if grep -F brokenstore "$flog" | grep -qF 'always fails'; then
    ok "the failure names the component and gives the plugin's reason"
else
    fail "no log line names brokenstore with the plugin's reason; output:"
    cat "$flog"
fi

component "$tmp/fail/broken.yaml" brokenstore state.failinit 'ignoreErrors: true'
ilog=$tmp/ignore.log
if start_daprd ignore "$ilog" --resources-path "$tmp/fail" \
    --plugins-dir "$MEMORY_PLUGINS" --plugins-dir "$TEST_PLUGINS"; then
    ok "with ignoreErrors: true daprd starts despite the failing init"
    check "the skipped component is logged" grep -qF brokenstore "$ilog"
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X POST \
        -H 'Content-Type: application/json' -d '[{"key":"k","value":2}]' \
        "http://127.0.0.1:$daprd_port/v1.0/state/statestore")
    check "the other components still work (save answers $code)" [ "$code" = 204 ]
    stop_daprd "$daprd_pid"
else
    fail "with ignoreErrors: true daprd did not start"
fi

finish
