# Service invocation integration tests: pytest starts small Python test
# apps and several daprd sidecars that find each other through the
# nameresolution.sqlite plugin, and checks invocation across them
# (reference §4).  t/invoke/run.sh sets the paths.
TESTS += t/invoke/run.sh
EXTRA_DIST += t/invoke/run.sh \
	t/invoke/conftest.py \
	t/invoke/echo_app.py \
	t/invoke/test_faults.py \
	t/invoke/test_health.py \
	t/invoke/test_invoke.py \
	t/invoke/test_limits.py \
	t/invoke/test_topology.py
