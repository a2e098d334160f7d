# state.postgresql against a throwaway PostgreSQL cluster started by the
# driver: conformance kit (v1 and v2), query through daprd, fault,
# injection and psql interop tests.  See t/postgresql/run.sh.
TESTS += t/postgresql/run.sh
EXTRA_DIST += t/postgresql/run.sh

# The conformance kit tests the first component of a type; this copy of
# the plugin lists v2 first so that the kit can test v2 too.  Built by
# `make check` only, never installed (hence -rpath /nowhere).
if BUILD_STATE_POSTGRESQL
check_LTLIBRARIES += t/postgresql/pg-v2-first.la
t_postgresql_pg_v2_first_la_SOURCES = plugins/state-postgresql/state_postgresql.c
t_postgresql_pg_v2_first_la_CPPFLAGS = -DPG_V2_FIRST
t_postgresql_pg_v2_first_la_CFLAGS = $(AM_CFLAGS) $(PLUGIN_COMPILE_FLAGS) \
	$(LIBPQ_CFLAGS) $(JANSSON_CFLAGS) $(PTHREAD_CFLAGS)
t_postgresql_pg_v2_first_la_LDFLAGS = $(PLUGIN_LINK_FLAGS) -rpath /nowhere
t_postgresql_pg_v2_first_la_LIBADD = $(LIBPQ_LIBS) $(JANSSON_LIBS) $(PTHREAD_LIBS)
endif
