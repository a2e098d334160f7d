# state.mongodb: Dapr state in a MongoDB collection through libmongoc, with
# the document layout of Dapr's own state.mongodb component.  Built only
# when configure found libmongoc-1.0 (BUILD_STATE_MONGODB).
if BUILD_STATE_MONGODB
plugin_LTLIBRARIES += plugins/state-mongodb/state-mongodb.la
plugins_state_mongodb_state_mongodb_la_SOURCES = plugins/state-mongodb/state_mongodb.c
plugins_state_mongodb_state_mongodb_la_CFLAGS = $(AM_CFLAGS) $(PLUGIN_COMPILE_FLAGS) \
	$(LIBMONGOC_CFLAGS) $(JANSSON_CFLAGS) $(PTHREAD_CFLAGS)
plugins_state_mongodb_state_mongodb_la_LDFLAGS = $(PLUGIN_LINK_FLAGS)
plugins_state_mongodb_state_mongodb_la_LIBADD = $(LIBMONGOC_LIBS) $(JANSSON_LIBS) $(PTHREAD_LIBS)
endif

# Shipped by `make dist` even when this machine does not build the plugin.
EXTRA_DIST += plugins/state-mongodb/state_mongodb.c plugins/state-mongodb/README.md
