#!/bin/sh
# Runs the bindings.mqtt3 tests (pytest, t/bindings-mqtt3/): daprd with the
# plugin against a real mosquitto broker that each test starts on
# 127.0.0.1 and a free port, with mosquitto_pub / mosquitto_sub as
# independent clients.  `make check` runs it from the top build folder
# with $srcdir exported; by hand, from there:
#   srcdir=.. ../t/bindings-mqtt3/run.sh [pytest args]
# Exit 77 (skipped) when python3, pytest, mosquitto or the mosquitto
# clients (Debian: apt-get install -y mosquitto mosquitto-clients) are
# missing, or when the plugin was not built (no libmosquitto-dev).

srcdir=${srcdir:-${0%/*}/../..}
builddir=$PWD

skip() { echo "bindings-mqtt3: $*: skipping"; exit 77; }
command -v python3 >/dev/null 2>&1 || skip "python3 not found"
python3 -c 'import pytest' >/dev/null 2>&1 || skip "pytest for python3 not found (apt-get install python3-pytest)"
[ -f "$builddir/plugins/bindings-mqtt3/.libs/bindings-mqtt3.so" ] ||
    skip "the plugin is not built (configure did not find libmosquitto)"
for p in mosquitto mosquitto_pub mosquitto_sub; do
    command -v $p >/dev/null 2>&1 || PATH=$PATH:/usr/sbin
    command -v $p >/dev/null 2>&1 || skip "$p not found (apt-get install -y mosquitto mosquitto-clients)"
done

DAPRD=${DAPRD:-$builddir/core/daprd}
DAPR_TEST_PLUGINS_PATH=$builddir/plugins/bindings-mqtt3/.libs
PYTHONDONTWRITEBYTECODE=1
export DAPRD DAPR_TEST_PLUGINS_PATH PYTHONDONTWRITEBYTECODE PATH

exec python3 -m pytest -q -p no:cacheprovider "$srcdir/t/bindings-mqtt3" "$@"
