# state.sqlite: a persistent state store on a local SQLite file, with the
# table layout of Dapr's own state.sqlite component.  Built only when
# configure found sqlite3 (>= 3.24, for UPSERT).
if BUILD_STATE_SQLITE
plugin_LTLIBRARIES += plugins/state-sqlite/state-sqlite.la
plugins_state_sqlite_state_sqlite_la_SOURCES = plugins/state-sqlite/state_sqlite.c
plugins_state_sqlite_state_sqlite_la_CFLAGS = $(AM_CFLAGS) $(PLUGIN_COMPILE_FLAGS) \
	$(SQLITE3_CFLAGS) $(JANSSON_CFLAGS) $(PTHREAD_CFLAGS)
plugins_state_sqlite_state_sqlite_la_LDFLAGS = $(PLUGIN_LINK_FLAGS)
plugins_state_sqlite_state_sqlite_la_LIBADD = $(SQLITE3_LIBS) $(JANSSON_LIBS) $(PTHREAD_LIBS)
endif

# Shipped by `make dist` even when this machine does not build the plugin.
EXTRA_DIST += plugins/state-sqlite/state_sqlite.c
