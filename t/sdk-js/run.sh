#!/bin/sh
# Compatibility test: the real Dapr JavaScript SDK (@dapr/dapr, HTTP mode)
# as the client of the daprd of this build tree.  `make check` runs it from
# the top build folder with $srcdir exported; by hand, from there:
#   srcdir=.. ../t/sdk-js/run.sh [node --test args]
#
# The SDK is installed with `npm ci` from t/sdk-js/package-lock.json into
# t/sdk-js-cache/ of the BUILD tree (the source tree may be read-only under
# make distcheck, and must never get a node_modules); the install is reused
# while the lock file is unchanged.  DAPRD and DAPR_TEST_PLUGINS_PATH may be
# set beforehand to test another build.
#
# Exit 77 (skipped) only when node or npm is missing.  An npm that cannot
# reach the registry is a failure: CI has the registry.

srcdir=${srcdir:-${0%/*}/../..}
builddir=$PWD
here=$srcdir/t/sdk-js
cache=$builddir/t/sdk-js-cache

for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "$tool not found: skipping the Dapr JS SDK test"
        exit 77
    fi
done

# node --test and the SDK need node 18 or later; the lock was made with 20.
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
    echo "node $(node --version) is older than 20: skipping the Dapr JS SDK test"
    exit 77
fi

# installed.lock is written only after a successful install, so a broken or
# interrupted install is never reused.
if ! cmp -s "$here/package-lock.json" "$cache/installed.lock" ||
   ! cmp -s "$here/package.json" "$cache/package.json" ||
   [ ! -f "$cache/node_modules/@dapr/dapr/package.json" ]; then
    rm -rf "$cache"
    mkdir -p "$cache" || exit 1
    cp "$here/package.json" "$here/package-lock.json" "$cache/" || exit 1
    chmod u+w "$cache/package.json" "$cache/package-lock.json"
    echo "installing the Dapr JS SDK into $cache"
    # --ignore-scripts: nothing in the tree needs an install script, and
    # none should run on a test machine.
    if ! (cd "$cache" && npm ci --no-audit --no-fund --ignore-scripts); then
        echo "npm ci failed (is the npm registry reachable?)" >&2
        exit 1
    fi
    cp "$here/package-lock.json" "$cache/installed.lock" || exit 1
fi

DAPRD=${DAPRD:-$builddir/core/daprd}
DAPR_TEST_PLUGINS_PATH=${DAPR_TEST_PLUGINS_PATH:-$builddir/plugins/state-memory/.libs:$builddir/plugins/state-sqlite/.libs}
# invoke.test.mjs needs the SQLite name resolver: add this tree's unless the
# path given already names one (two plugins of one type would clash).
case ":$DAPR_TEST_PLUGINS_PATH:" in
    *nameresolution-sqlite*) ;;
    *) DAPR_TEST_PLUGINS_PATH=$DAPR_TEST_PLUGINS_PATH:$builddir/plugins/nameresolution-sqlite/.libs ;;
esac
# secrets.test.mjs needs secretstores.local.file: the same rule.
case ":$DAPR_TEST_PLUGINS_PATH:" in
    *secretstore-localfile*) ;;
    *) DAPR_TEST_PLUGINS_PATH=$DAPR_TEST_PLUGINS_PATH:$builddir/plugins/secretstore-localfile/.libs ;;
esac
# pubsub.test.mjs needs the in-memory broker: add this tree's likewise.
case ":$DAPR_TEST_PLUGINS_PATH:" in
    *pubsub-memory*) ;;
    *) DAPR_TEST_PLUGINS_PATH=$DAPR_TEST_PLUGINS_PATH:$builddir/plugins/pubsub-memory/.libs ;;
esac
# bindings.test.mjs needs bindings.localstorage: the same rule.
case ":$DAPR_TEST_PLUGINS_PATH:" in
    *bindings-localstorage*) ;;
    *) DAPR_TEST_PLUGINS_PATH=$DAPR_TEST_PLUGINS_PATH:$builddir/plugins/bindings-localstorage/.libs ;;
esac
export DAPRD DAPR_TEST_PLUGINS_PATH

# ES modules ignore NODE_PATH: the test files run from the cache folder so
# that `@dapr/dapr` resolves to its node_modules.
tests="state.test.mjs invoke.test.mjs secrets.test.mjs pubsub.test.mjs bindings.test.mjs"
for t in $tests; do
    cp "$here/$t" "$cache/$t" || exit 1
    chmod u+w "$cache/$t"
done
cd "$cache" || exit 1
exec node --test --test-reporter=spec "$@" $tests
