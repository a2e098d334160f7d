# bindings.localstorage: files under a root folder (always built).  Names
# are confined to rootPath by safe_path.c (openat2 RESOLVE_BENEATH, or a
# walk that refuses symbolic links), which its unit test links directly.
plugin_LTLIBRARIES += plugins/bindings-localstorage/bindings-localstorage.la
plugins_bindings_localstorage_bindings_localstorage_la_SOURCES = \
	plugins/bindings-localstorage/localstorage.c \
	plugins/bindings-localstorage/safe_path.c plugins/bindings-localstorage/safe_path.h
plugins_bindings_localstorage_bindings_localstorage_la_CFLAGS = $(AM_CFLAGS) $(PLUGIN_COMPILE_FLAGS)
plugins_bindings_localstorage_bindings_localstorage_la_LDFLAGS = $(PLUGIN_LINK_FLAGS)

if HAVE_CHECK
check_PROGRAMS += plugins/bindings-localstorage/check_safe_path
TESTS += plugins/bindings-localstorage/check_safe_path
plugins_bindings_localstorage_check_safe_path_SOURCES = plugins/bindings-localstorage/check_safe_path.c \
	plugins/bindings-localstorage/safe_path.c plugins/bindings-localstorage/safe_path.h
plugins_bindings_localstorage_check_safe_path_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
plugins_bindings_localstorage_check_safe_path_LDADD = $(CHECK_LIBS)
endif
EXTRA_DIST += plugins/bindings-localstorage/check_safe_path.c plugins/bindings-localstorage/README.md
