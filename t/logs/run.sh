#!/bin/sh
# Runs the logging tests (pytest): --log-as-json lines with Dapr's fields,
# API logging (--enable-api-logging and the Configuration's
# spec.logging.apiLogging), and log level changes with SIGUSR1/SIGUSR2,
# against a real daprd with the state.in-memory plugin.  `make check`
# runs it from the top build folder with $srcdir exported; by hand:
#   srcdir=.. ../t/logs/run.sh [pytest args]
# Exit 77 (skipped) when python3 or pytest is missing.

srcdir=${srcdir:-${0%/*}/../..}
builddir=$PWD

if ! command -v python3 >/dev/null 2>&1; then
    echo "python3 not found: skipping the logging tests"
    exit 77
fi
if ! python3 -c 'import pytest' >/dev/null 2>&1; then
    echo "pytest for python3 not found (apt-get install python3-pytest): skipping the logging tests"
    exit 77
fi
DAPRD=${DAPRD:-$builddir/core/daprd}
DAPR_TEST_PLUGINS_PATH=${DAPR_TEST_PLUGINS_PATH:-$builddir/plugins/state-memory/.libs}
export DAPRD DAPR_TEST_PLUGINS_PATH
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE
exec python3 -m pytest -q -p no:cacheprovider "$srcdir/t/logs" "$@"
