#!/bin/sh
# Runs the service invocation integration tests (pytest): test apps and
# several daprd sidecars that find each other through nameresolution.sqlite.
# `make check` runs it from the top build folder with $srcdir exported; it
# can also be run by hand from there:
#   srcdir=.. ../t/invoke/run.sh [pytest args]
# DAPRD and DAPR_TEST_PLUGINS_PATH may be set beforehand to test another
# build.  Exit 77 (skipped) only when python3 or pytest is missing.

srcdir=${srcdir:-${0%/*}/../..}
builddir=$PWD

if ! command -v python3 >/dev/null 2>&1; then
    echo "python3 not found: skipping the invocation tests"
    exit 77
fi
if ! python3 -c 'import pytest' >/dev/null 2>&1; then
    echo "pytest for python3 not found (apt-get install python3-pytest): skipping the invocation tests"
    exit 77
fi

DAPRD=${DAPRD:-$builddir/core/daprd}
DAPR_TEST_PLUGINS_PATH=${DAPR_TEST_PLUGINS_PATH:-$builddir/plugins/nameresolution-sqlite/.libs}
export DAPRD DAPR_TEST_PLUGINS_PATH

# The source tree may be read-only (make distcheck): no caches in it.
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE

exec python3 -m pytest -q -p no:cacheprovider "$srcdir/t/invoke" "$@"
