# bindings.cron: an input binding that fires on a cron schedule, in UTC
# (always built).  The schedule parser is its own file so that the unit
# test (Check) links it directly.
plugin_LTLIBRARIES += plugins/bindings-cron/bindings-cron.la
plugins_bindings_cron_bindings_cron_la_SOURCES = \
	plugins/bindings-cron/cron_binding.c \
	plugins/bindings-cron/cron_schedule.c plugins/bindings-cron/cron_schedule.h
plugins_bindings_cron_bindings_cron_la_CFLAGS = $(AM_CFLAGS) $(PLUGIN_COMPILE_FLAGS) $(PTHREAD_CFLAGS)
plugins_bindings_cron_bindings_cron_la_LDFLAGS = $(PLUGIN_LINK_FLAGS)
plugins_bindings_cron_bindings_cron_la_LIBADD = $(PTHREAD_LIBS)

if HAVE_CHECK
check_PROGRAMS += plugins/bindings-cron/check_cron
TESTS += plugins/bindings-cron/check_cron
plugins_bindings_cron_check_cron_SOURCES = plugins/bindings-cron/check_cron.c \
	plugins/bindings-cron/cron_schedule.c plugins/bindings-cron/cron_schedule.h
plugins_bindings_cron_check_cron_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
plugins_bindings_cron_check_cron_LDADD = $(CHECK_LIBS)
endif
EXTRA_DIST += plugins/bindings-cron/check_cron.c plugins/bindings-cron/README.md
