#!/bin/sh
# Runs the resiliency integration tests (pytest): a test app that fails on
# purpose, daprd with Resiliency manifests, pubsub.in-memory and the test
# state store state.flaky (t/plugins/flaky.c).  From the top build folder:
#   srcdir=.. ../t/resiliency/run.sh [pytest args]
# Exit 77 (skipped) only when python3 or pytest is missing.

srcdir=${srcdir:-${0%/*}/../..}
builddir=$PWD

if ! command -v python3 >/dev/null 2>&1; then
    echo "python3 not found: skipping the resiliency tests"
    exit 77
fi
if ! python3 -c 'import pytest' >/dev/null 2>&1; then
    echo "pytest for python3 not found (apt-get install python3-pytest): skipping the resiliency tests"
    exit 77
fi

DAPRD=${DAPRD:-$builddir/core/daprd}
DAPR_TEST_PLUGINS_PATH=${DAPR_TEST_PLUGINS_PATH:-$builddir/plugins/pubsub-memory/.libs:$builddir/plugins/bindings-http/.libs:$builddir/plugins/bindings-cron/.libs:$builddir/plugins/nameresolution-sqlite/.libs:$builddir/t/plugins/.libs}
export DAPRD DAPR_TEST_PLUGINS_PATH
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE

exec python3 -m pytest -q -p no:cacheprovider "$srcdir/t/resiliency" "$@"
