#!/usr/bin/env bash
# ABI guard for the public plugin headers: build abi_anchor.c (which uses
# every public type) into a shared object, dump its ABI with abidw, and
# compare it with the recorded baseline of the current ABI major.minor
# using abidiff.  An incompatible change fails; a compatible one (a field
# added at the end of a struct) fails too until the baseline is updated on
# purpose with `check-abi.sh --update` together with a minor bump.
#
# Run from make check (srcdir in $srcdir) or by hand from anywhere.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
baseline="$here/dapr-plugin-abi.xml"
command -v abidw >/dev/null && command -v abidiff >/dev/null || {
  echo "abigail-tools (abidw, abidiff) not installed: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
${CC:-cc} -std=c11 -g -O0 -shared -fPIC -fvisibility=hidden -I"$here/../include" \
  -o "$tmp/libdapr-abi.so" "$here/abi_anchor.c"
abidw --no-corpus-path --no-show-locs --out-file "$tmp/current.xml" "$tmp/libdapr-abi.so"
if [ "${1:-}" = "--update" ]; then
  cp "$tmp/current.xml" "$baseline"
  echo "baseline updated: $baseline"
  exit 0
fi
set +e
abidiff --no-show-locs "$baseline" "$tmp/current.xml" > "$tmp/diff.txt"
rc=$?
set -e
if [ $rc -eq 0 ]; then
  echo "plugin ABI unchanged"
  exit 0
fi
cat "$tmp/diff.txt"
if [ $((rc & 8)) -ne 0 ]; then
  echo "INCOMPATIBLE change to the plugin ABI: this needs a major bump (DAPR_PLUGIN_ABI_MAJOR)"
else
  echo "the plugin ABI changed compatibly: bump DAPR_PLUGIN_ABI_MINOR and run check-abi.sh --update"
fi
exit 1
