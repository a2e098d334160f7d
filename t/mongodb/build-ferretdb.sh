#!/bin/bash
# t/mongodb/build-ferretdb.sh CACHE_DIR - print the path of a FerretDB v1
# binary (a MongoDB wire-protocol server on SQLite or PostgreSQL), building
# it on first use from the Go module proxy (go mod download + go build) into
# CACHE_DIR/bin.  Used by t/mongodb/run.sh and bench/mongodb-bench.sh.
#
# Why FerretDB: Debian has no mongod, and the npm stand-ins do not enforce
# unique _id values or real query semantics (see TESTING.md).  FerretDB v1
# is a Go program; its SQLite backend needs no other server.
#
# The binary is kept in CACHE_DIR (t/mongodb-cache/ of the build tree), so
# a second `make check` does not build again; Go's own module and build
# caches ($GOMODCACHE, $GOCACHE, under $HOME) are shared by every build
# tree, so another build tree of the same machine (build-san, distcheck)
# only relinks (seconds).  A cold build (downloads and compiles about 60
# modules, modernc.org/sqlite being the slowest) was measured at about
# 3 to 4 minutes on 2 cores; it is bounded by FERRETDB_BUILD_TIMEOUT
# (default 900 s).
#
# Exit status: 0 and the path on stdout; 77 when no usable Go is found
# (run.sh then skips); 1 when the build failed (the reason is printed, and
# the full log is in CACHE_DIR/build.log).
#
# Environment: FERRETDB=/path/to/ferretdb uses that binary and builds
# nothing; GO=/path/to/go picks the Go command; FERRETDB_VERSION (default
# v1.24.2).

set -u
cache=${1:?usage: build-ferretdb.sh CACHE_DIR}
version=${FERRETDB_VERSION:-v1.24.2}
limit=${FERRETDB_BUILD_TIMEOUT:-900}

if [ -n "${FERRETDB:-}" ]; then
    [ -x "$FERRETDB" ] || { echo "FERRETDB=$FERRETDB is not executable" >&2; exit 1; }
    echo "$FERRETDB"
    exit 0
fi

mkdir -p "$cache/bin" || exit 1
bin=$cache/bin/ferretdb

# The right version already built?
have() { [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -qx "version: $version"; }

# One build at a time per cache (run.sh and the benchmark may start
# together); the second waits for the first and then finds the binary.
exec 9>"$cache/.lock"
flock -w "$((limit + 60))" 9 || { echo "timed out waiting for another FerretDB build" >&2; exit 1; }
if have; then
    echo "$bin"
    exit 0
fi

go=${GO:-}
if [ -z "$go" ]; then
    go=$(command -v go 2>/dev/null) || go=
    [ -z "$go" ] && [ -x /usr/local/go/bin/go ] && go=/usr/local/go/bin/go
fi
if [ -z "$go" ] || ! "$go" version >/dev/null 2>&1; then
    echo "no Go toolchain found (need Go >= 1.24 to build FerretDB $version)" >&2
    exit 77
fi
# FerretDB v1.24 wants Go 1.24; never let the go command fetch a toolchain.
gov=$("$go" env GOVERSION 2>/dev/null | sed 's/^go//')
case $gov in
    1.2[4-9]*|1.[3-9][0-9]*|[2-9].*) ;;
    *) echo "Go $gov is too old to build FerretDB $version (need >= 1.24)" >&2; exit 77 ;;
esac

echo "building FerretDB $version with Go $gov into $cache/bin (once; log: $cache/build.log)" >&2
start=$(date +%s)
# Not `go install .../cmd/ferretdb@VERSION`: that binary panics at start
# ("Invalid build/version/version.txt file content"), because FerretDB's
# release builds write build/version/version.txt with their own task runner
# and the module zip on the proxy does not carry it.  So: fetch the module
# with `go mod download` (the ordinary Go client, from the module proxy),
# copy it, write that one file, and `go build` its cmd/ferretdb.
# CGO_ENABLED=0: both backends are pure Go (modernc.org/sqlite, pgx), so no
# C compiler is involved; -trimpath keeps local paths out of the binary.
build() {
    local dir src=$cache/src
    dir=$("$go" mod download -json "github.com/FerretDB/FerretDB@$version" |
        sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
    [ -n "$dir" ] && [ -d "$dir/cmd/ferretdb" ] || { echo "go mod download gave no module folder"; return 1; }
    rm -rf "$src" && cp -R "$dir" "$src" && chmod -R u+w "$src" || return 1
    echo "$version" >"$src/build/version/version.txt"
    (cd "$src" && "$go" build -trimpath -o "$cache/bin/ferretdb.new" ./cmd/ferretdb) || return 1
    mv -f "$cache/bin/ferretdb.new" "$bin"
    rm -rf "$src"
}
export CGO_ENABLED=0 GOTOOLCHAIN=local
cache=$(cd "$cache" && pwd)
bin=$cache/bin/ferretdb
export -f build
export go version cache bin
timeout -s KILL "$limit" bash -c build >"$cache/build.log" 2>&1
rc=$?
secs=$(($(date +%s) - start))
echo "$version $secs s (exit $rc) $(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$cache/build-times"
if [ $rc != 0 ]; then
    [ $rc = 137 ] && echo "the FerretDB build did not finish within $limit s" >&2
    echo "building FerretDB $version failed (exit $rc) after $secs s; last lines of $cache/build.log:" >&2
    tail -n 20 "$cache/build.log" >&2
    exit 1
fi
have || { echo "go install succeeded but $bin is not FerretDB $version" >&2; exit 1; }
echo "built FerretDB $version in $secs s" >&2
echo "$bin"
