# bindings.kafka: Dapr's Kafka input and output binding through
# librdkafka, a thin layer over plugins/kafka-common (shared with
# pubsub.kafka).  Built only when configure found librdkafka (BUILD_KAFKA).
if BUILD_KAFKA
plugin_LTLIBRARIES += plugins/bindings-kafka/bindings-kafka.la
plugins_bindings_kafka_bindings_kafka_la_SOURCES = plugins/bindings-kafka/kafka_binding.c
plugins_bindings_kafka_bindings_kafka_la_CFLAGS = $(AM_CFLAGS) $(PLUGIN_COMPILE_FLAGS) \
	$(RDKAFKA_CFLAGS) $(PTHREAD_CFLAGS)
plugins_bindings_kafka_bindings_kafka_la_LDFLAGS = $(PLUGIN_LINK_FLAGS)
plugins_bindings_kafka_bindings_kafka_la_LIBADD = plugins/kafka-common/libdaprkafka.la \
	$(RDKAFKA_LIBS) $(JANSSON_LIBS) $(PTHREAD_LIBS)
endif

# Shipped by `make dist` even when this machine does not build the plugin.
EXTRA_DIST += plugins/bindings-kafka/kafka_binding.c plugins/bindings-kafka/README.md
