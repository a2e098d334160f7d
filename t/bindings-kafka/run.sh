#!/bin/sh
# Runs the bindings.kafka tests (pytest): daprd with a bindings.kafka
# manifest against librdkafka's mock Kafka cluster (t/kafka/mock-cluster,
# a real Kafka protocol peer), with kafka_app.py as the app of the input
# binding.  `make check` runs it from the top build folder with $srcdir
# exported; by hand, from there:
#   srcdir=.. ../t/bindings-kafka/run.sh [pytest args]
# Exit 77 (skipped) when python3 or pytest is missing, or when the plugin
# or the mock cluster were not built (configure found no librdkafka).

srcdir=${srcdir:-${0%/*}/../..}
builddir=$PWD

if ! command -v python3 >/dev/null 2>&1; then
    echo "python3 not found: skipping the bindings.kafka tests"
    exit 77
fi
if ! python3 -c 'import pytest' >/dev/null 2>&1; then
    echo "pytest for python3 not found (apt-get install python3-pytest): skipping the bindings.kafka tests"
    exit 77
fi
if [ ! -f "$builddir/plugins/bindings-kafka/.libs/bindings-kafka.so" ] ||
   [ ! -x "$builddir/t/kafka/mock-cluster" ]; then
    echo "bindings-kafka.so or t/kafka/mock-cluster not built (configure found no librdkafka): skipping"
    exit 77
fi

DAPRD=${DAPRD:-$builddir/core/daprd}
DAPR_TEST_PLUGINS_PATH=${DAPR_TEST_PLUGINS_PATH:-$builddir/plugins/bindings-kafka/.libs}
KAFKA_MOCK=${KAFKA_MOCK:-$builddir/t/kafka/mock-cluster}
PYTHONDONTWRITEBYTECODE=1
export DAPRD DAPR_TEST_PLUGINS_PATH KAFKA_MOCK PYTHONDONTWRITEBYTECODE

exec python3 -m pytest -q -p no:cacheprovider "$srcdir/t/bindings-kafka" "$@"
