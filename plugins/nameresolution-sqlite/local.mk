# nameresolution.sqlite: sidecars on one machine find each other through a
# shared SQLite file, with the table layout of Dapr's own resolver.  Built
# when configure found sqlite3 (the conditional is named after state.sqlite,
# the first plugin that needed it).
if BUILD_STATE_SQLITE
plugin_LTLIBRARIES += plugins/nameresolution-sqlite/nameresolution-sqlite.la
plugins_nameresolution_sqlite_nameresolution_sqlite_la_SOURCES = \
	plugins/nameresolution-sqlite/nr_sqlite.c
plugins_nameresolution_sqlite_nameresolution_sqlite_la_CFLAGS = $(AM_CFLAGS) \
	$(PLUGIN_COMPILE_FLAGS) $(SQLITE3_CFLAGS) $(PTHREAD_CFLAGS)
plugins_nameresolution_sqlite_nameresolution_sqlite_la_LDFLAGS = $(PLUGIN_LINK_FLAGS)
plugins_nameresolution_sqlite_nameresolution_sqlite_la_LIBADD = $(SQLITE3_LIBS) $(PTHREAD_LIBS)

# Unit test: the plugin's source linked with a small fake host (the .so
# exports only its entry point, which is all the test calls).
if HAVE_CHECK
check_PROGRAMS += plugins/nameresolution-sqlite/test_nr_sqlite
TESTS += plugins/nameresolution-sqlite/test_nr_sqlite
plugins_nameresolution_sqlite_test_nr_sqlite_SOURCES = \
	plugins/nameresolution-sqlite/test_nr_sqlite.c \
	plugins/nameresolution-sqlite/nr_sqlite.c
plugins_nameresolution_sqlite_test_nr_sqlite_CFLAGS = $(AM_CFLAGS) \
	-I$(top_srcdir)/plugin-sdk/include $(CHECK_CFLAGS) $(SQLITE3_CFLAGS) $(PTHREAD_CFLAGS)
plugins_nameresolution_sqlite_test_nr_sqlite_LDADD = $(CHECK_LIBS) $(SQLITE3_LIBS) $(PTHREAD_LIBS)
endif
endif

# Shipped by `make dist` even when this machine does not build the plugin.
EXTRA_DIST += plugins/nameresolution-sqlite/nr_sqlite.c \
	plugins/nameresolution-sqlite/test_nr_sqlite.c
