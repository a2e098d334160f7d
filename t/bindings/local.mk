# Bindings building block tests (pytest): the output binding API with
# bindings.localstorage (containment in rootPath), bindings.http against a
# local HTTP(S) server, and input bindings with bindings.cron (discovery,
# delivery, timing, pausing while the app is unhealthy).
TESTS += t/bindings/run.sh
EXTRA_DIST += t/bindings/run.sh \
	t/bindings/conftest.py \
	t/bindings/bindings_app.py \
	t/bindings/target_server.py \
	t/bindings/test_output.py \
	t/bindings/test_http.py \
	t/bindings/test_input.py \
	t/bindings/test_dual.py

# A test plugin that is both an input and an output binding
# (check_LTLIBRARIES: `make check` only, never installed).
check_LTLIBRARIES += t/bindings/bindings-probe.la
t_bindings_bindings_probe_la_SOURCES = t/bindings/probe_binding.c
t_bindings_bindings_probe_la_CFLAGS = $(AM_CFLAGS) $(PLUGIN_COMPILE_FLAGS) $(PTHREAD_CFLAGS)
t_bindings_bindings_probe_la_LDFLAGS = $(PLUGIN_LINK_FLAGS) -rpath /nowhere
t_bindings_bindings_probe_la_LIBADD = $(PTHREAD_LIBS)
