# libdaprkafka: the Kafka client code shared by the Kafka plugins
# (pubsub.kafka and bindings.kafka): metadata parsing, a producer
# with delivery reports, and a consumer-group member that commits offsets
# only after the acks.  A libtool convenience library: built with PIC and
# linked into each plugin .so, never installed, its symbols hidden.
if BUILD_KAFKA
noinst_LTLIBRARIES += plugins/kafka-common/libdaprkafka.la
plugins_kafka_common_libdaprkafka_la_SOURCES = \
	plugins/kafka-common/dk.h \
	plugins/kafka-common/dk_config.c \
	plugins/kafka-common/dk_producer.c \
	plugins/kafka-common/dk_consumer.c
plugins_kafka_common_libdaprkafka_la_CFLAGS = $(AM_CFLAGS) $(PLUGIN_COMPILE_FLAGS) \
	$(RDKAFKA_CFLAGS) $(JANSSON_CFLAGS) $(PTHREAD_CFLAGS)
plugins_kafka_common_libdaprkafka_la_LIBADD = $(RDKAFKA_LIBS) $(JANSSON_LIBS) $(PTHREAD_LIBS)

# Unit tests of the metadata parsing (no broker needed).
if HAVE_CHECK
check_PROGRAMS += plugins/kafka-common/check_dk_config
TESTS += plugins/kafka-common/check_dk_config
plugins_kafka_common_check_dk_config_SOURCES = plugins/kafka-common/check_dk_config.c
plugins_kafka_common_check_dk_config_CFLAGS = $(AM_CFLAGS) -I$(top_srcdir)/plugin-sdk/include \
	$(RDKAFKA_CFLAGS) $(CHECK_CFLAGS)
plugins_kafka_common_check_dk_config_LDADD = plugins/kafka-common/libdaprkafka.la $(CHECK_LIBS)
endif
endif

EXTRA_DIST += plugins/kafka-common/dk.h plugins/kafka-common/dk_config.c \
	plugins/kafka-common/dk_producer.c plugins/kafka-common/dk_consumer.c \
	plugins/kafka-common/check_dk_config.c
