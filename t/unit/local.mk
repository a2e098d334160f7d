# Unit tests of the core (Check).
if HAVE_CHECK
check_PROGRAMS += t/unit/check_core
TESTS += t/unit/check_core
t_unit_check_core_SOURCES = t/unit/check_core.c
t_unit_check_core_CPPFLAGS = -I$(top_srcdir)/core -I$(top_srcdir)/plugin-sdk/include
t_unit_check_core_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) $(JANSSON_CFLAGS) $(YAML_CFLAGS)
t_unit_check_core_LDADD = core/libdaprcore.la $(CHECK_LIBS)

# The resiliency policy engine (core/resiliency.c).
check_PROGRAMS += t/unit/check_resiliency
TESTS += t/unit/check_resiliency
t_unit_check_resiliency_SOURCES = t/unit/check_resiliency.c
t_unit_check_resiliency_CPPFLAGS = -I$(top_srcdir)/core -I$(top_srcdir)/plugin-sdk/include
t_unit_check_resiliency_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) $(JANSSON_CFLAGS) $(YAML_CFLAGS) $(LIBEVENT_CFLAGS)
t_unit_check_resiliency_LDADD = core/libdaprcore.la $(CHECK_LIBS)
endif
