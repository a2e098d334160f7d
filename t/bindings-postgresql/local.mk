# bindings.postgresql tests (pytest) against a throwaway PostgreSQL
# cluster that the tests start and stop.
TESTS += t/bindings-postgresql/run.sh
EXTRA_DIST += t/bindings-postgresql/run.sh \
	t/bindings-postgresql/conftest.py \
	t/bindings-postgresql/test_postgresql.py
