#!/usr/bin/env bash
# The whole test suite, as CI runs it:
#   1. a normal build: make check (unit tests, plugin conformance, daprd
#      integration and system tests), the unit tests under valgrind, and
#      the out-of-tree SDK example against a `make install`;
#   2. a build with --enable-sanitizers (ASan + UBSan): make check again;
#   3. make distcheck.
# Build folders: build-test/, build-san/ (under the source tree).
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
jobs=$(nproc)
step() { printf '\n=== %s ===\n' "$*"; }
passed=0
failed=0
# Add up automake's test-suite.log of a finished `make check`.
count() {
  local p f
  p=$(sed -n 's/^# PASS: *//p' "$1/test-suite.log" | head -n1)
  f=$(sed -n 's/^# FAIL: *//p' "$1/test-suite.log" | head -n1)
  passed=$((passed + ${p:-0}))
  failed=$((failed + ${f:-0}))
}

[ -x configure ] && [ configure -nt configure.ac ] || autoreconf -fi

step "normal build"
rm -rf build-test && mkdir build-test && cd build-test
../configure --enable-silent-rules
make -j"$jobs"
step "make check"
make -j"$jobs" check || { cat t/*.log t/*/*.log plugin-sdk/*/*.log plugins/*/*.log 2>/dev/null | tail -n 300; exit 1; }
count .
step "unit tests under valgrind"
for t in t/unit/check_core plugins/*/test_*; do
  [ -x "$t" ] || continue
  CK_FORK=no ./libtool --mode=execute valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect \
    --error-exitcode=9 "$t"
done
step "out-of-tree SDK example"
bash "$top/t/sdk-example.sh" "$PWD"
cd "$top"

step "sanitizer build (ASan + UBSan)"
rm -rf build-san && mkdir build-san && cd build-san
../configure --enable-silent-rules --enable-sanitizers
make -j"$jobs"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
make -j"$jobs" check || { cat t/*.log t/*/*.log plugin-sdk/*/*.log plugins/*/*.log 2>/dev/null | tail -n 300; exit 1; }
count .
unset ASAN_OPTIONS UBSAN_OPTIONS
cd "$top"

step "make distcheck"
cd build-test
make -j"$jobs" distcheck
echo
echo "all test stages passed (make check twice, valgrind, SDK example, distcheck)"
echo "$passed passed, $failed failed"
