#!/bin/sh
# t/sdk-example.sh - the plugin SDK seen from a third party (run by CI, not
# by make check):
#
#   1. install the configured tree into a temporary DESTDIR;
#   2. build plugin-sdk/examples/state-example against it with nothing but
#      pkg-config (PKG_CONFIG_PATH into the temporary tree), and install it
#      with its own "make install";
#   3. run the installed dapr-plugin-conformance on it;
#   4. start the installed daprd with the plugin folder and a component of
#      type state.example, and save, read and delete over HTTP with curl.
#
# usage: t/sdk-example.sh [BUILD-DIR]    (default: the current directory,
#                                         which must be a configured build)
# Needs: make, cc, pkg-config, curl.
set -eu

build=${1:-.}
if [ ! -f "$build/Makefile" ] || [ ! -f "$build/config.status" ]; then
    echo "sdk-example: '$build' is not a configured build folder (run configure there)" >&2
    exit 2
fi
build=$(cd "$build" && pwd)
srcdir=$(sed -n 's/^abs_top_srcdir = //p' "$build/Makefile")
for tool in make pkg-config curl; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "sdk-example: $tool not found (apt-get install -y $tool)" >&2
        exit 2
    fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/dapr-sdk-example.XXXXXX")
daprd_pid=
cleanup() {
    if [ -n "$daprd_pid" ]; then
        kill "$daprd_pid" 2>/dev/null || true
        wait "$daprd_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

fail() {
    echo "sdk-example: FAIL: $*" >&2
    if [ -f "$tmp/daprd.log" ]; then
        echo "---- daprd log (last 40 lines) ----" >&2
        tail -n 40 "$tmp/daprd.log" >&2
    fi
    exit 1
}

# ---- 1. install into a temporary root ------------------------------------
root=$tmp/root
echo "# make install DESTDIR=$root"
make -C "$build" install DESTDIR="$root" >"$tmp/install.log" 2>&1 ||
    { tail -n 30 "$tmp/install.log" >&2; fail "make install"; }

pc=$(find "$root" -name dapr-plugin-sdk.pc | head -n 1)
daprd=$(find "$root" -type f -name daprd -path '*/bin/*' | head -n 1)
kit=$(find "$root" -type f -name dapr-plugin-conformance -path '*/bin/*' | head -n 1)
[ -n "$pc" ] || fail "dapr-plugin-sdk.pc was not installed"
[ -n "$kit" ] || fail "dapr-plugin-conformance was not installed"
[ -n "$daprd" ] || fail "daprd was not installed"

# pkg-config sees the temporary root as a sysroot: include paths and the
# plugindir variable then point inside it.
PKG_CONFIG_PATH=$(dirname "$pc")
PKG_CONFIG_SYSROOT_DIR=$root
PKG_CONFIG_LIBDIR=$PKG_CONFIG_PATH # only the SDK we just installed
export PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR PKG_CONFIG_LIBDIR
# Programs installed into the root may need libraries installed beside them.
LD_LIBRARY_PATH=$(dirname "$pc")/..${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export LD_LIBRARY_PATH

# ---- 2. build the example out of tree ------------------------------------
example=$tmp/state-example
cp -R "$srcdir/plugin-sdk/examples/state-example" "$example"
rm -f "$example/state-example.so"
echo "# building the example with pkg-config --cflags --libs dapr-plugin-sdk"
make -C "$example" >"$tmp/example-build.log" 2>&1 ||
    { cat "$tmp/example-build.log" >&2; fail "building the example plugin"; }
if grep -q 'warning:' "$tmp/example-build.log"; then
    cat "$tmp/example-build.log" >&2
    fail "the example builds with warnings"
fi
if command -v nm >/dev/null 2>&1; then
    exported=$(nm -D --defined-only "$example/state-example.so" | awk '$2 == "T" { print $3 }')
    [ "$exported" = dapr_plugin_entry ] ||
        fail "the example exports more than dapr_plugin_entry: $exported"
fi
# Its make install puts it where pkg-config says plugins go (inside root).
make -C "$example" install >>"$tmp/example-build.log" 2>&1 || fail "make install of the example"
plugindir=$(pkg-config --variable=plugindir dapr-plugin-sdk)
[ -f "$plugindir/state-example.so" ] || fail "state-example.so not installed in $plugindir"

# ---- 3. the installed conformance kit ------------------------------------
echo "# $kit $plugindir/state-example.so"
"$kit" "$plugindir/state-example.so" || fail "conformance suite"

# ---- 4. the installed daprd serving the example --------------------------
mkdir -p "$tmp/resources"
cat >"$tmp/resources/example.yaml" <<'EOF'
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: examplestore
spec:
  type: state.example
  version: v1
  metadata:
  - name: maxValueBytes
    value: "1048576"
EOF

free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
    else
        echo $((20000 + $(od -An -N2 -tu2 /dev/urandom) % 40000))
    fi
}

# Start daprd; retry on another port if the chosen one was taken.
started=
for attempt in 1 2 3; do
    port=$(free_port)
    "$daprd" --app-id sdk-example --dapr-http-port "$port" \
        --dapr-listen-addresses 127.0.0.1 --resources-path "$tmp/resources" \
        --plugins-dir "$plugindir" --log-level debug >"$tmp/daprd.log" 2>&1 &
    daprd_pid=$!
    # Readiness: GET /v1.0/healthz answers 204; poll, never a fixed sleep.
    i=0
    while [ $i -lt 100 ]; do
        if ! kill -0 "$daprd_pid" 2>/dev/null; then
            wait "$daprd_pid" 2>/dev/null || true
            daprd_pid=
            break
        fi
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v1.0/healthz" || true)
        if [ "$code" = 204 ]; then
            started=1
            break
        fi
        sleep 0.1
        i=$((i + 1))
    done
    [ -n "$started" ] && break
    if [ -n "$daprd_pid" ]; then
        fail "daprd did not become ready on port $port within 10 s"
    fi
    if ! grep -qi 'address already in use\|bind' "$tmp/daprd.log"; then
        fail "daprd exited at startup"
    fi
done
[ -n "$started" ] || fail "daprd could not bind a port in 3 attempts"
echo "# daprd ready on 127.0.0.1:$port"

base=http://127.0.0.1:$port/v1.0/state/examplestore

# save
code=$(curl -s -o "$tmp/out" -w '%{http_code}' -H 'Content-Type: application/json' \
    -d '[{"key":"greeting","value":{"hello":"world"}}]' "$base")
[ "$code" = 204 ] || fail "save answered $code: $(cat "$tmp/out")"

# get: the value, as JSON, with an ETag header
code=$(curl -s -D "$tmp/headers" -o "$tmp/out" -w '%{http_code}' "$base/greeting")
[ "$code" = 200 ] || fail "get answered $code: $(cat "$tmp/out")"
body=$(tr -d ' \n\r\t' <"$tmp/out")
[ "$body" = '{"hello":"world"}' ] || fail "get returned '$body'"
etag=$(sed -n 's/^[Ee][Tt][Aa][Gg]: *//p' "$tmp/headers" | tr -d '\r')
[ -n "$etag" ] || fail "get returned no ETag header"

# a stale etag is refused with 409, the current one accepted
code=$(curl -s -o "$tmp/out" -w '%{http_code}' -H 'Content-Type: application/json' \
    -d "[{\"key\":\"greeting\",\"value\":2,\"etag\":\"$etag-stale\"}]" "$base")
[ "$code" = 409 ] || fail "save with a wrong etag answered $code, want 409"
code=$(curl -s -o "$tmp/out" -w '%{http_code}' -H 'Content-Type: application/json' \
    -d "[{\"key\":\"greeting\",\"value\":2,\"etag\":\"$etag\"}]" "$base")
[ "$code" = 204 ] || fail "save with the current etag answered $code: $(cat "$tmp/out")"
[ "$(curl -s "$base/greeting")" = 2 ] || fail "value not updated"

# delete, then the key is gone (204)
code=$(curl -s -o "$tmp/out" -w '%{http_code}' -X DELETE "$base/greeting")
[ "$code" = 204 ] || fail "delete answered $code: $(cat "$tmp/out")"
code=$(curl -s -o "$tmp/out" -w '%{http_code}' "$base/greeting")
[ "$code" = 204 ] || fail "get after delete answered $code"

echo "# sdk-example: PASS"
