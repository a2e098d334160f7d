# bindings.postgresql (alias bindings.postgres): an output binding running
# SQL (exec, query, close) through libpq.  Built only when configure found
# libpq (the same check as state.postgresql: BUILD_STATE_POSTGRESQL).
if BUILD_STATE_POSTGRESQL
plugin_LTLIBRARIES += plugins/bindings-postgresql/bindings-postgresql.la
plugins_bindings_postgresql_bindings_postgresql_la_SOURCES = plugins/bindings-postgresql/pg_binding.c
plugins_bindings_postgresql_bindings_postgresql_la_CFLAGS = $(AM_CFLAGS) $(PLUGIN_COMPILE_FLAGS) \
	$(LIBPQ_CFLAGS) $(JANSSON_CFLAGS) $(PTHREAD_CFLAGS)
plugins_bindings_postgresql_bindings_postgresql_la_LDFLAGS = $(PLUGIN_LINK_FLAGS)
plugins_bindings_postgresql_bindings_postgresql_la_LIBADD = $(LIBPQ_LIBS) $(JANSSON_LIBS) $(PTHREAD_LIBS)
endif

# Shipped by `make dist` even when this machine does not build the plugin.
EXTRA_DIST += plugins/bindings-postgresql/pg_binding.c plugins/bindings-postgresql/README.md
