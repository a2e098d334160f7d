# pubsub.jetstream against a real nats-server -js started by the driver:
# the conformance kit's pub/sub suite, init errors and auth, a plugin-level
# fault test (server killed and restarted) and one daprd run.
TESTS += t/jetstream/run.sh
EXTRA_DIST += t/jetstream/run.sh t/jetstream/js_tool.c

# The driver's helper: creates streams, reads consumer state, and runs
# the fault test as a minimal plugin host (`make check` only).
if BUILD_PUBSUB_JETSTREAM
check_PROGRAMS += t/jetstream/js_tool
t_jetstream_js_tool_SOURCES = t/jetstream/js_tool.c
t_jetstream_js_tool_CPPFLAGS = -I$(top_srcdir)/plugin-sdk/include
t_jetstream_js_tool_CFLAGS = $(AM_CFLAGS) $(LIBNATS_CFLAGS) $(PTHREAD_CFLAGS)
t_jetstream_js_tool_LDADD = $(LIBNATS_LIBS) $(PTHREAD_LIBS)
endif
