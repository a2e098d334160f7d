#!/bin/sh
# Runs the tracing tests (pytest): sidecars export spans to a real Zipkin
# server and to a strict OTLP/HTTP JSON receiver.
#
# Zipkin is not in Debian: its executable jar (io.zipkin:zipkin-server,
# "exec" classifier) comes from Maven Central through mvn, cached in
# $builddir/t/tracing/jars so that a second run does not download again.
# The OTLP receiver validates every payload with the protobuf classes of
# the opentelemetry-proto package (PyPI), installed into a venv in
# $builddir/t/tracing/venv.  When the jar or the package cannot be had,
# only the tests that need them skip; the whole script exits 77 (skipped)
# only when python3, pytest or java is missing.
#   srcdir=.. ../t/tracing/run.sh [pytest args]

srcdir=${srcdir:-${0%/*}/../..}
builddir=$PWD

if ! command -v python3 >/dev/null 2>&1; then
    echo "python3 not found: skipping the tracing tests"
    exit 77
fi
if ! python3 -c 'import pytest' >/dev/null 2>&1; then
    echo "pytest for python3 not found (apt-get install python3-pytest): skipping the tracing tests"
    exit 77
fi
if ! command -v java >/dev/null 2>&1; then
    echo "java not found (apt-get install -y default-jre-headless): skipping the tracing tests"
    exit 77
fi

ZIPKIN_VERSION=3.4.4
JARS=${TRACING_JARS:-$builddir/t/tracing/jars}
ZIPKIN_JAR=$JARS/zipkin-server-$ZIPKIN_VERSION-exec.jar
if [ ! -s "$ZIPKIN_JAR" ]; then
    mkdir -p "$JARS"
    if command -v mvn >/dev/null 2>&1; then
        echo "fetching io.zipkin:zipkin-server:$ZIPKIN_VERSION:exec from Maven Central (once)"
        timeout 600 mvn -q -B dependency:copy -Dartifact=io.zipkin:zipkin-server:$ZIPKIN_VERSION:jar:exec \
            -DoutputDirectory="$JARS" >"$JARS/mvn.log" 2>&1 || tail -5 "$JARS/mvn.log"
    fi
    if [ ! -s "$ZIPKIN_JAR" ] && command -v curl >/dev/null 2>&1; then
        curl -fsS -m 300 -o "$ZIPKIN_JAR.part" \
            "https://repo1.maven.org/maven2/io/zipkin/zipkin-server/$ZIPKIN_VERSION/zipkin-server-$ZIPKIN_VERSION-exec.jar" &&
            mv "$ZIPKIN_JAR.part" "$ZIPKIN_JAR"
    fi
    if [ ! -s "$ZIPKIN_JAR" ]; then
        echo "SKIP: the Zipkin server jar could not be downloaded"
        exit 77
    fi
fi

mkdir -p "$builddir/t/tracing"
VENV=${TRACING_VENV:-$builddir/t/tracing/venv}
if ! "$VENV/bin/python3" -c 'import opentelemetry.proto.collector.trace.v1.trace_service_pb2' >/dev/null 2>&1; then
    rm -rf "$VENV"
    if python3 -m venv "$VENV" >/dev/null 2>&1 &&
        timeout 300 "$VENV/bin/pip" -q install opentelemetry-proto >"$builddir/t/tracing/pip.log" 2>&1; then
        :
    else
        echo "note: opentelemetry-proto could not be installed from PyPI: the OTLP tests will skip"
        tail -3 "$builddir/t/tracing/pip.log" 2>/dev/null
    fi
fi
OTLP_PYTHON=$VENV/bin/python3
[ -x "$OTLP_PYTHON" ] || OTLP_PYTHON=

DAPRD=${DAPRD:-$builddir/core/daprd}
DAPR_TEST_PLUGINS_PATH=${DAPR_TEST_PLUGINS_PATH:-$builddir/plugins/nameresolution-sqlite/.libs:$builddir/plugins/bindings-cron/.libs:$builddir/plugins/pubsub-memory/.libs:$builddir/plugins/pubsub-redis/.libs:$builddir/plugins/secretstore-localfile/.libs:$builddir/plugins/state-sqlite/.libs}
export DAPRD DAPR_TEST_PLUGINS_PATH ZIPKIN_JAR OTLP_PYTHON

PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE

exec python3 -m pytest -q -p no:cacheprovider "$srcdir/t/tracing" "$@"
