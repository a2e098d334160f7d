# pubsub.kafka against librdkafka's mock Kafka cluster (mock-cluster, a
# helper built here): the conformance kit's pub/sub suite, a consumer
# restart counting message ids, an outage, and daprd publishing through
# curl.  kafka-client drives the plugin through the public ABI.
if BUILD_KAFKA
check_PROGRAMS += t/kafka/mock-cluster
t_kafka_mock_cluster_SOURCES = t/kafka/mock-cluster.c
t_kafka_mock_cluster_CFLAGS = $(AM_CFLAGS) $(RDKAFKA_CFLAGS) $(PTHREAD_CFLAGS)
t_kafka_mock_cluster_LDADD = $(RDKAFKA_LIBS) $(PTHREAD_LIBS)
check_PROGRAMS += t/kafka/kafka-client
t_kafka_kafka_client_SOURCES = t/kafka/kafka-client.c
t_kafka_kafka_client_CFLAGS = $(AM_CFLAGS) -I$(top_srcdir)/plugin-sdk/include $(PTHREAD_CFLAGS)
t_kafka_kafka_client_LDADD = $(PTHREAD_LIBS)
endif
TESTS += t/kafka/run.sh
# A real Apache Kafka broker (KRaft) from Maven Central for SASL, TLS and
# topic auto-creation; skipped without java/mvn or network.
TESTS += t/kafka/real-broker.sh
EXTRA_DIST += t/kafka/run.sh t/kafka/real-broker.sh t/kafka/kafka-broker.pom \
	t/kafka/mock-cluster.c t/kafka/kafka-client.c

# The broker's jars are cached in the build tree between runs.
CLEAN_LOCAL_HOOKS += clean-kafka-jars
clean-kafka-jars:
	rm -rf t/kafka/jars
.PHONY: clean-kafka-jars
