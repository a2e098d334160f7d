# pubsub.redis against a real redis-server started by the driver:
# conformance kit, fault (server restart), redis-cli interop and daprd.
TESTS += t/pubsub-redis/run.sh
EXTRA_DIST += t/pubsub-redis/run.sh
