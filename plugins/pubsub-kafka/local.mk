# pubsub.kafka: Dapr pub/sub on Apache Kafka through librdkafka, a thin
# layer over plugins/kafka-common.  Built only when configure found
# librdkafka (BUILD_KAFKA).
if BUILD_KAFKA
plugin_LTLIBRARIES += plugins/pubsub-kafka/pubsub-kafka.la
plugins_pubsub_kafka_pubsub_kafka_la_SOURCES = plugins/pubsub-kafka/pubsub_kafka.c
plugins_pubsub_kafka_pubsub_kafka_la_CFLAGS = $(AM_CFLAGS) $(PLUGIN_COMPILE_FLAGS) \
	$(RDKAFKA_CFLAGS) $(PTHREAD_CFLAGS)
plugins_pubsub_kafka_pubsub_kafka_la_LDFLAGS = $(PLUGIN_LINK_FLAGS)
plugins_pubsub_kafka_pubsub_kafka_la_LIBADD = plugins/kafka-common/libdaprkafka.la \
	$(RDKAFKA_LIBS) $(JANSSON_LIBS) $(PTHREAD_LIBS)
endif

# Shipped by `make dist` even when this machine does not build the plugin.
EXTRA_DIST += plugins/pubsub-kafka/pubsub_kafka.c plugins/pubsub-kafka/README.md
