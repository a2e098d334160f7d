# state.redis against a real redis-server started by the driver:
# conformance kit, password, fault, injection and redis-cli interop tests.
TESTS += t/redis/run.sh
EXTRA_DIST += t/redis/run.sh
