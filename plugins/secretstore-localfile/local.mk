# secretstores.local.file: secrets from a local JSON file (always built).
plugin_LTLIBRARIES += plugins/secretstore-localfile/secretstore-localfile.la
plugins_secretstore_localfile_secretstore_localfile_la_SOURCES = \
	plugins/secretstore-localfile/secretstore_localfile.c
plugins_secretstore_localfile_secretstore_localfile_la_CFLAGS = $(AM_CFLAGS) $(PLUGIN_COMPILE_FLAGS) \
	$(JANSSON_CFLAGS)
plugins_secretstore_localfile_secretstore_localfile_la_LDFLAGS = $(PLUGIN_LINK_FLAGS)
plugins_secretstore_localfile_secretstore_localfile_la_LIBADD = $(JANSSON_LIBS)
