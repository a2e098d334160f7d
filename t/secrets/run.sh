#!/bin/sh
# Runs the secrets integration tests (pytest): daprd with the
# secretstores.local.file and secretstores.local.env plugins, the probe
# store of t/secrets/probe_store.c and state.sqlite.  `make check` runs it
# from the top build folder with $srcdir exported; by hand, from there:
#   srcdir=.. ../t/secrets/run.sh [pytest args]
# DAPRD and DAPR_TEST_PLUGINS_PATH may be set beforehand to test another
# build.  Exit 77 (skipped) when python3 or pytest is missing, or when the
# secret store plugins were not built.

srcdir=${srcdir:-${0%/*}/../..}
builddir=$PWD

if ! command -v python3 >/dev/null 2>&1; then
    echo "python3 not found: skipping the secrets tests"
    exit 77
fi
if ! python3 -c 'import pytest' >/dev/null 2>&1; then
    echo "pytest for python3 not found (apt-get install python3-pytest): skipping the secrets tests"
    exit 77
fi
for so in plugins/secretstore-localfile/.libs/secretstore-localfile.so \
          plugins/secretstore-localenv/.libs/secretstore-localenv.so \
          t/secrets/.libs/secretstore-probe.so; do
    if [ -z "$DAPR_TEST_PLUGINS_PATH" ] && [ ! -f "$builddir/$so" ]; then
        echo "$so not built: skipping the secrets tests"
        exit 77
    fi
done

DAPRD=${DAPRD:-$builddir/core/daprd}
# state.sqlite is optional (built when libsqlite3 is there): the tests
# that need it skip without it.
DAPR_TEST_PLUGINS_PATH=${DAPR_TEST_PLUGINS_PATH:-$builddir/plugins/secretstore-localfile/.libs:$builddir/plugins/secretstore-localenv/.libs:$builddir/t/secrets/.libs:$builddir/plugins/state-sqlite/.libs}
export DAPRD DAPR_TEST_PLUGINS_PATH

PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE

exec python3 -m pytest -q -p no:cacheprovider "$srcdir/t/secrets" "$@"
