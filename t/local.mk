# Tests: each group keeps its rules in its own fragment.
include t/unit/local.mk
include t/unit/cel.mk
include t/plugins/local.mk
include t/integration/local.mk
include t/system/local.mk
EXTRA_DIST += t/sdk-example.sh
include t/sdk-js/local.mk
include t/netns/local.mk
include t/cli/local.mk
include t/invoke/local.mk
include t/redis/local.mk
include t/postgresql/local.mk
include t/mongodb/local.mk
include t/pubsub/local.mk
include t/pubsub-redis/local.mk
include t/jetstream/local.mk
include t/kafka/local.mk
include t/bindings-kafka/local.mk
include t/secrets/local.mk
include t/bindings/local.mk
include t/bindings-postgresql/local.mk
include t/bindings-mqtt3/local.mk
include t/logs/local.mk
include t/metrics/local.mk
include t/tracing/local.mk
include t/resiliency/local.mk
