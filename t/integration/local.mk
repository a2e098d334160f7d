# HTTP integration tests: pytest starts the built daprd with the built
# state plugins and checks the state, metadata, health and shutdown APIs
# against the reference (t/integration/run.sh sets the paths).
TESTS += t/integration/run.sh
EXTRA_DIST += t/integration/run.sh \
	t/integration/conftest.py \
	t/integration/test_api.py \
	t/integration/test_lifecycle.py \
	t/integration/test_manifests.py \
	t/integration/test_prefix.py \
	t/integration/test_query.py \
	t/integration/test_state.py
