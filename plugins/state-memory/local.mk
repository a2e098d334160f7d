# state.in-memory: the process-local state store (always built).
plugin_LTLIBRARIES += plugins/state-memory/state-memory.la
plugins_state_memory_state_memory_la_SOURCES = \
	plugins/state-memory/state_memory.c \
	plugins/state-memory/memtable.c plugins/state-memory/memtable.h \
	plugins/state-memory/query.c plugins/state-memory/query.h
plugins_state_memory_state_memory_la_CFLAGS = $(AM_CFLAGS) $(PLUGIN_COMPILE_FLAGS) \
	$(JANSSON_CFLAGS) $(PTHREAD_CFLAGS)
plugins_state_memory_state_memory_la_LDFLAGS = $(PLUGIN_LINK_FLAGS)
plugins_state_memory_state_memory_la_LIBADD = $(JANSSON_LIBS) $(PTHREAD_LIBS)

# Unit tests of the query engine and the hash table (linked from source:
# the plugin itself exports only its entry point).
if HAVE_CHECK
check_PROGRAMS += plugins/state-memory/test_query
TESTS += plugins/state-memory/test_query
plugins_state_memory_test_query_SOURCES = \
	plugins/state-memory/test_query.c \
	plugins/state-memory/memtable.c plugins/state-memory/memtable.h \
	plugins/state-memory/query.c plugins/state-memory/query.h
plugins_state_memory_test_query_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) $(JANSSON_CFLAGS)
plugins_state_memory_test_query_LDADD = $(CHECK_LIBS) $(JANSSON_LIBS)
endif
EXTRA_DIST += plugins/state-memory/test_query.c
