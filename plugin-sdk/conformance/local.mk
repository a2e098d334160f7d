# dapr-plugin-conformance: the state store and pub/sub conformance kit.  It uses only
# the public SDK headers, so third parties can run it on their plugins.
bin_PROGRAMS += plugin-sdk/conformance/dapr-plugin-conformance
plugin_sdk_conformance_dapr_plugin_conformance_SOURCES = \
	plugin-sdk/conformance/conformance.h \
	plugin-sdk/conformance/main.c \
	plugin-sdk/conformance/host.c \
	plugin-sdk/conformance/ops.c \
	plugin-sdk/conformance/suite.c \
	plugin-sdk/conformance/query.c \
	plugin-sdk/conformance/pubsub.h \
	plugin-sdk/conformance/pubsub_ops.c \
	plugin-sdk/conformance/suite_pubsub.c
plugin_sdk_conformance_dapr_plugin_conformance_CPPFLAGS = \
	-I$(top_srcdir)/plugin-sdk/include
plugin_sdk_conformance_dapr_plugin_conformance_CFLAGS = \
	$(AM_CFLAGS) $(JANSSON_CFLAGS) $(PTHREAD_CFLAGS)
plugin_sdk_conformance_dapr_plugin_conformance_LDADD = \
	$(JANSSON_LIBS) $(PTHREAD_LIBS)

# make check: run the kit against every state and pubsub plugin built here
# (the list is in the script; one line per plugin).
TESTS += plugin-sdk/conformance/run-conformance.sh
dist_noinst_SCRIPTS += plugin-sdk/conformance/run-conformance.sh
