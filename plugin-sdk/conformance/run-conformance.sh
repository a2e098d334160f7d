#!/bin/sh
# run-conformance.sh - part of make check: run dapr-plugin-conformance
# against every state store and pub/sub plugin built in this tree (the kit
# picks the state or the pub/sub suite from the component's kind).
#
# Run from the top build folder (make check does), or set DAPR_BUILD_DIR.
# A plugin that is not built is skipped with a message; if none is built
# the whole test is skipped (exit 77).  Any failing plugin fails the test.
#
# To add a plugin, add one line at the end:
#     run NAME PATH-TO-.so [--type T] [--metadata name=value]...
# A plugin that needs a server (redis, postgres, mongo) starts it first
# with the helpers in scripts/ (see ../shared/TESTING.md) and stops it in
# cleanup(), or runs only when the server is given in the environment:
#     [ -n "${DAPR_TEST_REDIS:-}" ] && run state-redis \
#         plugins/state-redis/.libs/state-redis.so --metadata redisHost="$DAPR_TEST_REDIS"
#
# Brokers: the same, plus the pub/sub options of the kit.  A broker that
# redelivers after RETRY only after a timeout says how long it may take
# (--redelivery-wait SECONDS, also how long the kit watches for unwanted
# redeliveries); one that does not keep publish order passes --no-ordering;
# a test that cannot apply is left out with --skip TEXT (substring of the
# test name), saying why in a comment.  For example:
#     [ -n "${DAPR_TEST_NATS:-}" ] && run pubsub-jetstream \
#         plugins/pubsub-jetstream/.libs/pubsub-jetstream.so \
#         --metadata natsURL="$DAPR_TEST_NATS" --redelivery-wait 5
# Topic names are unique per run, so a broker server may be reused.  A
# broker's own test script may also call the kit directly:
#     dapr-plugin-conformance --metadata ... PLUGIN.so    (exit 0 = pass)

set -u
top=${DAPR_BUILD_DIR:-.}
kit=$top/plugin-sdk/conformance/dapr-plugin-conformance
if [ ! -x "$kit" ]; then
    echo "run-conformance: $kit is not built" >&2
    exit 99
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dapr-conformance.XXXXXX") || exit 99
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 1' INT TERM

# Bound a stuck plugin; the kit has its own per-operation timeout too.
limit=
command -v timeout >/dev/null 2>&1 && limit="timeout -s KILL 900"

ran=0
failed=0

# run NAME SO-PATH [kit options...]
run() {
    name=$1
    so=$top/$2
    shift 2
    if [ ! -f "$so" ]; then
        echo "# SKIP $name: $so is not built"
        return 0
    fi
    echo "# $name: dapr-plugin-conformance $* $so"
    ran=$((ran + 1))
    if $limit "$kit" "$@" "$so"; then
        echo "# $name: PASS"
    else
        echo "# $name: FAIL (exit $?)"
        failed=$((failed + 1))
    fi
}

run state-memory plugins/state-memory/.libs/state-memory.so
run state-sqlite plugins/state-sqlite/.libs/state-sqlite.so \
    --metadata connectionString="$tmp/state-sqlite.db"
run pubsub-memory plugins/pubsub-memory/.libs/pubsub-memory.so
# Again with a tiny queue, so that publish meets "queue full" back-pressure.
run pubsub-memory-small-queue plugins/pubsub-memory/.libs/pubsub-memory.so \
    --metadata maxQueueLength=20

echo "# $ran plugin(s) tested, $failed failed"
[ "$ran" -eq 0 ] && exit 77
[ "$failed" -eq 0 ]
