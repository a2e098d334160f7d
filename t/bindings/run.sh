#!/bin/sh
# Runs the bindings integration tests (pytest): daprd with the
# bindings.cron, bindings.localstorage and bindings.http plugins, a Python
# test app for input bindings and a Python HTTP(S) server as the far end of
# bindings.http.  `make check` runs it from the top build folder with
# $srcdir exported; by hand, from there:
#   srcdir=.. ../t/bindings/run.sh [pytest args]
# DAPRD and DAPR_TEST_PLUGINS_PATH may be set beforehand to test another
# build (t/bindings/.libs holds the bindings.probe test plugin that
# test_dual.py needs; its tests skip without it).  Exit 77 (skipped) when python3 or pytest is missing, or when the
# binding plugins were not built (bindings.http only when libcurl was
# found: its tests are then left out).

srcdir=${srcdir:-${0%/*}/../..}
builddir=$PWD

if ! command -v python3 >/dev/null 2>&1; then
    echo "python3 not found: skipping the bindings tests"
    exit 77
fi
if ! python3 -c 'import pytest' >/dev/null 2>&1; then
    echo "pytest for python3 not found (apt-get install python3-pytest): skipping the bindings tests"
    exit 77
fi
for so in plugins/bindings-cron/.libs/bindings-cron.so \
          plugins/bindings-localstorage/.libs/bindings-localstorage.so; do
    if [ -z "$DAPR_TEST_PLUGINS_PATH" ] && [ ! -f "$builddir/$so" ]; then
        echo "$so not built: skipping the bindings tests"
        exit 77
    fi
done
deselect=
if [ -z "$DAPR_TEST_PLUGINS_PATH" ] && [ ! -f "$builddir/plugins/bindings-http/.libs/bindings-http.so" ]; then
    echo "bindings-http not built (no libcurl): its tests are skipped"
    deselect="--ignore=$srcdir/t/bindings/test_http.py"
fi

DAPRD=${DAPRD:-$builddir/core/daprd}
DAPR_TEST_PLUGINS_PATH=${DAPR_TEST_PLUGINS_PATH:-$builddir/plugins/bindings-cron/.libs:$builddir/plugins/bindings-localstorage/.libs:$builddir/plugins/bindings-http/.libs:$builddir/t/bindings/.libs}
export DAPRD DAPR_TEST_PLUGINS_PATH

PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE

exec python3 -m pytest -q -p no:cacheprovider $deselect "$srcdir/t/bindings" "$@"
