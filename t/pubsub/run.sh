#!/bin/sh
# Runs the pub/sub integration tests (pytest): subscriber apps
# (pubsub_app.py) behind daprd sidecars with the pubsub.in-memory broker,
# and the at-least-once test across a daprd killed with SIGKILL over each
# durable broker whose plugin was built and whose server is at hand
# (redis-server, nats-server -js, t/kafka/mock-cluster).
# `make check` runs it from the top build folder with $srcdir exported; by
# hand, from there:
#   srcdir=.. ../t/pubsub/run.sh [pytest args]
# DAPRD, DAPR_TEST_PLUGINS_PATH and DAPR_TEST_REDIS_PLUGIN may be set
# beforehand to test another build.  Exit 77 (skipped) only when python3 or
# pytest is missing.

srcdir=${srcdir:-${0%/*}/../..}
builddir=$PWD

if ! command -v python3 >/dev/null 2>&1; then
    echo "python3 not found: skipping the pub/sub tests"
    exit 77
fi
if ! python3 -c 'import pytest' >/dev/null 2>&1; then
    echo "pytest for python3 not found (apt-get install python3-pytest): skipping the pub/sub tests"
    exit 77
fi

DAPRD=${DAPRD:-$builddir/core/daprd}
DAPR_TEST_PLUGINS_PATH=${DAPR_TEST_PLUGINS_PATH:-$builddir/plugins/pubsub-memory/.libs}
DAPR_TEST_REDIS_PLUGIN=${DAPR_TEST_REDIS_PLUGIN:-$builddir/plugins/pubsub-redis/.libs}
DAPR_TEST_JETSTREAM_PLUGIN=${DAPR_TEST_JETSTREAM_PLUGIN:-$builddir/plugins/pubsub-jetstream/.libs}
DAPR_TEST_JS_TOOL=${DAPR_TEST_JS_TOOL:-$builddir/t/jetstream/js_tool}
DAPR_TEST_KAFKA_PLUGIN=${DAPR_TEST_KAFKA_PLUGIN:-$builddir/plugins/pubsub-kafka/.libs}
DAPR_TEST_KAFKA_MOCK=${DAPR_TEST_KAFKA_MOCK:-$builddir/t/kafka/mock-cluster}
export DAPRD DAPR_TEST_PLUGINS_PATH DAPR_TEST_REDIS_PLUGIN DAPR_TEST_JETSTREAM_PLUGIN DAPR_TEST_JS_TOOL
export DAPR_TEST_KAFKA_PLUGIN DAPR_TEST_KAFKA_MOCK

# The source tree may be read-only (make distcheck): no caches in it.
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE

exec python3 -m pytest -q -p no:cacheprovider -rs "$srcdir/t/pubsub" "$@"
