# Distributed tracing: daprd sidecars and test apps export spans to a real
# Zipkin server (the io.zipkin:zipkin-server jar from Maven Central, cached
# in the build tree) and to a strict OTLP/HTTP JSON receiver (Python with
# opentelemetry-proto from PyPI in a venv in the build tree).
TESTS += t/tracing/run.sh
EXTRA_DIST += t/tracing/run.sh \
	t/tracing/conftest.py \
	t/tracing/otlp_receiver.py \
	t/tracing/test_zipkin.py \
	t/tracing/test_otlp.py \
	t/tracing/test_sampling.py \
	t/tracing/test_dead_collector.py \
	t/tracing/test_secrets.py \
	t/tracing/test_pubsub_redis.py

# Unit tests of the sampler, traceparent derivation and spec.tracing.
if HAVE_CHECK
check_PROGRAMS += t/tracing/check_tracing
TESTS += t/tracing/check_tracing
t_tracing_check_tracing_SOURCES = t/tracing/check_tracing.c
t_tracing_check_tracing_CPPFLAGS = -I$(top_srcdir)/core -I$(top_srcdir)/plugin-sdk/include
t_tracing_check_tracing_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) $(JANSSON_CFLAGS) $(YAML_CFLAGS) $(LIBEVENT_CFLAGS)
t_tracing_check_tracing_LDADD = core/libdaprcore.la $(CHECK_LIBS)
endif

# The Zipkin jar and the OTLP receiver's venv are cached in the build tree
# between runs; `make clean` removes them.
CLEAN_LOCAL_HOOKS += clean-tracing-cache
clean-tracing-cache:
	rm -rf t/tracing/jars t/tracing/venv t/tracing/pip.log
.PHONY: clean-tracing-cache
