#!/bin/sh
# Runs the metrics tests (pytest): GET /metrics on --metrics-port after
# real traffic (state, invocation between two sidecars, publish and
# delivery), promtool check metrics, a real prometheus server scraping
# daprd, --enable-metrics=false, the port in use, and no secret in the
# output.  `make check` runs it from the top build folder with $srcdir
# exported; by hand:
#   srcdir=.. ../t/metrics/run.sh [pytest args]
# Exit 77 (skipped) when python3, pytest or a needed plugin is missing;
# the promtool and prometheus tests skip alone without the prometheus
# package.

srcdir=${srcdir:-${0%/*}/../..}
builddir=$PWD

if ! command -v python3 >/dev/null 2>&1; then
    echo "python3 not found: skipping the metrics tests"
    exit 77
fi
if ! python3 -c 'import pytest' >/dev/null 2>&1; then
    echo "pytest for python3 not found (apt-get install python3-pytest): skipping the metrics tests"
    exit 77
fi
for p in state-memory pubsub-memory secretstore-localfile nameresolution-sqlite bindings-localstorage \
         bindings-cron; do
    if [ -z "$DAPR_TEST_PLUGINS_PATH" ] && [ ! -f "$builddir/plugins/$p/.libs/$p.so" ]; then
        echo "plugins/$p not built: skipping the metrics tests"
        exit 77
    fi
done
DAPRD=${DAPRD:-$builddir/core/daprd}
if [ -z "$DAPR_TEST_PLUGINS_PATH" ]; then
    DAPR_TEST_PLUGINS_PATH=$builddir/plugins/state-memory/.libs:$builddir/plugins/pubsub-memory/.libs
    DAPR_TEST_PLUGINS_PATH=$DAPR_TEST_PLUGINS_PATH:$builddir/plugins/secretstore-localfile/.libs
    DAPR_TEST_PLUGINS_PATH=$DAPR_TEST_PLUGINS_PATH:$builddir/plugins/nameresolution-sqlite/.libs
    DAPR_TEST_PLUGINS_PATH=$DAPR_TEST_PLUGINS_PATH:$builddir/plugins/bindings-localstorage/.libs
    DAPR_TEST_PLUGINS_PATH=$DAPR_TEST_PLUGINS_PATH:$builddir/plugins/bindings-cron/.libs
fi
export DAPRD DAPR_TEST_PLUGINS_PATH
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE
exec python3 -m pytest -q -p no:cacheprovider "$srcdir/t/metrics" "$@"
