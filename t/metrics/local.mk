# Metrics: unit tests of the registry and format (Check), and pytest
# against real daprd processes scraped by promtool and a real prometheus.
if HAVE_CHECK
check_PROGRAMS += t/unit/check_metrics
TESTS += t/unit/check_metrics
t_unit_check_metrics_SOURCES = t/unit/check_metrics.c
t_unit_check_metrics_CPPFLAGS = -I$(top_srcdir)/core -I$(top_srcdir)/plugin-sdk/include
t_unit_check_metrics_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) $(PTHREAD_CFLAGS)
t_unit_check_metrics_LDADD = core/libdaprcore.la $(CHECK_LIBS) $(PTHREAD_LIBS)
endif
TESTS += t/metrics/run.sh
EXTRA_DIST += t/metrics/run.sh t/metrics/test_metrics.py
