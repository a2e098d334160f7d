# daprd: the sidecar.  The core is a convenience library so that the unit
# tests link the same objects.
noinst_LTLIBRARIES += core/libdaprcore.la
core_libdaprcore_la_SOURCES = \
	core/api.h \
	core/api_bindings.c \
	core/api_invoke.c \
	core/api_logging.c core/api_logging.h \
	core/api_metadata.c \
	core/api_pubsub.c \
	core/api_secrets.c \
	core/api_state.c \
	core/cel.c core/cel.h \
	core/app_channel.c core/app_channel.h \
	core/bindings.c core/bindings.h \
	core/cloudevent.c core/cloudevent.h \
	core/http_client.c core/http_client.h \
	core/nameres.c core/nameres.h \
	core/pubsub.c core/pubsub.h \
	core/resiliency.c core/resiliency.h \
	core/trace.c core/trace.h \
	core/tracing.c core/tracing.h core/tracing_api.c \
	core/trace_export.c core/trace_export.h \
	core/component.c core/component.h \
	core/http_api.c core/http_api.h \
	core/json_out.c core/json_out.h \
	core/kv_list.c core/kv_list.h \
	core/log.c core/log.h \
	core/loop.c core/loop.h \
	core/manifest.c core/manifest.h \
	core/metrics.c core/metrics.h \
	core/plugin_loader.c core/plugin_loader.h \
	core/runtime.h \
	core/secrets.c core/secrets.h \
	core/util.c core/util.h \
	core/uuid_gen.c core/uuid_gen.h \
	core/workers.c core/workers.h
core_libdaprcore_la_CPPFLAGS = -I$(top_srcdir)/plugin-sdk/include -DPLUGINDIR='"$(plugindir)"'
core_libdaprcore_la_CFLAGS = $(AM_CFLAGS) $(LIBEVENT_CFLAGS) $(OPENSSL_CFLAGS) $(JANSSON_CFLAGS) $(YAML_CFLAGS) \
	$(SYSTEMD_CFLAGS) $(PTHREAD_CFLAGS)
core_libdaprcore_la_LIBADD = $(LIBEVENT_LIBS) $(OPENSSL_LIBS) $(JANSSON_LIBS) $(YAML_LIBS) $(SYSTEMD_LIBS) \
	$(PTHREAD_LIBS) -lm

bin_PROGRAMS += core/daprd
core_daprd_SOURCES = core/daprd.c
core_daprd_CPPFLAGS = $(core_libdaprcore_la_CPPFLAGS)
core_daprd_CFLAGS = $(core_libdaprcore_la_CFLAGS)
core_daprd_LDADD = core/libdaprcore.la
