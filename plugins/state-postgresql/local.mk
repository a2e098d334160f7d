# state.postgresql: Dapr state on PostgreSQL through libpq, with Dapr's v1
# (jsonb, xmin etags, query API) and v2 (bytea, UUID etags) table layouts.
# Built only when configure found libpq (BUILD_STATE_POSTGRESQL).
if BUILD_STATE_POSTGRESQL
plugin_LTLIBRARIES += plugins/state-postgresql/state-postgresql.la
plugins_state_postgresql_state_postgresql_la_SOURCES = plugins/state-postgresql/state_postgresql.c
plugins_state_postgresql_state_postgresql_la_CFLAGS = $(AM_CFLAGS) $(PLUGIN_COMPILE_FLAGS) \
	$(LIBPQ_CFLAGS) $(JANSSON_CFLAGS) $(PTHREAD_CFLAGS)
plugins_state_postgresql_state_postgresql_la_LDFLAGS = $(PLUGIN_LINK_FLAGS)
plugins_state_postgresql_state_postgresql_la_LIBADD = $(LIBPQ_LIBS) $(JANSSON_LIBS) $(PTHREAD_LIBS)
endif

# Shipped by `make dist` even when this machine does not build the plugin.
EXTRA_DIST += plugins/state-postgresql/state_postgresql.c
