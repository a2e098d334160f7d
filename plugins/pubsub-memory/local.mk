# pubsub.in-memory: the process-local broker (always built).
plugin_LTLIBRARIES += plugins/pubsub-memory/pubsub-memory.la
plugins_pubsub_memory_pubsub_memory_la_SOURCES = plugins/pubsub-memory/pubsub_memory.c
plugins_pubsub_memory_pubsub_memory_la_CFLAGS = $(AM_CFLAGS) $(PLUGIN_COMPILE_FLAGS) \
	$(PTHREAD_CFLAGS)
plugins_pubsub_memory_pubsub_memory_la_LDFLAGS = $(PLUGIN_LINK_FLAGS)
plugins_pubsub_memory_pubsub_memory_la_LIBADD = $(PTHREAD_LIBS)
