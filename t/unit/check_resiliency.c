/*
 * check_resiliency.c - unit tests of the resiliency policy engine
 * (core/resiliency.c): parsing, merging and lookup of Resiliency
 * manifests, retry spacing, status-code matching, circuit breakers and
 * trip expressions, and the runner on a real event loop.
 */
#include "config.h"
#include "log.h"
#include "loop.h"
#include "resiliency.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

static const char *const TWO_MANIFESTS =
    "apiVersion: dapr.io/v1alpha1\n"
    "kind: Resiliency\n"
    "metadata:\n  name: first\n"
    "spec:\n"
    "  policies:\n"
    "    timeouts:\n      general: 5s\n      quick: 250ms\n"
    "    retries:\n"
    "      steady:\n        policy: constant\n        duration: 300ms\n        maxRetries: 3\n"
    "      expo:\n        policy: exponential\n        maxInterval: 2s\n"
    "      DefaultRetryPolicy:\n        duration: 1s\n        maxRetries: 1\n"
    "      DefaultStatestoreComponentOutboundRetryPolicy:\n        duration: 2s\n        maxRetries: 2\n"
    "    circuitBreakers:\n"
    "      cb:\n        maxRequests: 2\n        timeout: 0s\n        trip: consecutiveFailures >= 2\n"
    "  targets:\n"
    "    apps:\n      orders:\n        timeout: general\n        retry: steady\n        circuitBreaker: cb\n"
    "---\n"
    "apiVersion: dapr.io/v1alpha1\n"
    "kind: Resiliency\n"
    "metadata:\n  name: second\n"
    "spec:\n"
    "  policies:\n"
    "    timeouts:\n      general: 7s\n"
    "  targets:\n"
    "    components:\n"
    "      store:\n        outbound:\n          retry: expo\n          timeout: quick\n"
    "      queue:\n        inbound:\n          retry: steady\n";

START_TEST(durations_and_codes)
{
    int64_t ms;
    ck_assert_int_eq(resil_parse_duration("500ms", &ms), 0);
    ck_assert_int_eq(ms, 500);
    ck_assert_int_eq(resil_parse_duration("1m30s", &ms), 0);
    ck_assert_int_eq(ms, 90000);
    ck_assert_int_eq(resil_parse_duration("0", &ms), 0);
    ck_assert_int_eq(ms, 0);
    ck_assert_int_eq(resil_parse_duration("5", &ms), -1);   /* Go wants a unit */
    ck_assert_int_eq(resil_parse_duration("fast", &ms), -1);
    ck_assert_int_eq(resil_parse_duration("-1s", &ms), -1);

    int (*codes)[2];
    size_t n;
    char err[200];
    ck_assert_int_eq(resil_parse_codes("500-599, 429", 100, 599, &codes, &n, err, sizeof err), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(codes[0][0], 500);
    ck_assert_int_eq(codes[0][1], 599);
    ck_assert_int_eq(codes[1][0], 429);
    ck_assert_int_eq(codes[1][1], 429);
    resil_retry r = {.max_retries = 3, .http_codes = codes, .n_http_codes = n};
    ck_assert(resil_retry_matches_http(&r, 503));
    ck_assert(resil_retry_matches_http(&r, 429));
    ck_assert(!resil_retry_matches_http(&r, 404));
    ck_assert(resil_retry_matches_http(&r, 0)); /* no answer: always */
    free(codes);
    ck_assert_int_eq(resil_parse_codes("600", 100, 599, &codes, &n, err, sizeof err), -1);
    ck_assert_int_eq(resil_parse_codes("510-500", 100, 599, &codes, &n, err, sizeof err), -1);
    ck_assert_int_eq(resil_parse_codes("5xx", 100, 599, &codes, &n, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "5xx"));
    ck_assert_int_eq(resil_parse_codes("", 100, 599, &codes, &n, err, sizeof err), 0);
    ck_assert_uint_eq(n, 0);
}
END_TEST

START_TEST(retry_spacing)
{
    resil_retry c = {.policy = RESIL_CONSTANT, .duration_ms = 300, .max_retries = 2};
    ck_assert_int_eq(resil_retry_delay(&c, 1), 300);
    ck_assert_int_eq(resil_retry_delay(&c, 2), 300);
    ck_assert_int_eq(resil_retry_delay(&c, 3), -1);
    c.max_retries = 0;
    ck_assert_int_eq(resil_retry_delay(&c, 1), -1);
    c.max_retries = -1;
    ck_assert_int_eq(resil_retry_delay(&c, 100000), 300);
    ck_assert_int_eq(resil_retry_delay(NULL, 1), -1);

    resil_retry e = {.policy = RESIL_EXPONENTIAL, .initial_interval_ms = 500, .max_interval_ms = 2000,
                     .max_retries = -1};
    for (int i = 0; i < 200; i++) {
        int64_t d1 = resil_retry_delay(&e, 1), d2 = resil_retry_delay(&e, 2), d9 = resil_retry_delay(&e, 9);
        ck_assert(d1 >= 250 && d1 <= 750);
        ck_assert(d2 >= 375 && d2 <= 1125);
        ck_assert(d9 >= 1000 && d9 <= 2000); /* capped at maxInterval */
    }
}
END_TEST

START_TEST(manifests_merge_and_lookup)
{
    char *err = NULL;
    resiliency_reset();
    ck_assert_int_eq(resiliency_load_string(TWO_MANIFESTS, "res.yaml", "me", &err), 0);
    ck_assert_uint_eq(resiliency_count(), 2);

    resil_policy p;
    ck_assert(resiliency_app_policy("orders", 1, &p));
    ck_assert_int_eq(p.timeout_ms, 7000); /* "general" redefined by the second */
    ck_assert_str_eq(p.retry->name, "steady");
    ck_assert(p.retry_is_user);
    ck_assert_str_eq(p.cb->name, "cb");
    ck_assert_str_eq(p.target, "app_orders");
    ck_assert_str_eq(p.resiliency_name, "first");

    /* Another app: DefaultRetryPolicy, no timeout, no breaker. */
    ck_assert(resiliency_app_policy("billing", 0, &p));
    ck_assert_str_eq(p.retry->name, "DefaultRetryPolicy");
    ck_assert_int_eq(p.timeout_ms, 0);
    ck_assert_ptr_null(p.cb);

    /* Components: the named target, then the most specific default. */
    ck_assert(resiliency_component_policy("store", RESIL_KIND_STATE, 0, &p));
    ck_assert_str_eq(p.retry->name, "expo");
    ck_assert_int_eq(p.timeout_ms, 250);
    ck_assert_str_eq(p.target, "statestore_store");
    ck_assert(resiliency_component_policy("other", RESIL_KIND_STATE, 0, &p));
    ck_assert_str_eq(p.retry->name, "DefaultStatestoreComponentOutboundRetryPolicy");
    ck_assert(resiliency_component_policy("other", RESIL_KIND_BINDING, 0, &p));
    ck_assert_str_eq(p.retry->name, "DefaultRetryPolicy");
    ck_assert(resiliency_component_policy("queue", RESIL_KIND_PUBSUB, 1, &p));
    ck_assert_str_eq(p.retry->name, "steady");
    ck_assert_str_eq(p.flow, "inbound");
    resiliency_reset();

    /* Nothing loaded: Dapr's built-in service retries between sidecars
     * only, and the built-in pub/sub inbound retries. */
    ck_assert(!resiliency_app_policy("orders", 0, &p));
    ck_assert(resiliency_app_policy("orders", 1, &p));
    ck_assert_str_eq(p.retry->name, "DaprBuiltInServiceRetries");
    ck_assert(!p.retry_is_user);
    ck_assert_int_eq(p.retry->max_retries, 3);
    ck_assert_int_eq(resil_retry_delay(p.retry, 1), 1000);
    ck_assert(!resiliency_component_policy("s", RESIL_KIND_STATE, 0, &p));
    ck_assert(resiliency_component_policy("q", RESIL_KIND_PUBSUB, 1, &p));
    ck_assert(!p.retry_is_user);
}
END_TEST

START_TEST(scopes)
{
    char *err = NULL;
    const char *y = "kind: Resiliency\nmetadata:\n  name: scoped\nscopes:\n  - a\n  - b\n"
                    "spec:\n  policies:\n    retries:\n      DefaultRetryPolicy:\n        maxRetries: 1\n";
    resiliency_reset();
    ck_assert_int_eq(resiliency_load_string(y, "s.yaml", "c", &err), 0);
    ck_assert_uint_eq(resiliency_count(), 0);
    ck_assert_int_eq(resiliency_load_string(y, "s.yaml", "b", &err), 0);
    ck_assert_uint_eq(resiliency_count(), 1);
    resiliency_reset();
}
END_TEST

static void expect_error(const char *spec, const char *want)
{
    char *yaml = NULL;
    char *err = NULL;
    if (asprintf(&yaml, "kind: Resiliency\nmetadata:\n  name: bad\nspec:\n%s", spec) < 0)
        ck_abort();
    resiliency_reset();
    ck_assert_int_eq(resiliency_load_string(yaml, "dir/res.yaml", "me", &err), -1);
    ck_assert_msg(err && strstr(err, want), "error '%s' lacks '%s'", err ? err : "(none)", want);
    ck_assert_uint_eq(resiliency_count(), 0); /* nothing of it kept */
    free(err);
    free(yaml);
}

START_TEST(errors_name_file_and_field)
{
    expect_error("  policies:\n    timeouts:\n      t: soon\n",
                 "dir/res.yaml: resiliency 'bad': spec.policies.timeouts.t: 'soon' is not a duration");
    expect_error("  policies:\n    retries:\n      r:\n        policy: linear\n",
                 "spec.policies.retries.r.policy: 'linear' is not constant or exponential");
    expect_error("  policies:\n    retries:\n      r:\n        maxRetries: many\n",
                 "spec.policies.retries.r.maxRetries: 'many' is not an integer");
    expect_error("  policies:\n    retries:\n      r:\n        matching:\n          httpStatusCodes: 700\n",
                 "spec.policies.retries.r.matching.httpStatusCodes");
    expect_error("  policies:\n    circuitBreakers:\n      c:\n        trip: consecutiveFailures >\n",
                 "spec.policies.circuitBreakers.c.trip: 'consecutiveFailures >' is not a valid expression");
    expect_error("  policies:\n    circuitBreakers:\n      c:\n        maxRequests: -1\n",
                 "spec.policies.circuitBreakers.c.maxRequests");
    expect_error("  targets:\n    apps:\n      a:\n        timeout: nope\n",
                 "spec.targets.apps.a.timeout: no timeout policy named 'nope'");
    expect_error("  targets:\n    components:\n      s:\n        outbound:\n          circuitBreaker: x\n",
                 "spec.targets.components.s.outbound.circuitBreaker: no circuit breaker policy named 'x'");
    expect_error("  policies: [1, 2]\n", "spec.policies must be a mapping");
    resiliency_reset();
}
END_TEST

START_TEST(breaker_states)
{
    char *err = NULL;
    resiliency_reset();
    ck_assert_int_eq(resiliency_load_string(TWO_MANIFESTS, "res.yaml", "me", &err), 0);
    resil_policy p;
    resiliency_app_policy("orders", 0, &p);
    p.cb_cache_size = 2;
    resil_breaker *b = resil_breaker_get(&p, "m1");
    ck_assert_ptr_eq(resil_breaker_get(&p, "m1"), b);
    const char *why;
    uint64_t g1, g2, g3;
    ck_assert_int_eq(resil_breaker_allow(b, &why, &g1), 0);
    resil_breaker_record(b, g1, 1);
    ck_assert_int_eq(resil_breaker_state(b), RESIL_CB_CLOSED);
    ck_assert_int_eq(resil_breaker_allow(b, &why, &g2), 0);
    resil_breaker_record(b, g2, 1); /* consecutiveFailures >= 2: open */
    resil_breaker_info info[8];
    ck_assert_uint_eq(resiliency_breakers(info, 8), 1);
    ck_assert_str_eq(info[0].key, "app_orders:m1");
    /* timeout 0s: half-open at the next look; maxRequests 2 probes. */
    ck_assert_int_eq(resil_breaker_state(b), RESIL_CB_HALF_OPEN);
    ck_assert_int_eq(resil_breaker_allow(b, &why, &g1), 0);
    ck_assert_int_eq(resil_breaker_allow(b, &why, &g2), 0);
    ck_assert_int_eq(resil_breaker_allow(b, &why, &g3), -1);
    ck_assert_str_eq(why, "too many requests");
    resil_breaker_record(b, g1, 0);
    ck_assert_int_eq(resil_breaker_state(b), RESIL_CB_HALF_OPEN);
    resil_breaker_record(b, g2, 0); /* maxRequests successes: closed */
    ck_assert_int_eq(resil_breaker_state(b), RESIL_CB_CLOSED);
    /* An outcome from an older generation is ignored. */
    resil_breaker_record(b, g1, 1);
    resil_breaker_record(b, g1, 1);
    ck_assert_int_eq(resil_breaker_state(b), RESIL_CB_CLOSED);
    /* circuitBreakerCacheSize bounds the breakers of a target. */
    resil_breaker_get(&p, "m2");
    resil_breaker_get(&p, "m3");
    ck_assert_uint_eq(resiliency_breakers(info, 8), 2);
    resiliency_reset();
}
END_TEST

START_TEST(trip_expressions)
{
    char *err = NULL;
    resiliency_reset();
    const char *y = "kind: Resiliency\nmetadata:\n  name: t\nspec:\n  policies:\n    circuitBreakers:\n"
                    "      ratio:\n        trip: requests >= 4 && totalFailures * 2 > requests\n"
                    "      plain: {}\n";
    ck_assert_int_eq(resiliency_load_string(y, "t.yaml", "me", &err), 0);
    resil_policy p;
    resiliency_app_policy("x", 0, &p);
    ck_assert_ptr_null(p.cb);
    /* Reach the policies through a target-less lookup of each name. */
    const char *y2 = "kind: Resiliency\nmetadata:\n  name: t2\nspec:\n  targets:\n    apps:\n"
                     "      r:\n        circuitBreaker: ratio\n      q:\n        circuitBreaker: plain\n";
    ck_assert_int_eq(resiliency_load_string(y2, "t2.yaml", "me", &err), 0);
    resiliency_app_policy("r", 0, &p);
    resil_counts c = {.requests = 4, .total_failures = 3, .consecutive_failures = 1};
    ck_assert(resil_trip(p.cb, &c));
    c.total_failures = 2;
    ck_assert(!resil_trip(p.cb, &c));
    resiliency_app_policy("q", 0, &p); /* gobreaker's default: > 5 in a row */
    ck_assert_str_eq(p.cb->trip, "consecutiveFailures > 5");
    c.consecutive_failures = 5;
    ck_assert(!resil_trip(p.cb, &c));
    c.consecutive_failures = 6;
    ck_assert(resil_trip(p.cb, &c));
    ck_assert_int_eq(p.cb->timeout_ms, 60000);
    resiliency_reset();
}
END_TEST

/* ---- the runner on a real loop ---------------------------------------------- */

struct op {
    resil_run *rs;
    int attempts, fails_left, failed_with_late;
    int finished, late_freed;
    char err[64];
    int complete_inline;
};

static void op_attempt(void *arg)
{
    struct op *o = arg;
    o->attempts++;
    if (!o->complete_inline)
        return; /* never answers: only the deadline ends it */
    int failed = o->fails_left-- > 0;
    if (resil_complete(o->rs, failed, failed ? 503 : 200, 0) == RESIL_FINISH) {
        o->finished = 1;
        loop_stop();
    }
}

static void op_fail(void *arg, const char *err, int late)
{
    struct op *o = arg;
    snprintf(o->err, sizeof o->err, "%s", err);
    o->failed_with_late = late;
    loop_stop();
}

static const resil_hooks hooks = {op_attempt, NULL, op_fail};

START_TEST(runner_retries_and_deadline)
{
    ck_assert_int_eq(loop_init(), 0);
    resil_retry r = {.name = "r", .policy = RESIL_CONSTANT, .duration_ms = 10, .max_retries = 3};
    resil_policy p = {.retry = &r, .retry_is_user = 1, .flow = "outbound", .resiliency_name = "t"};
    snprintf(p.target, sizeof p.target, "app_x");

    struct op o = {.fails_left = 2, .complete_inline = 1};
    o.rs = resil_run_new(&p, NULL, &hooks, &o);
    resil_run_go(o.rs);
    loop_run();
    ck_assert(o.finished);
    ck_assert_int_eq(o.attempts, 3);

    struct op all = {.fails_left = 100, .complete_inline = 1};
    all.rs = resil_run_new(&p, NULL, &hooks, &all);
    resil_run_go(all.rs);
    loop_run();
    ck_assert_int_eq(all.attempts, 4);

    /* A deadline with an attempt that cannot be cancelled: fail() says
     * late_pending, and the late completion frees. */
    resil_policy t = {.timeout_ms = 20, .flow = "outbound", .resiliency_name = "t"};
    snprintf(t.target, sizeof t.target, "statestore_s");
    struct op slow = {0};
    slow.rs = resil_run_new(&t, NULL, &hooks, &slow);
    resil_run_go(slow.rs);
    loop_run();
    ck_assert_str_eq(slow.err, "context deadline exceeded");
    ck_assert_int_eq(slow.failed_with_late, 1);
    ck_assert_int_eq(resil_complete(slow.rs, 0, 200, 0), RESIL_LATE_FREE);
    resiliency_shutdown();
    resiliency_reset();
    loop_free();
}
END_TEST

static Suite *resiliency_suite(void)
{
    Suite *s = suite_create("resiliency");
    TCase *tc = tcase_create("resiliency");
    tcase_add_test(tc, durations_and_codes);
    tcase_add_test(tc, retry_spacing);
    tcase_add_test(tc, manifests_merge_and_lookup);
    tcase_add_test(tc, scopes);
    tcase_add_test(tc, errors_name_file_and_field);
    tcase_add_test(tc, breaker_states);
    tcase_add_test(tc, trip_expressions);
    tcase_add_test(tc, runner_retries_and_deadline);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    log_setup(LOG_LEVEL_ERROR, 0, "test", "test");
    SRunner *sr = srunner_create(resiliency_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
