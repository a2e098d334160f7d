# pubsub.jetstream: Dapr pub/sub on NATS JetStream through nats.c (durable
# pull consumers, acks after SUCCESS/DROP).  Built only when configure
# found libnats (Debian: libnats-dev).  See plugins/pubsub-jetstream/README.md.
if BUILD_PUBSUB_JETSTREAM
plugin_LTLIBRARIES += plugins/pubsub-jetstream/pubsub-jetstream.la
plugins_pubsub_jetstream_pubsub_jetstream_la_SOURCES = plugins/pubsub-jetstream/pubsub_jetstream.c
plugins_pubsub_jetstream_pubsub_jetstream_la_CFLAGS = $(AM_CFLAGS) $(PLUGIN_COMPILE_FLAGS) \
	$(LIBNATS_CFLAGS) $(JANSSON_CFLAGS) $(PTHREAD_CFLAGS)
plugins_pubsub_jetstream_pubsub_jetstream_la_LDFLAGS = $(PLUGIN_LINK_FLAGS)
plugins_pubsub_jetstream_pubsub_jetstream_la_LIBADD = $(LIBNATS_LIBS) $(JANSSON_LIBS) $(PTHREAD_LIBS)
endif

# Shipped by `make dist` even when this machine does not build the plugin.
EXTRA_DIST += plugins/pubsub-jetstream/pubsub_jetstream.c plugins/pubsub-jetstream/README.md
