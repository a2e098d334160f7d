#!/usr/bin/env bash
# Fresh machine to running sidecar: install packages, build, and run daprd
# with its embedded default components (a state.sqlite store named
# "statestore"; no external server needed).  Extra arguments go to daprd.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
[ -x configure ] || autoreconf -fi
mkdir -p build
cd build
[ -f Makefile ] || ../configure
make -j"$(nproc)"
echo "daprd is starting on http://127.0.0.1:3500 (Ctrl-C stops it)"
exec ./core/daprd --app-id myapp \
  --plugins-dir plugins/state-sqlite/.libs --plugins-dir plugins/state-memory/.libs "$@"
