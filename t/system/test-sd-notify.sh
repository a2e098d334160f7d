#!/bin/sh
# test-sd-notify.sh - daprd's systemd notifications (READY=1 after the
# HTTP API is up, WATCHDOG=1 pings, STOPPING=1 on SIGTERM); the checks are
# in test-sd-notify.py.  `make check` runs it from the top build folder.
builddir=$PWD
srcdir=${srcdir:-$(dirname "$0")/../..}

if ! command -v python3 >/dev/null 2>&1; then
    echo "SKIP: python3 not found"
    exit 77
fi
if ! grep -q '^#define HAVE_SYSTEMD 1' "$builddir/config.h" 2>/dev/null; then
    echo "SKIP: daprd built without libsystemd (no sd_notify support)"
    exit 77
fi
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE
exec python3 "$srcdir/t/system/test-sd-notify.py" "$builddir"
