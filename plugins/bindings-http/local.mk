# bindings.http: HTTP requests with libcurl (curl multi on the instance's
# own thread).  Built only when configure found libcurl
# (BUILD_BINDINGS_HTTP).
if BUILD_BINDINGS_HTTP
plugin_LTLIBRARIES += plugins/bindings-http/bindings-http.la
plugins_bindings_http_bindings_http_la_SOURCES = plugins/bindings-http/http_binding.c
plugins_bindings_http_bindings_http_la_CFLAGS = $(AM_CFLAGS) $(PLUGIN_COMPILE_FLAGS) \
	$(LIBCURL_CFLAGS) $(PTHREAD_CFLAGS)
plugins_bindings_http_bindings_http_la_LDFLAGS = $(PLUGIN_LINK_FLAGS)
plugins_bindings_http_bindings_http_la_LIBADD = $(LIBCURL_LIBS) $(PTHREAD_LIBS)
endif

# Shipped by `make dist` even when this machine does not build the plugin.
EXTRA_DIST += plugins/bindings-http/http_binding.c plugins/bindings-http/README.md
