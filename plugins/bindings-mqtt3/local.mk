# bindings.mqtt3: MQTT 3.1.1 input and output binding with libmosquitto
# (QoS 1; PUBACK only after the app answered 2xx).  Built only when
# configure found libmosquitto (BUILD_BINDINGS_MQTT3).
if BUILD_BINDINGS_MQTT3
plugin_LTLIBRARIES += plugins/bindings-mqtt3/bindings-mqtt3.la
plugins_bindings_mqtt3_bindings_mqtt3_la_SOURCES = plugins/bindings-mqtt3/mqtt3_binding.c
plugins_bindings_mqtt3_bindings_mqtt3_la_CFLAGS = $(AM_CFLAGS) $(PLUGIN_COMPILE_FLAGS) \
	$(LIBMOSQUITTO_CFLAGS) $(PTHREAD_CFLAGS)
plugins_bindings_mqtt3_bindings_mqtt3_la_LDFLAGS = $(PLUGIN_LINK_FLAGS)
plugins_bindings_mqtt3_bindings_mqtt3_la_LIBADD = $(LIBMOSQUITTO_LIBS) $(PTHREAD_LIBS)
endif

# Shipped by `make dist` even when this machine does not build the plugin.
EXTRA_DIST += plugins/bindings-mqtt3/mqtt3_binding.c plugins/bindings-mqtt3/README.md
