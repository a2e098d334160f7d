/*
 * check_tracing.c - unit tests of core/tracing.c and the spec.tracing
 * part of core/manifest.c: Dapr's sampler (parent-based, then
 * TraceIDRatioBased on the trace id's low 64 bits), traceparent
 * derivation, refusal of what cannot be honoured (OTLP gRPC, TLS), and
 * Configuration parsing.
 */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "manifest.h"
#include "trace.h"
#include "tracing.h"

static void init_rate(const char *rate)
{
    tracing_config c = {.app_id = "unit", .sampling_rate = rate};
    ck_assert_int_eq(tracing_init(&c), 0);
}

/* Sampled decision for a span whose parent is tp. */
static int sampled(const char *tp)
{
    trace_span *s = tracing_span_start("x", SPAN_KIND_SERVER, tp, NULL);
    int r = tracing_span_sampled(s);
    tracing_span_end(s);
    return r;
}

static const char *flags_of(const char *tp, char *buf)
{
    trace_span *s = tracing_span_start("x", SPAN_KIND_SERVER, tp, NULL);
    tracing_span_traceparent(s, buf);
    tracing_span_end(s);
    return buf + 53;
}

#define HI "4bf92f3577b34da6"

START_TEST(ratio_uses_low_bits)
{
    init_rate("0.5");
    /* (low64 >> 1) < 0.5 * 2^63  <=>  low64 < 2^63 */
    ck_assert(sampled("00-" HI "7fffffffffffffff-00f067aa0ba902b7-00"));
    ck_assert(!sampled("00-" HI "8000000000000000-00f067aa0ba902b7-00"));
    ck_assert(sampled("00-" HI "0000000000000001-00f067aa0ba902b7-00"));
}
END_TEST

START_TEST(sampled_parent_wins)
{
    init_rate("0.000001");
    ck_assert(sampled("00-" HI "ffffffffffffffff-00f067aa0ba902b7-01"));
    ck_assert(!sampled("00-" HI "ffffffffffffffff-00f067aa0ba902b7-00"));
    char buf[TRACEPARENT_LEN + 1];
    ck_assert_str_eq(flags_of("00-" HI "ffffffffffffffff-00f067aa0ba902b7-01", buf), "01");
    ck_assert_str_eq(flags_of("00-" HI "ffffffffffffffff-00f067aa0ba902b7-00", buf), "00");
}
END_TEST

START_TEST(rate_zero_is_off)
{
    init_rate("0");
    ck_assert(!sampled("00-" HI "0000000000000000-00f067aa0ba902b7-01"));
    ck_assert(!sampled(NULL));
    /* ... and passes the caller's decision on. */
    char buf[TRACEPARENT_LEN + 1];
    ck_assert_str_eq(flags_of("00-" HI "0000000000000000-00f067aa0ba902b7-01", buf), "01");
    ck_assert_str_eq(flags_of(NULL, buf), "00");
}
END_TEST

START_TEST(rate_one_and_default)
{
    init_rate("1");
    for (int i = 0; i < 50; i++)
        ck_assert(sampled(NULL));
    ck_assert(sampled("00-" HI "ffffffffffffffff-00f067aa0ba902b7-00"));
    init_rate(NULL); /* Dapr's default, 1/10000 */
    ck_assert(!sampled("00-" HI "ffffffffffffffff-00f067aa0ba902b7-00"));
    ck_assert(sampled("00-" HI "0000000000000000-00f067aa0ba902b7-00"));
    init_rate("not-a-number"); /* warned, default */
    ck_assert(!sampled("00-" HI "ffffffffffffffff-00f067aa0ba902b7-00"));
    ck_assert(sampled("00-" HI "0000000000000fff-00f067aa0ba902b7-00"));
}
END_TEST

START_TEST(child_traceparent)
{
    init_rate("1");
    const char *parent = "00-" HI "a3ce929d0e0e4736-00f067aa0ba902b7-01";
    trace_span *s = tracing_span_start("x", SPAN_KIND_CLIENT, parent, "k=v");
    char tp[TRACEPARENT_LEN + 1];
    tracing_span_traceparent(s, tp);
    ck_assert(trace_parent_valid(tp));
    ck_assert(strncmp(tp, parent, 36) == 0);                /* same trace */
    ck_assert(strncmp(tp + 36, parent + 36, 16) != 0);      /* a new span id */
    ck_assert_str_eq(tracing_span_tracestate(s), "k=v");
    trace_span *child = tracing_span_start("y", SPAN_KIND_CLIENT, tp, NULL);
    char tp2[TRACEPARENT_LEN + 1];
    tracing_span_traceparent(child, tp2);
    ck_assert(strncmp(tp2, tp, 36) == 0);
    tracing_span_end(child);
    tracing_span_end(s);
    /* Invalid parents start new traces. */
    const char *bad[] = {"", "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                         "00-" HI "a3ce929d0e0e4736-0000000000000000-01", "00-" HI "A3CE929D0E0E4736-00f067aa0ba902b7-01"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        s = tracing_span_start("z", SPAN_KIND_SERVER, bad[i], NULL);
        tracing_span_traceparent(s, tp);
        ck_assert(trace_parent_valid(tp));
        ck_assert(strncmp(tp + 3, HI, 16) != 0);
        tracing_span_end(s);
    }
}
END_TEST

START_TEST(refusals)
{
    struct { const char *zipkin, *otel, *proto; int secure; int ok; } cases[] = {
        {NULL, "127.0.0.1:4317", "grpc", 0, 0},
        {NULL, "127.0.0.1:4317", NULL, 0, 0},        /* absent protocol: gRPC in Dapr */
        {NULL, "127.0.0.1:4318", "http", 1, 0},      /* isSecure */
        {NULL, "https://127.0.0.1:4318", "http", 0, 0},
        {NULL, "127.0.0.1:notaport", "http", 0, 0},
        {"https://127.0.0.1:9411/api/v2/spans", NULL, NULL, 0, 0},
        {"http://:9411/api/v2/spans", NULL, NULL, 0, 0},
        {"http://127.0.0.1:99999/api/v2/spans", NULL, NULL, 0, 0},
        {"http://127.0.0.1:9411/api/v2/spans", NULL, NULL, 0, 1},
        {NULL, "127.0.0.1:4318", "http", 0, 1},
        {NULL, "localhost", "http", 0, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        tracing_config c = {.app_id = "unit", .sampling_rate = "1", .zipkin_endpoint = cases[i].zipkin,
                            .otel_endpoint = cases[i].otel, .otel_protocol = cases[i].proto,
                            .otel_is_secure = cases[i].secure};
        int rc = tracing_init(&c);
        ck_assert_msg((rc == 0) == cases[i].ok, "case %zu: rc %d", i, rc);
        tracing_shutdown();
    }
}
END_TEST

START_TEST(otel_environment)
{
    struct { const char *endpoint, *proto, *insecure; int ok; } cases[] = {
        {"http://127.0.0.1:4318", NULL, NULL, 1},             /* http/protobuf by default */
        {"http://127.0.0.1:4318/base", "http/json", NULL, 1},
        {"http://127.0.0.1:4317", "grpc", NULL, 0},
        {"https://127.0.0.1:4318", "http/json", NULL, 0},
        {"127.0.0.1:4318", "http/json", NULL, 0},             /* no scheme, not insecure: TLS */
        {"127.0.0.1:4318", "http/json", "true", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        setenv("OTEL_EXPORTER_OTLP_ENDPOINT", cases[i].endpoint, 1);
        if (cases[i].proto) setenv("OTEL_EXPORTER_OTLP_PROTOCOL", cases[i].proto, 1);
        else unsetenv("OTEL_EXPORTER_OTLP_PROTOCOL");
        if (cases[i].insecure) setenv("OTEL_EXPORTER_OTLP_INSECURE", cases[i].insecure, 1);
        else unsetenv("OTEL_EXPORTER_OTLP_INSECURE");
        tracing_config c = {.app_id = "unit", .sampling_rate = "1"};
        int rc = tracing_init(&c);
        ck_assert_msg((rc == 0) == cases[i].ok, "case %zu: rc %d", i, rc);
        tracing_shutdown();
    }
    unsetenv("OTEL_EXPORTER_OTLP_ENDPOINT");
}
END_TEST

/* A span pushed while no collector answers: queued, then counted as
 * failed at shutdown; the queue bound holds. */
START_TEST(queue_bound)
{
    tracing_config c = {.app_id = "unit", .sampling_rate = "1",
                        .zipkin_endpoint = "http://127.0.0.1:1/api/v2/spans", .queue_max = 8};
    ck_assert_int_eq(tracing_init(&c), 0);
    for (int i = 0; i < 100; i++) {
        trace_span *s = tracing_span_start("q", SPAN_KIND_SERVER, NULL, NULL);
        tracing_span_attr(s, "k", "v");
        tracing_span_end(s);
    }
    tracing_stats st;
    tracing_get_stats(&st);
    ck_assert_uint_eq(st.queue_max, 8);
    ck_assert_uint_le(st.queue_high, 8);
    ck_assert_uint_eq(st.sampled + st.dropped, 100);
    ck_assert_uint_gt(st.dropped, 0);
    tracing_shutdown();
    tracing_get_stats(&st);
    ck_assert_uint_eq(st.exported, 0);
    ck_assert_uint_eq(st.failed, st.sampled);
}
END_TEST

static char *write_config(const char *tracing)
{
    char *path = strdup("/tmp/check_tracing_XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: t\nspec:\n%s", tracing);
    fclose(f);
    return path;
}

START_TEST(manifest_tracing)
{
    char *p = write_config("  tracing:\n    samplingRate: \"0.25\"\n    stdout: true\n"
                           "    zipkin:\n      endpointAddress: \"http://z:9411/api/v2/spans\"\n"
                           "    otel:\n      endpointAddress: \"o:4318\"\n      isSecure: false\n"
                           "      protocol: http\n");
    configuration cfg = {0};
    char *err = NULL;
    ck_assert_int_eq(manifest_load_configuration(p, &cfg, &err), 0);
    ck_assert_str_eq(cfg.tracing_sampling_rate, "0.25");
    ck_assert_int_eq(cfg.tracing_stdout, 1);
    ck_assert_str_eq(cfg.tracing_zipkin_endpoint, "http://z:9411/api/v2/spans");
    ck_assert_str_eq(cfg.tracing_otel_endpoint, "o:4318");
    ck_assert_int_eq(cfg.tracing_otel_is_secure, 0);
    ck_assert_str_eq(cfg.tracing_otel_protocol, "http");
    configuration_free(&cfg);
    unlink(p);
    free(p);

    const char *bad[] = {"  tracing: [1]\n", "  tracing:\n    stdout: maybe\n",
                         "  tracing:\n    otel:\n      isSecure: perhaps\n",
                         "  tracing:\n    zipkin:\n      endpointAddress: [a]\n"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        p = write_config(bad[i]);
        configuration c2 = {0};
        err = NULL;
        ck_assert_msg(manifest_load_configuration(p, &c2, &err) != 0, "accepted: %s", bad[i]);
        ck_assert(err && strstr(err, "spec.tracing"));
        free(err);
        configuration_free(&c2);
        unlink(p);
        free(p);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tracing");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, ratio_uses_low_bits);
    tcase_add_test(tc, sampled_parent_wins);
    tcase_add_test(tc, rate_zero_is_off);
    tcase_add_test(tc, rate_one_and_default);
    tcase_add_test(tc, child_traceparent);
    tcase_add_test(tc, refusals);
    tcase_add_test(tc, otel_environment);
    tcase_add_test(tc, queue_bound);
    tcase_add_test(tc, manifest_tracing);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
