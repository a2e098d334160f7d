# secretstores.local.env: environment variables as secrets (always built).
plugin_LTLIBRARIES += plugins/secretstore-localenv/secretstore-localenv.la
plugins_secretstore_localenv_secretstore_localenv_la_SOURCES = \
	plugins/secretstore-localenv/secretstore_localenv.c
plugins_secretstore_localenv_secretstore_localenv_la_CFLAGS = $(AM_CFLAGS) $(PLUGIN_COMPILE_FLAGS)
plugins_secretstore_localenv_secretstore_localenv_la_LDFLAGS = $(PLUGIN_LINK_FLAGS)
