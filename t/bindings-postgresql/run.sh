#!/bin/sh
# Runs the bindings.postgresql tests (pytest, t/bindings-postgresql/):
# daprd with the plugin against a throwaway PostgreSQL cluster that the
# tests start (initdb + pg_ctl on 127.0.0.1 and a free port; as user
# "postgres" when run as root) and stop.  `make check` runs it from the
# top build folder with $srcdir exported; by hand, from there:
#   srcdir=.. ../t/bindings-postgresql/run.sh [pytest args]
# Exit 77 (skipped) when python3, pytest or PostgreSQL's server programs
# (Debian: apt-get install -y postgresql) are missing, or when the plugin
# was not built (configure did not find libpq).

srcdir=${srcdir:-${0%/*}/../..}
builddir=$PWD

skip() { echo "bindings-postgresql: $*: skipping"; exit 77; }
command -v python3 >/dev/null 2>&1 || skip "python3 not found"
python3 -c 'import pytest' >/dev/null 2>&1 || skip "pytest for python3 not found (apt-get install python3-pytest)"
[ -f "$builddir/plugins/bindings-postgresql/.libs/bindings-postgresql.so" ] ||
    skip "the plugin is not built (configure did not find libpq)"
if [ -z "${PG_BINDIR:-}" ]; then
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r) "$(pg_config --bindir 2>/dev/null)"; do
        if [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ] && [ -x "$d/psql" ]; then PG_BINDIR=$d; break; fi
    done
fi
[ -n "${PG_BINDIR:-}" ] || skip "PostgreSQL server programs not found (apt-get install -y postgresql)"
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    skip "running as root without a postgres user to run the server as"
fi

DAPRD=${DAPRD:-$builddir/core/daprd}
DAPR_TEST_PLUGINS_PATH=$builddir/plugins/bindings-postgresql/.libs
PYTHONDONTWRITEBYTECODE=1
export DAPRD DAPR_TEST_PLUGINS_PATH PG_BINDIR PYTHONDONTWRITEBYTECODE

exec python3 -m pytest -q -p no:cacheprovider "$srcdir/t/bindings-postgresql" "$@"
