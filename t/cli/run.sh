#!/bin/sh
# Runs the dapr CLI tests (pytest) against the dapr, daprd and plugins of
# this build tree.  `make check` runs it from the top build folder with
# $srcdir exported; by hand, from the build folder:
#   srcdir=.. ../t/cli/run.sh [pytest args]
# DAPR, DAPRD and DAPR_TEST_PLUGINS_PATH may be set beforehand to test
# another build.  Exit 77 (skipped) only when python3 or pytest is missing.

srcdir=${srcdir:-${0%/*}/../..}
builddir=$PWD

if ! command -v python3 >/dev/null 2>&1; then
    echo "python3 not found: skipping the CLI tests"
    exit 77
fi
if ! python3 -c 'import pytest' >/dev/null 2>&1; then
    echo "pytest for python3 not found (apt-get install python3-pytest): skipping the CLI tests"
    exit 77
fi

DAPR=${DAPR:-$builddir/core/dapr}
DAPRD=${DAPRD:-$builddir/core/daprd}
if [ -z "$DAPR_TEST_PLUGINS_PATH" ]; then
    DAPR_TEST_PLUGINS_PATH=$(ls -d "$builddir"/plugins/*/.libs 2>/dev/null | tr '\n' ':')
fi
export DAPR DAPRD DAPR_TEST_PLUGINS_PATH

PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE

exec python3 -m pytest -q -p no:cacheprovider "$srcdir/t/cli" "$@"
