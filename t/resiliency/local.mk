# Resiliency integration tests: Resiliency manifests applied to service
# invocation, a state store (the test plugin state.flaky) and pub/sub
# deliveries (pubsub.in-memory).  t/resiliency/run.sh sets the paths.
TESTS += t/resiliency/run.sh
EXTRA_DIST += t/resiliency/run.sh \
	t/resiliency/conftest.py \
	t/resiliency/res_app.py \
	t/resiliency/test_bindings.py \
	t/resiliency/test_components.py \
	t/resiliency/test_invoke.py \
	t/resiliency/test_remote.py
