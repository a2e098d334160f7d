/*
 * suite_pubsub.c - the pub/sub broker behaviour suite.
 *
 * What daprd relies on: exact bytes and content type through the broker,
 * fan-out to every subscription of a topic, isolation between topics,
 * at-least-once delivery (RETRY redelivers, SUCCESS and DROP do not),
 * max_in_flight as a hard bound, publish order with max_in_flight 1, no
 * loss under load, and no handler call after unsubscribe.
 *
 * Every topic name is unique to the run, so persistent brokers can be
 * reused.  Each test ends with ps_teardown(): unsubscribe, return every
 * ack, and check the handler contract.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "pubsub.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Each test body, then the common teardown. */
#define PS_CASE(fn)                                                        \
    static void fn##_body(ck_test *t);                                     \
    static void fn(ck_test *t)                                             \
    {                                                                      \
        fn##_body(t);                                                      \
        ps_teardown(t);                                                    \
    }                                                                      \
    static void fn##_body(ck_test *t)

/* Publish; DAPR_ERR_UNAVAILABLE ("queue full", broker busy) is
 * back-pressure, as daprd sees it: wait a little and publish again, for
 * up to --timeout. */
static int publish_patiently(const char *topic, const void *data, size_t len,
                             const char *ct, ps_reply *rep)
{
    double give_up = ps_now_ms() + ck_opt.timeout_ms;
    for (;;) {
        int rc = ps_publish(topic, data, len, ct, rep);
        if (rc != 0 || rep->status != DAPR_ERR_UNAVAILABLE || ps_now_ms() > give_up)
            return rc;
        ps_sleep_ms(10);
    }
}

/* A publish that must succeed. */
#define PUBLISH_OK(t, topic, data, len, ct)                                \
    do {                                                                   \
        ps_reply rep_;                                                     \
        if (publish_patiently((topic), (data), (len), (ct), &rep_) != 0) { \
            ck_fail((t), "%s", rep_.failure);                              \
            return;                                                        \
        }                                                                  \
        CK_REQUIRE((t), rep_.status == DAPR_OK, "publish to %s: %s: %s",   \
                   (topic), ck_status_name(rep_.status), rep_.message);    \
    } while (0)

/* A subscription that must succeed; declares ps_sub *var. */
#define SUBSCRIBE_OK(t, var, topic, mif, manual, decide, arg)              \
    ps_sub *var;                                                           \
    do {                                                                   \
        ps_reply rep_;                                                     \
        var = ps_subscribe((topic), (mif), (manual), (decide), (arg), &rep_); \
        if (!rep_.completed) {                                             \
            ck_fail((t), "%s", rep_.failure);                              \
            return;                                                        \
        }                                                                  \
        CK_REQUIRE((t), rep_.status == DAPR_OK, "subscribe to %s: %s: %s", \
                   (topic), ck_status_name(rep_.status), rep_.message);    \
    } while (0)

static int wait_ms(void) { return ck_opt.timeout_ms; }

/* Check message i of s: topic, exact bytes, content type. */
static int check_msg(ck_test *t, ps_sub *s, size_t i, const char *topic,
                     const void *data, size_t len, const char *ct)
{
    pthread_mutex_lock(&s->mu);
    ps_msg *m = &s->msgs[i];
    int ok = 0;
    if (!m->topic || strcmp(m->topic, topic) != 0)
        ck_fail(t, "message on %s reported topic '%s'", topic, m->topic ? m->topic : "(NULL)");
    else if (m->len != len || (len && memcmp(m->data, data, len) != 0))
        ck_fail(t, "message on %s: got %zu bytes, want %zu identical bytes", topic, m->len, len);
    else if (ct && (!m->content_type || strcmp(m->content_type, ct) != 0))
        ck_fail(t, "message on %s: content type '%s', want '%s'", topic,
                m->content_type ? m->content_type : "(NULL)", ct);
    else
        ok = 1;
    pthread_mutex_unlock(&s->mu);
    return ok;
}

/* ---- basics ----------------------------------------------------------- */

PS_CASE(publish_without_subscribers)
{
    char topic[256];
    ps_topic(topic, sizeof topic, "nobody");
    PUBLISH_OK(t, topic, "hello", 5, "text/plain");
}

PS_CASE(round_trip)
{
    char topic[256];
    ps_topic(topic, sizeof topic, "roundtrip");
    SUBSCRIBE_OK(t, s, topic, 0, 0, NULL, NULL);

    /* Every byte value, NULs included: brokers must not treat data as text. */
    uint8_t bin[512];
    for (size_t i = 0; i < sizeof bin; i++)
        bin[i] = (uint8_t)(i * 7 + 3);
    bin[0] = 0;
    const char *ce = "{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"ck\","
                     "\"type\":\"com.dapr.event.sent\",\"data\":\"h\\u00e9llo\"}";
    PUBLISH_OK(t, topic, bin, sizeof bin, "application/octet-stream");
    PUBLISH_OK(t, topic, ce, strlen(ce), "application/cloudevents+json");

    CK_REQUIRE(t, ps_wait_msgs(s, 2, wait_ms()) == 0,
               "%zu of 2 messages arrived within %d ms", ps_count(s), wait_ms());
    /* Order is not asserted here (see the ordering test): find each. */
    pthread_mutex_lock(&s->mu);
    size_t first_bin = s->msgs[0].len == sizeof bin ? 0 : 1;
    pthread_mutex_unlock(&s->mu);
    if (!check_msg(t, s, first_bin, topic, bin, sizeof bin, "application/octet-stream"))
        return;
    if (!check_msg(t, s, 1 - first_bin, topic, ce, strlen(ce), "application/cloudevents+json"))
        return;
    ps_sleep_ms(200);
    CK_REQUIRE(t, ps_count(s) == 2, "%zu messages arrived, 2 were published", ps_count(s));
}

PS_CASE(two_subscriptions_fan_out)
{
    char topic[256];
    ps_topic(topic, sizeof topic, "fanout");
    SUBSCRIBE_OK(t, a, topic, 0, 0, NULL, NULL);
    SUBSCRIBE_OK(t, b, topic, 0, 0, NULL, NULL);
    PUBLISH_OK(t, topic, "fan-out", 7, "text/plain");
    CK_REQUIRE(t, ps_wait_msgs(a, 1, wait_ms()) == 0, "the first subscription got nothing");
    CK_REQUIRE(t, ps_wait_msgs(b, 1, wait_ms()) == 0, "the second subscription got nothing");
    if (!check_msg(t, a, 0, topic, "fan-out", 7, "text/plain") ||
        !check_msg(t, b, 0, topic, "fan-out", 7, "text/plain"))
        return;
    ps_sleep_ms(200);
    CK_REQUIRE(t, ps_count(a) == 1 && ps_count(b) == 1,
               "got %zu and %zu messages, want 1 each", ps_count(a), ps_count(b));
}

#define N_TOPICS 5

PS_CASE(topics_isolated)
{
    char topics[N_TOPICS][256];
    ps_sub *subs[N_TOPICS];
    for (int i = 0; i < N_TOPICS; i++) {
        char name[32];
        snprintf(name, sizeof name, "iso%d", i);
        ps_topic(topics[i], sizeof topics[i], name);
        SUBSCRIBE_OK(t, s, topics[i], 0, 0, NULL, NULL);
        subs[i] = s;
    }
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < N_TOPICS; i++) {
            char body[64];
            int n = snprintf(body, sizeof body, "topic %d round %d", i, round);
            PUBLISH_OK(t, topics[i], body, (size_t)n, "text/plain");
        }
    }
    for (int i = 0; i < N_TOPICS; i++)
        CK_REQUIRE(t, ps_wait_msgs(subs[i], 2, wait_ms()) == 0,
                   "topic %d: %zu of 2 messages arrived", i, ps_count(subs[i]));
    ps_sleep_ms(200);
    for (int i = 0; i < N_TOPICS; i++) {
        CK_REQUIRE(t, ps_count(subs[i]) == 2, "topic %d got %zu messages, want 2", i,
                   ps_count(subs[i]));
        char want[32];
        snprintf(want, sizeof want, "topic %d round", i);
        pthread_mutex_lock(&subs[i]->mu);
        for (size_t k = 0; k < 2; k++) {
            ps_msg *m = &subs[i]->msgs[k];
            int ok = strncmp((char *)m->data, want, strlen(want)) == 0 && m->topic &&
                     strcmp(m->topic, topics[i]) == 0;
            if (!ok)
                ck_fail(t, "topic %d received '%s' on '%s'", i, (char *)m->data,
                        m->topic ? m->topic : "(NULL)");
        }
        pthread_mutex_unlock(&subs[i]->mu);
        if (t->failed)
            return;
    }
}

/* ---- large messages ---------------------------------------------------- */

/* A resource quantity as in manifests: "1048576", "1Mi", "512Ki", "1MB". */
static long long parse_bytes(const char *v)
{
    char *end;
    errno = 0;
    double n = strtod(v, &end);
    if (errno || end == v || n < 0)
        return -1;
    while (isspace((unsigned char)*end))
        end++;
    static const struct { const char *suffix; double mult; } units[] = {
        {"", 1}, {"b", 1}, {"k", 1e3}, {"kb", 1e3}, {"ki", 1024}, {"kib", 1024},
        {"m", 1e6}, {"mb", 1e6}, {"mi", 1048576}, {"mib", 1048576},
        {"g", 1e9}, {"gb", 1e9}, {"gi", 1073741824}, {"gib", 1073741824},
    };
    for (size_t i = 0; i < sizeof units / sizeof *units; i++)
        if (strcasecmp(end, units[i].suffix) == 0)
            return (long long)(n * units[i].mult);
    return -1;
}

/* Does the configuration set a message size limit below len?  Looks for
 * metadata named like maxMessageBytes / maxPayload / maxMessageSize in
 * --metadata and the schema defaults. */
static const char *size_limit_below(size_t len, long long *limit)
{
    const dapr_component_def *def = ck_comp.def;
    size_t n = ck_opt.n_meta + def->n_metadata_schema;
    for (size_t i = 0; i < n; i++) {
        const char *name = i < ck_opt.n_meta ? ck_opt.meta_names[i]
                                             : def->metadata_schema[i - ck_opt.n_meta].name;
        if (!strcasestr(name, "max") ||
            !(strcasestr(name, "bytes") || strcasestr(name, "size") || strcasestr(name, "payload")))
            continue;
        const char *v = host_api()->metadata_get(host_handle(), name);
        long long l = v ? parse_bytes(v) : -1;
        if (l >= 0 && (size_t)l < len) {
            *limit = l;
            return name;
        }
    }
    return NULL;
}

PS_CASE(large_message)
{
    const size_t len = 1024 * 1024;
    char topic[256];
    ps_topic(topic, sizeof topic, "large");
    SUBSCRIBE_OK(t, s, topic, 0, 0, NULL, NULL);
    uint8_t *big = malloc(len);
    CK_REQUIRE(t, big != NULL, "out of memory");
    for (size_t i = 0; i < len; i++)
        big[i] = (uint8_t)((i * 2654435761u) >> 13);

    ps_reply rep;
    if (ps_publish(topic, big, len, "application/octet-stream", &rep) != 0) {
        free(big);
        ck_fail(t, "%s", rep.failure);
        return;
    }
    if (rep.status != DAPR_OK) {
        long long limit;
        const char *name = size_limit_below(len, &limit);
        free(big);
        if (name && rep.message[0])
            ck_skip(t, "1 MiB refused (%s: %s) and %s is %lld", ck_status_name(rep.status),
                    rep.message, name, limit);
        else
            ck_fail(t, "publishing 1 MiB failed with %s: %s%s", ck_status_name(rep.status),
                    rep.message[0] ? rep.message : "(no message)",
                    name ? "" : " (and no maxMessageBytes-like metadata below 1 MiB)");
        return;
    }
    if (ps_wait_msgs(s, 1, wait_ms()) != 0) {
        free(big);
        ck_fail(t, "the 1 MiB message did not arrive within %d ms", wait_ms());
        return;
    }
    check_msg(t, s, 0, topic, big, len, "application/octet-stream");
    free(big);
}

/* ---- acknowledgements ---------------------------------------------------- */

PS_CASE(retry_redelivers)
{
    char topic[256];
    ps_topic(topic, sizeof topic, "retry");
    SUBSCRIBE_OK(t, s, topic, 0, 1, NULL, NULL);
    const char body[] = "retry me\0with a NUL";
    PUBLISH_OK(t, topic, body, sizeof body, "application/octet-stream");
    CK_REQUIRE(t, ps_wait_pending(s, 1, wait_ms()) == 0, "the message did not arrive");
    ps_ack(s, 0, DAPR_PUBSUB_ACK_RETRY);

    int patience = ck_opt.redelivery_wait_ms + wait_ms();
    CK_REQUIRE(t, ps_wait_pending(s, 1, patience) == 0,
               "no redelivery within %d ms after RETRY (see --redelivery-wait)", patience);
    if (!check_msg(t, s, 1, topic, body, sizeof body, "application/octet-stream"))
        return;
    ps_ack(s, 0, DAPR_PUBSUB_ACK_SUCCESS);
    ps_sleep_ms(ck_opt.redelivery_wait_ms);
    CK_REQUIRE(t, ps_count(s) == 2, "delivered %zu times after RETRY then SUCCESS, want 2",
               ps_count(s));
}

PS_CASE(success_and_drop_not_redelivered)
{
    char topic[256];
    ps_topic(topic, sizeof topic, "acked");
    SUBSCRIBE_OK(t, s, topic, 0, 1, NULL, NULL);
    PUBLISH_OK(t, topic, "success", 7, "text/plain");
    PUBLISH_OK(t, topic, "drop", 4, "text/plain");
    /* Ack as they come: the broker may hand out one at a time. */
    for (int k = 0; k < 2; k++) {
        CK_REQUIRE(t, ps_wait_pending(s, 1, wait_ms()) == 0, "%d of 2 messages arrived", k);
        pthread_mutex_lock(&s->mu);
        int is_drop = strcmp((char *)s->msgs[s->pending[0].msg].data, "drop") == 0;
        pthread_mutex_unlock(&s->mu);
        ps_ack(s, 0, is_drop ? DAPR_PUBSUB_ACK_DROP : DAPR_PUBSUB_ACK_SUCCESS);
    }
    ps_sleep_ms(ck_opt.redelivery_wait_ms);
    CK_REQUIRE(t, ps_count(s) == 2, "%zu deliveries of 2 messages acked SUCCESS and DROP",
               ps_count(s));
}

/* ---- flow control and order ------------------------------------------------ */

static void max_in_flight_test(ck_test *t, uint32_t mif, const char *name)
{
    const size_t total = 3 * mif + 1;
    char topic[256];
    ps_topic(topic, sizeof topic, name);
    SUBSCRIBE_OK(t, s, topic, mif, 1, NULL, NULL);
    for (size_t i = 0; i < total; i++) {
        char body[32];
        int n = snprintf(body, sizeof body, "m%zu", i);
        PUBLISH_OK(t, topic, body, (size_t)n, "text/plain");
    }
    size_t acked = 0;
    while (acked < total) {
        size_t want = total - acked < mif ? total - acked : mif;
        CK_REQUIRE(t, ps_wait_pending(s, want, wait_ms()) == 0,
                   "after %zu acks only %zu of %zu expected messages are at the handler",
                   acked, ps_npending(s), want);
        /* Give the plugin a chance to overstep the bound. */
        ps_sleep_ms(acked == 0 ? 300 : 20);
        size_t held = ps_npending(s);
        CK_REQUIRE(t, held <= mif, "%zu unacked messages at the handler, max_in_flight is %u",
                   held, mif);
        ps_ack(s, 0, DAPR_PUBSUB_ACK_SUCCESS);
        acked++;
    }
}

PS_CASE(max_in_flight_1)
{
    max_in_flight_test(t, 1, "mif1");
}

PS_CASE(max_in_flight_4)
{
    max_in_flight_test(t, 4, "mif4");
}

#define N_ORDERED 300

PS_CASE(ordering_max_in_flight_1)
{
    if (ck_opt.no_ordering) {
        ck_skip(t, "--no-ordering");
        return;
    }
    char topic[256];
    ps_topic(topic, sizeof topic, "ordered");
    SUBSCRIBE_OK(t, s, topic, 1, 0, NULL, NULL);
    for (int i = 0; i < N_ORDERED; i++) {
        char body[32];
        int n = snprintf(body, sizeof body, "%d", i);
        PUBLISH_OK(t, topic, body, (size_t)n, "text/plain");
    }
    CK_REQUIRE(t, ps_wait_msgs(s, N_ORDERED, wait_ms()) == 0, "%zu of %d messages arrived",
               ps_count(s), N_ORDERED);
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < N_ORDERED; i++) {
        if (atoi((char *)s->msgs[i].data) != i) {
            ck_fail(t, "delivery %d was message %s (publish order broken)", i,
                    (char *)s->msgs[i].data);
            break;
        }
    }
    pthread_mutex_unlock(&s->mu);
}

/* ---- many messages ------------------------------------------------------- */

#define N_MANY 10000
#define RETRY_EVERY 97 /* first delivery of every 97th id gets RETRY */

typedef struct many_state {
    unsigned short seen[N_MANY];
    unsigned char retried[N_MANY];
    size_t distinct;
    long bad;                  /* unparsable or foreign payloads */
    const char *topic;
    int next;                  /* next id to publish (publishers share it) */
    ps_reply failure;          /* first publish failure */
    int failed;
} many_state;

/* Guards next, failure and failed among the publishers. */
static pthread_mutex_t many_mu = PTHREAD_MUTEX_INITIALIZER;

static dapr_pubsub_ack many_decide(ps_sub *s, const ps_msg *m, void *arg)
{
    (void)s;
    many_state *st = arg;
    const char *hash = strrchr((const char *)m->data, '#');
    long id = hash ? strtol(hash + 1, NULL, 10) : -1;
    if (id < 0 || id >= N_MANY) {
        st->bad++;
        return DAPR_PUBSUB_ACK_DROP;
    }
    if (st->seen[id]++ == 0)
        st->distinct++;
    if (id % RETRY_EVERY == 0 && !st->retried[id]) {
        st->retried[id] = 1;
        return DAPR_PUBSUB_ACK_RETRY;
    }
    return DAPR_PUBSUB_ACK_SUCCESS;
}

/* Publishers: one per --threads, sharing the id counter.  A queue full or
 * unavailable answer is back-pressure: wait and publish again. */
static void *many_publisher(void *arg)
{
    many_state *st = arg;
    for (;;) {
        pthread_mutex_lock(&many_mu);
        int id = st->failed ? N_MANY : st->next++;
        pthread_mutex_unlock(&many_mu);
        if (id >= N_MANY)
            return NULL;
        char body[64];
        int n = snprintf(body, sizeof body, "many#%d", id);
        ps_reply rep;
        int rc = publish_patiently(st->topic, body, (size_t)n, "text/plain", &rep);
        if (rc != 0 || rep.status != DAPR_OK) {
            pthread_mutex_lock(&many_mu);
            if (!st->failed) {
                st->failed = 1;
                st->failure = rep;
            }
            pthread_mutex_unlock(&many_mu);
            return NULL;
        }
    }
}

PS_CASE(many_messages_none_lost)
{
    char topic[256];
    ps_topic(topic, sizeof topic, "many");
    /* Static: no cleanup needed on an early return. */
    static many_state many;
    many_state *st = &many;
    memset(st, 0, sizeof *st);
    st->topic = topic;
    /* The decide hook runs under the subscription's lock: st is read
     * below under that lock too. */
    SUBSCRIBE_OK(t, s, topic, 0, 0, many_decide, st);

    int n_threads = ck_opt.threads;
    pthread_t *th = calloc((size_t)n_threads, sizeof *th);
    int started = 0;
    for (; th && started < n_threads; started++)
        if (pthread_create(&th[started], NULL, many_publisher, st) != 0)
            break;
    if (started == 0)
        many_publisher(st);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    free(th);

    if (st->failed) {
        ck_fail(t, "publish: %s%s%s", st->failure.completed ? ck_status_name(st->failure.status) : "",
                st->failure.completed ? ": " : "",
                st->failure.completed ? st->failure.message : st->failure.failure);
    } else {
        /* Wait while deliveries make progress; give up after --timeout of
         * silence. */
        size_t last = 0;
        double quiet_since = ps_now_ms();
        for (;;) {
            pthread_mutex_lock(&s->mu);
            size_t distinct = st->distinct;
            pthread_mutex_unlock(&s->mu);
            if (distinct == N_MANY)
                break;
            if (distinct != last) {
                last = distinct;
                quiet_since = ps_now_ms();
            } else if (ps_now_ms() - quiet_since > ck_opt.timeout_ms) {
                break;
            }
            ps_sleep_ms(50);
        }
        /* Let the RETRYs come back. */
        int retries_left = 1;
        double until = ps_now_ms() + ck_opt.redelivery_wait_ms + ck_opt.timeout_ms;
        while (retries_left && ps_now_ms() < until) {
            retries_left = 0;
            pthread_mutex_lock(&s->mu);
            for (int id = 0; id < N_MANY; id += RETRY_EVERY)
                if (st->seen[id] < 2)
                    retries_left++;
            pthread_mutex_unlock(&s->mu);
            if (retries_left)
                ps_sleep_ms(50);
        }

        pthread_mutex_lock(&s->mu);
        size_t lost = 0, dups = 0, not_redelivered = 0;
        long first_lost = -1, first_dup = -1;
        for (int id = 0; id < N_MANY; id++) {
            if (st->seen[id] == 0) {
                if (first_lost < 0)
                    first_lost = id;
                lost++;
            } else if (st->retried[id] && st->seen[id] < 2) {
                not_redelivered++;
            } else if (st->seen[id] > 1 + st->retried[id]) {
                if (first_dup < 0)
                    first_dup = id;
                dups++;
            }
        }
        long bad = st->bad;
        pthread_mutex_unlock(&s->mu);
        if (lost)
            ck_fail(t, "%zu of %d messages never arrived (first: id %ld)", lost, N_MANY, first_lost);
        else if (not_redelivered)
            ck_fail(t, "%zu messages acked RETRY were not redelivered", not_redelivered);
        else if (dups)
            ck_fail(t, "%zu messages were delivered again without a RETRY (first: id %ld)",
                    dups, first_dup);
        else if (bad)
            ck_fail(t, "%ld deliveries carried a payload that was not published", bad);
    }
    /* Unsubscribe before st goes: the decide hook reads it. */
    ps_teardown(t);
}

/* ---- unsubscribe ---------------------------------------------------------- */

PS_CASE(unsubscribe_stops_deliveries)
{
    char topic[256];
    ps_topic(topic, sizeof topic, "unsub");
    SUBSCRIBE_OK(t, s, topic, 0, 0, NULL, NULL);
    PUBLISH_OK(t, topic, "before", 6, "text/plain");
    CK_REQUIRE(t, ps_wait_msgs(s, 1, wait_ms()) == 0, "the first message did not arrive");

    ps_reply rep;
    if (ps_unsubscribe(s, &rep) != 0) {
        ck_fail(t, "%s", rep.failure);
        return;
    }
    CK_REQUIRE(t, rep.status == DAPR_OK, "unsubscribe: %s: %s", ck_status_name(rep.status),
               rep.message);
    PUBLISH_OK(t, topic, "after", 5, "text/plain");
    ps_sleep_ms(ck_opt.redelivery_wait_ms);
    CK_REQUIRE(t, ps_count(s) == 1, "%zu deliveries, want 1", ps_count(s));
    /* Calls after unsubscribe are counted by the teardown. */
}

PS_CASE(ack_after_unsubscribe)
{
    char topic[256];
    ps_topic(topic, sizeof topic, "lateack");
    SUBSCRIBE_OK(t, s, topic, 0, 1, NULL, NULL);
    PUBLISH_OK(t, topic, "held", 4, "text/plain");
    CK_REQUIRE(t, ps_wait_pending(s, 1, wait_ms()) == 0, "the message did not arrive");

    /* daprd unsubscribes at shutdown while the app still holds messages,
     * and acks them afterwards: RETRY must be accepted and go nowhere. */
    ps_reply rep;
    if (ps_unsubscribe(s, &rep) != 0) {
        ck_fail(t, "%s", rep.failure);
        return;
    }
    CK_REQUIRE(t, rep.status == DAPR_OK, "unsubscribe: %s: %s", ck_status_name(rep.status),
               rep.message);
    ps_ack(s, 0, DAPR_PUBSUB_ACK_RETRY);
    ps_sleep_ms(ck_opt.redelivery_wait_ms);
}

/* ---- wildcards ---------------------------------------------------------- */

PS_CASE(wildcard_subscriptions)
{
    if (!CK_FEATURE(DAPR_PUBSUB_SUBSCRIBE_WILDCARDS)) {
        ck_skip(t, "no SUBSCRIBE_WILDCARDS feature");
        return;
    }
    char base[256], plus[300], hash[300], ax[300], by[300], axz[300];
    ps_topic(base, sizeof base, "wild");
    snprintf(plus, sizeof plus, "%s/+/x", base);
    snprintf(hash, sizeof hash, "%s/#", base);
    snprintf(ax, sizeof ax, "%s/a/x", base);
    snprintf(by, sizeof by, "%s/b/y", base);
    snprintf(axz, sizeof axz, "%s/a/x/z", base);
    SUBSCRIBE_OK(t, sp, plus, 0, 0, NULL, NULL);
    SUBSCRIBE_OK(t, sh, hash, 0, 0, NULL, NULL);
    PUBLISH_OK(t, ax, "ax", 2, "text/plain");
    PUBLISH_OK(t, by, "by", 2, "text/plain");
    PUBLISH_OK(t, axz, "axz", 3, "text/plain");
    CK_REQUIRE(t, ps_wait_msgs(sh, 3, wait_ms()) == 0, "'%s' got %zu of 3 messages", hash,
               ps_count(sh));
    CK_REQUIRE(t, ps_wait_msgs(sp, 1, wait_ms()) == 0, "'%s' got nothing", plus);
    ps_sleep_ms(200);
    CK_REQUIRE(t, ps_count(sp) == 1, "'%s' got %zu messages, want 1 (from %s)", plus,
               ps_count(sp), ax);
    if (!check_msg(t, sp, 0, ax, "ax", 2, "text/plain"))
        return;
    CK_REQUIRE(t, ps_count(sh) == 3, "'%s' got %zu messages, want 3", hash, ps_count(sh));
    /* Each delivery names the topic it was published to. */
    pthread_mutex_lock(&sh->mu);
    for (size_t i = 0; i < 3; i++) {
        ps_msg *m = &sh->msgs[i];
        const char *want = strcmp((char *)m->data, "ax") == 0   ? ax
                           : strcmp((char *)m->data, "by") == 0 ? by
                                                                : axz;
        if (!m->topic || strcmp(m->topic, want) != 0) {
            ck_fail(t, "'%s' delivered '%s' with topic '%s', want '%s'", hash,
                    (char *)m->data, m->topic ? m->topic : "(NULL)", want);
            break;
        }
    }
    pthread_mutex_unlock(&sh->mu);
}

const ck_case ck_pubsub_cases[] = {
    {"pubsub: publish to a topic without subscribers", publish_without_subscribers},
    {"pubsub: round trip keeps bytes and content type", round_trip},
    {"pubsub: two subscriptions on a topic both receive", two_subscriptions_fan_out},
    {"pubsub: topics are isolated", topics_isolated},
    {"pubsub: 1 MiB message", large_message},
    {"pubsub: RETRY redelivers the same bytes", retry_redelivers},
    {"pubsub: SUCCESS and DROP are not redelivered", success_and_drop_not_redelivered},
    {"pubsub: max_in_flight 1 is respected", max_in_flight_1},
    {"pubsub: max_in_flight 4 is respected", max_in_flight_4},
    {"pubsub: max_in_flight 1 keeps publish order", ordering_max_in_flight_1},
    {"pubsub: 10000 messages, none lost, duplicates only after RETRY", many_messages_none_lost},
    {"pubsub: unsubscribe stops deliveries", unsubscribe_stops_deliveries},
    {"pubsub: ack after unsubscribe is accepted", ack_after_unsubscribe},
    {"pubsub: wildcard subscriptions (+ and #)", wildcard_subscriptions},
};
const size_t ck_n_pubsub_cases = sizeof ck_pubsub_cases / sizeof *ck_pubsub_cases;
