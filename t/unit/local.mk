# Unit tests of the core (Check).
if HAVE_CHECK
check_PROGRAMS += t/unit/check_core
TESTS += t/unit/check_core
t_unit_check_core_SOURCES = t/unit/check_core.c
t_unit_check_core_CPPFLAGS = -I$(top_srcdir)/core -I$(top_srcdir)/plugin-sdk/include
t_unit_check_core_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) $(JANSSON_CFLAGS) $(YAML_CFLAGS)
t_unit_check_core_LDADD = core/libdaprcore.la $(CHECK_LIBS)
endif
