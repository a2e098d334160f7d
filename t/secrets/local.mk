# Secrets building block tests (pytest): the secrets API, secret scopes,
# secretKeyRef resolution at start-up and the planted-secret leak test,
# against the secretstores.local.file / local.env plugins and a probe
# store built here (check_LTLIBRARIES: `make check` only, never installed).
check_LTLIBRARIES += t/secrets/secretstore-probe.la
t_secrets_secretstore_probe_la_SOURCES = t/secrets/probe_store.c
t_secrets_secretstore_probe_la_CFLAGS = $(AM_CFLAGS) $(PLUGIN_COMPILE_FLAGS)
t_secrets_secretstore_probe_la_LDFLAGS = $(PLUGIN_LINK_FLAGS) -rpath /nowhere

# Unit tests of scrubbing, scopes and envRef (Check).
if HAVE_CHECK
check_PROGRAMS += t/secrets/check_secrets
TESTS += t/secrets/check_secrets
t_secrets_check_secrets_SOURCES = t/secrets/check_secrets.c
t_secrets_check_secrets_CPPFLAGS = -I$(top_srcdir)/core -I$(top_srcdir)/plugin-sdk/include
t_secrets_check_secrets_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) $(JANSSON_CFLAGS) $(YAML_CFLAGS)
t_secrets_check_secrets_LDADD = core/libdaprcore.la $(CHECK_LIBS)
endif
EXTRA_DIST += t/secrets/check_secrets.c

TESTS += t/secrets/run.sh
EXTRA_DIST += t/secrets/run.sh \
	t/secrets/conftest.py \
	t/secrets/test_api.py \
	t/secrets/test_refs.py \
	t/secrets/test_leak.py
