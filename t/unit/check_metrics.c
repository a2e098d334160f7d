/*
 * check_metrics.c - unit tests of core/metrics.c: the registry, the text
 * exposition format (escaping, histogram buckets, UTF-8 repair), the
 * series cap, Dapr's families and label sets, and concurrent updates.
 */
#include "config.h"

#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

static void start(int increased)
{
    metrics_config cfg = {.app_id = "app1", .ns = "default", .increased_cardinality = increased};
    ck_assert_int_eq(metrics_init(&cfg), 0);
    ck_assert(metrics_enabled());
}

/* The text of the sample line beginning with prefix (a whole line up to
 * the value), or NULL. */
static const char *find_line(const char *text, const char *prefix)
{
    size_t n = strlen(prefix);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, prefix, n) == 0)
            return p;
    return NULL;
}

static double value_of(const char *text, const char *series)
{
    char prefix[1024];
    snprintf(prefix, sizeof prefix, "%s ", series);
    const char *l = find_line(text, prefix);
    ck_assert_msg(l != NULL, "series %s not in:\n%s", series, text);
    return strtod(l + strlen(prefix), NULL);
}

START_TEST(disabled_is_noop)
{
    ck_assert(!metrics_enabled());
    ck_assert_ptr_null(metrics_render(NULL));
    ck_assert_ptr_null(metrics_family("x", "y", METRIC_COUNTER, NULL, NULL, 0));
    /* No crash, nothing recorded. */
    metrics_component_op(METRICS_STATE, "s", METRICS_OP_GET, 1, 1.0);
    metrics_resiliency_activation("r", METRICS_POLICY_RETRY, METRICS_FLOW_OUTBOUND, "app_x", NULL);
    metrics_counter_add(NULL, NULL, 1);
    metrics_shutdown();
}
END_TEST

START_TEST(counter_gauge_format)
{
    start(0);
    metric_family *c = metrics_family("t_requests", "Help with \\ and\nnewline.", METRIC_COUNTER,
                                      (const char *const[]){"a", "b", NULL}, NULL, 0);
    metric_family *g = metrics_family("t_gauge", "A gauge.", METRIC_GAUGE, (const char *const[]){NULL}, NULL, 0);
    metrics_counter_add(c, (const char *const[]){"x", "y"}, 1);
    metrics_counter_add(c, (const char *const[]){"x", "y"}, 2);
    metrics_counter_add(c, (const char *const[]){"x", NULL}, 1);
    metrics_counter_add(c, (const char *const[]){"x", "y"}, -5); /* refused: counters only go up */
    metrics_counter_add(c, (const char *const[]){"q\"uo\\te\nx", "y"}, 1);
    metrics_gauge_set(g, NULL, 7.5);
    metrics_gauge_add(g, NULL, -2);
    size_t len;
    char *t = metrics_render(&len);
    ck_assert_uint_eq(strlen(t), len);
    ck_assert_ptr_nonnull(strstr(t, "# HELP t_requests Help with \\\\ and\\nnewline.\n# TYPE t_requests counter\n"));
    ck_assert(value_of(t, "t_requests{a=\"x\",b=\"y\"}") == 3);
    ck_assert(value_of(t, "t_requests{a=\"x\",b=\"\"}") == 1);
    ck_assert(value_of(t, "t_requests{a=\"q\\\"uo\\\\te\\nx\",b=\"y\"}") == 1);
    ck_assert_ptr_nonnull(strstr(t, "# TYPE t_gauge gauge\nt_gauge 5.5\n"));
    /* Process metrics are there. */
    ck_assert(value_of(t, "process_open_fds") >= 3);
    ck_assert(value_of(t, "process_resident_memory_bytes") > 0);
    ck_assert(value_of(t, "process_start_time_seconds") > 1e9);
    free(t);
    metrics_shutdown();
    ck_assert(!metrics_enabled());
}
END_TEST

START_TEST(histogram_buckets_cumulative)
{
    start(0);
    const double b[] = {1, 5, 10};
    metric_family *h = metrics_family("t_lat", "Latency.", METRIC_HISTOGRAM, (const char *const[]){"op", NULL}, b, 3);
    const double obs[] = {0.5, 1, 3, 7, 10, 11, 1000};
    for (size_t i = 0; i < sizeof obs / sizeof obs[0]; i++)
        metrics_histogram_observe(h, (const char *const[]){"get"}, obs[i]);
    char *t = metrics_render(NULL);
    /* le is inclusive: 1 falls in le="1", 10 in le="10". */
    ck_assert(value_of(t, "t_lat_bucket{op=\"get\",le=\"1\"}") == 2);
    ck_assert(value_of(t, "t_lat_bucket{op=\"get\",le=\"5\"}") == 3);
    ck_assert(value_of(t, "t_lat_bucket{op=\"get\",le=\"10\"}") == 5);
    ck_assert(value_of(t, "t_lat_bucket{op=\"get\",le=\"+Inf\"}") == 7);
    ck_assert(value_of(t, "t_lat_count{op=\"get\"}") == 7);
    ck_assert(value_of(t, "t_lat_sum{op=\"get\"}") == 1032.5);
    free(t);
    metrics_shutdown();
}
END_TEST

START_TEST(series_cap_counts_drops)
{
    start(0);
    metric_family *c = metrics_family("t_paths", "Paths.", METRIC_COUNTER, (const char *const[]){"path", NULL},
                                      NULL, 0);
    char v[32];
    for (int i = 0; i < METRICS_MAX_SERIES + 50; i++) {
        snprintf(v, sizeof v, "/k/%d", i);
        metrics_counter_add(c, (const char *const[]){v}, 1);
    }
    /* An existing series still counts after the cap. */
    metrics_counter_add(c, (const char *const[]){"/k/0"}, 1);
    char *t = metrics_render(NULL);
    size_t n = 0;
    for (const char *p = t; (p = strstr(p, "\nt_paths{")); p++)
        n++;
    ck_assert_uint_eq(n, METRICS_MAX_SERIES);
    ck_assert(value_of(t, "t_paths{path=\"/k/0\"}") == 2);
    ck_assert(value_of(t, "dapr_metrics_series_dropped_total{metric=\"t_paths\"}") == 50);
    free(t);
    metrics_shutdown();
}
END_TEST

START_TEST(invalid_utf8_repaired)
{
    start(0);
    metric_family *c = metrics_family("t_u", "U.", METRIC_COUNTER, (const char *const[]){"v", NULL}, NULL, 0);
    metrics_counter_add(c, (const char *const[]){"a\xff" "b\xc3\xa9"}, 1);
    char *t = metrics_render(NULL);
    ck_assert(value_of(t, "t_u{v=\"a\xef\xbf\xbd" "b\xc3\xa9\"}") == 1);
    free(t);
    metrics_shutdown();
}
END_TEST

START_TEST(long_label_values_cut)
{
    start(0);
    metric_family *c = metrics_family("t_long", "L.", METRIC_COUNTER, (const char *const[]){"v", NULL}, NULL, 0);
    char a[1000], b[1000];
    memset(a, 'x', sizeof a - 1);
    a[sizeof a - 1] = '\0';
    memcpy(b, a, sizeof b);
    b[900] = 'y'; /* differs only after the cut: the same series */
    metrics_counter_add(c, (const char *const[]){a}, 1);
    metrics_counter_add(c, (const char *const[]){b}, 1);
    char *t = metrics_render(NULL);
    char want[300];
    memset(want, 'x', 256);
    want[256] = '\0';
    char series[400];
    snprintf(series, sizeof series, "t_long{v=\"%s\"}", want);
    ck_assert(value_of(t, series) == 2);
    free(t);
    metrics_shutdown();
}
END_TEST

START_TEST(dapr_families)
{
    start(0);
    metrics_component_op(METRICS_STATE, "store", METRICS_OP_GET, 1, 3);
    metrics_component_op(METRICS_STATE, "store", METRICS_OP_SET, 0, 2000);
    metrics_component_op(METRICS_OUTPUT_BINDING, "b", "create", 1, 1);
    metrics_pubsub_egress("ps", "orders", 1, 4);
    metrics_pubsub_ingress("ps", "orders", "success", NULL, 6);
    metrics_input_binding("cron", 0, 2);
    metrics_component_loaded("state.redis");
    metrics_resiliency_loaded("myres");
    metrics_resiliency_activation("myres", METRICS_POLICY_RETRY, METRICS_FLOW_OUTBOUND, "statestore_store", "");
    metrics_resiliency_cb_state("myres", METRICS_FLOW_OUTBOUND, "app_b", METRICS_CB_OPEN);
    char *t = metrics_render(NULL);
    ck_assert(value_of(t, "dapr_component_state_count{app_id=\"app1\",component=\"store\",namespace=\"default\","
                          "operation=\"get\",success=\"true\"}") == 1);
    ck_assert(value_of(t, "dapr_component_state_latencies_bucket{app_id=\"app1\",component=\"store\","
                          "namespace=\"default\",operation=\"set\",success=\"false\",le=\"1000\"}") == 0);
    ck_assert(value_of(t, "dapr_component_state_latencies_bucket{app_id=\"app1\",component=\"store\","
                          "namespace=\"default\",operation=\"set\",success=\"false\",le=\"2000\"}") == 1);
    ck_assert(value_of(t, "dapr_component_output_binding_count{app_id=\"app1\",component=\"b\","
                          "namespace=\"default\",operation=\"create\",success=\"true\"}") == 1);
    ck_assert(value_of(t, "dapr_component_pubsub_egress_count{app_id=\"app1\",component=\"ps\","
                          "namespace=\"default\",success=\"true\",topic=\"orders\"}") == 1);
    ck_assert(value_of(t, "dapr_component_pubsub_ingress_count{app_id=\"app1\",component=\"ps\","
                          "namespace=\"default\",process_status=\"success\",status=\"success\",topic=\"orders\"}") == 1);
    ck_assert(value_of(t, "dapr_component_input_binding_count{app_id=\"app1\",component=\"cron\","
                          "namespace=\"default\",success=\"false\"}") == 1);
    ck_assert(value_of(t, "dapr_runtime_component_loaded{app_id=\"app1\"}") == 1);
    ck_assert(value_of(t, "dapr_runtime_component_init_total{app_id=\"app1\",component=\"state.redis\"}") == 1);
    ck_assert(value_of(t, "dapr_resiliency_loaded{app_id=\"app1\",name=\"myres\",namespace=\"default\"}") == 1);
    ck_assert(value_of(t, "dapr_resiliency_activations_total{app_id=\"app1\",flow_direction=\"outbound\","
                          "name=\"myres\",namespace=\"default\",policy=\"retry\",status=\"\","
                          "target=\"statestore_store\"}") == 1);
    ck_assert(value_of(t, "dapr_resiliency_cb_state{app_id=\"app1\",flow_direction=\"outbound\",name=\"myres\","
                          "namespace=\"default\",policy=\"circuitbreaker\",status=\"open\",target=\"app_b\"}") == 1);
    ck_assert(value_of(t, "dapr_resiliency_cb_state{app_id=\"app1\",flow_direction=\"outbound\",name=\"myres\","
                          "namespace=\"default\",policy=\"circuitbreaker\",status=\"closed\",target=\"app_b\"}") == 0);
    /* Dapr's latency buckets, in milliseconds. */
    ck_assert_ptr_nonnull(strstr(t, "le=\"100000\"}"));
    ck_assert_uint_eq(metrics_latency_buckets_n, 34);
    free(t);
    metrics_shutdown();
}
END_TEST

#define THREADS 4
#define PER_THREAD 20000

static void *hammer(void *arg)
{
    (void)arg;
    for (int i = 0; i < PER_THREAD; i++) {
        metrics_component_op(METRICS_STATE, i % 2 ? "a" : "b", METRICS_OP_GET, 1, (double)(i % 50));
        metrics_pubsub_egress("ps", "t", 1, 1);
    }
    return NULL;
}

START_TEST(concurrent_updates)
{
    start(0);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, hammer, NULL), 0);
    /* Scrapes while the threads record. */
    for (int i = 0; i < 20; i++)
        free(metrics_render(NULL));
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    char *t = metrics_render(NULL);
    double a = value_of(t, "dapr_component_state_count{app_id=\"app1\",component=\"a\",namespace=\"default\","
                           "operation=\"get\",success=\"true\"}");
    double b = value_of(t, "dapr_component_state_count{app_id=\"app1\",component=\"b\",namespace=\"default\","
                           "operation=\"get\",success=\"true\"}");
    ck_assert(a + b == THREADS * PER_THREAD);
    ck_assert(value_of(t, "dapr_component_pubsub_egress_latencies_count{app_id=\"app1\",component=\"ps\","
                          "namespace=\"default\",success=\"true\",topic=\"t\"}") == THREADS * PER_THREAD);
    free(t);
    metrics_shutdown();
}
END_TEST

static Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("registry");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, disabled_is_noop);
    tcase_add_test(tc, counter_gauge_format);
    tcase_add_test(tc, histogram_buckets_cumulative);
    tcase_add_test(tc, series_cap_counts_drops);
    tcase_add_test(tc, invalid_utf8_repaired);
    tcase_add_test(tc, long_label_values_cut);
    tcase_add_test(tc, dapr_families);
    tcase_add_test(tc, concurrent_updates);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(metrics_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
