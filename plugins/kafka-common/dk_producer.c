/*
 * dk_producer.c - publishing with delivery reports.
 *
 * One librdkafka producer per instance and one thread serving its
 * delivery reports (rd_kafka_poll), so dk_produce only queues and its
 * callback runs when the brokers acknowledged the message (acks=all) or
 * gave up on it (message.timeout.ms, the publish timeout).  librdkafka
 * reconnects by itself; a publish while every broker is down waits for
 * them until the publish timeout.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "dk.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct dk_producer {
    dk_logger log; /* first: the rd_kafka_t opaque (dk_log_cb) */
    rd_kafka_t *rk;
    pthread_t thread;
    atomic_int stop;
    int64_t max_message_bytes;
    int64_t timeout_ms;
    char *brokers;

    pthread_mutex_t mu;       /* guards what error_cb records */
    char cause[512];          /* the last broker error, for messages */
    rd_kafka_resp_err_t cause_err;
    int all_down;             /* every broker is unreachable */
    int auth_failed;
};

typedef struct pending {
    dk_produce_cb cb;
    void *ctx;
} pending;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void complete(dk_produce_cb cb, void *ctx, dapr_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void complete(dk_produce_cb cb, void *ctx, dapr_status st, const char *fmt, ...)
{
    char msg[768];
    if (st == DAPR_OK) {
        cb(ctx, DAPR_OK, NULL);
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cb(ctx, st, msg);
}

static dapr_status map_error(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        return DAPR_OK;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
        return DAPR_ERR_INVALID_ARGUMENT;
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR__AUTHENTICATION:
    case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED:
        return DAPR_ERR_PERMISSION_DENIED;
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
        return DAPR_ERR_TIMEOUT;
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
    case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
        return DAPR_ERR_UNAVAILABLE;
    default:
        return DAPR_ERR_INTERNAL;
    }
}

/* ---- callbacks (producer thread, or a librdkafka thread for errors) ---- */

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    dk_producer *p = opaque;
    pending *pd = m->_private;
    (void)rk;
    if (!pd)
        return;
    dk_produce_cb cb = pd->cb;
    void *ctx = pd->ctx;
    free(pd);
    if (!m->err) {
        pthread_mutex_lock(&p->mu);
        int back = p->all_down;
        p->all_down = 0;
        pthread_mutex_unlock(&p->mu);
        if (back)
            p->log.api->log(p->log.host, DAPR_LOG_INFO, "kafka producer: brokers reachable again");
        cb(ctx, DAPR_OK, NULL);
        return;
    }
    const char *topic = m->rkt ? rd_kafka_topic_name(m->rkt) : "?";
    if (m->err == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT) {
        char cause[512];
        pthread_mutex_lock(&p->mu);
        snprintf(cause, sizeof cause, "%s", p->cause[0] ? p->cause : "no error reported");
        pthread_mutex_unlock(&p->mu);
        complete(cb, ctx, DAPR_ERR_TIMEOUT,
                 "kafka: publishing to topic %s: no acknowledgement from brokers %s within %lld ms "
                 "(last broker error: %s)",
                 topic, p->brokers, (long long)p->timeout_ms, cause);
    } else if (m->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || m->err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT) {
        complete(cb, ctx, DAPR_ERR_UNAVAILABLE,
                 "kafka: publishing to topic %s: the component is closing", topic);
    } else {
        complete(cb, ctx, map_error(m->err), "kafka: publishing to topic %s: %s", topic,
                 rd_kafka_err2str(m->err));
    }
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    dk_producer *p = opaque;
    int fatal = err == RD_KAFKA_RESP_ERR__FATAL;
    char fatal_reason[512];
    if (fatal) {
        rd_kafka_fatal_error(rk, fatal_reason, sizeof fatal_reason);
        reason = fatal_reason;
    }
    pthread_mutex_lock(&p->mu);
    int first_down = 0;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        first_down = !p->all_down;
        p->all_down = 1;
    } else {
        /* Keep the specific cause ("Connect to ... failed: Connection
         * refused") rather than the summary "N/N brokers are down". */
        snprintf(p->cause, sizeof p->cause, "%s", reason);
        p->cause_err = (rd_kafka_resp_err_t)err;
        if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION || err == RD_KAFKA_RESP_ERR__SSL)
            p->auth_failed = 1;
    }
    pthread_mutex_unlock(&p->mu);
    if (fatal || err == RD_KAFKA_RESP_ERR__AUTHENTICATION || err == RD_KAFKA_RESP_ERR__SSL)
        p->log.api->log(p->log.host, DAPR_LOG_ERROR, "kafka producer: %s", reason);
    else if (first_down)
        p->log.api->log(p->log.host, DAPR_LOG_WARN,
                        "kafka producer: every broker of %s is unreachable (%s); reconnecting",
                        p->brokers, reason);
    else
        p->log.api->log(p->log.host, DAPR_LOG_DEBUG, "kafka producer: %s: %s",
                        rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

static void *poll_thread(void *arg)
{
    dk_producer *p = arg;
    while (!atomic_load(&p->stop))
        rd_kafka_poll(p->rk, 100);
    return NULL;
}

/* ---- API ---------------------------------------------------------------- */

dk_producer *dk_producer_new(const dk_config *cfg, dapr_host *host, const dapr_host_api *api,
                             char *err, size_t errlen)
{
    dk_producer *p = calloc(1, sizeof *p);
    if (!p || !(p->brokers = strdup(cfg->brokers))) {
        free(p);
        snprintf(err, errlen, "kafka: out of memory");
        return NULL;
    }
    p->log.host = host;
    p->log.api = api;
    p->max_message_bytes = cfg->max_message_bytes;
    p->timeout_ms = cfg->publish_timeout_ms;
    pthread_mutex_init(&p->mu, NULL);

    rd_kafka_conf_t *conf = dk_config_rdkafka(cfg, DK_PRODUCER, err, errlen);
    if (!conf)
        goto fail;
    rd_kafka_conf_set_opaque(conf, p);
    rd_kafka_conf_set_log_cb(conf, dk_log_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
    char why[512];
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
    if (!p->rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "kafka: cannot create the producer: %s", why);
        goto fail;
    }
    if (pthread_create(&p->thread, NULL, poll_thread, p) != 0) {
        rd_kafka_destroy(p->rk);
        snprintf(err, errlen, "kafka: cannot start the producer thread");
        goto fail;
    }
    return p;
fail:
    pthread_mutex_destroy(&p->mu);
    free(p->brokers);
    free(p);
    return NULL;
}

int dk_producer_probe(dk_producer *p, int timeout_ms, char *err, size_t errlen)
{
    int64_t deadline = now_ms() + timeout_ms;
    rd_kafka_resp_err_t last = RD_KAFKA_RESP_ERR__TIMED_OUT;
    for (;;) {
        const struct rd_kafka_metadata *md = NULL;
        int64_t left = deadline - now_ms();
        if (left < 1)
            left = 1;
        /* No topics: a cluster-only metadata request, which needs a
         * connection and, where configured, a successful login. */
        last = rd_kafka_metadata(p->rk, 0, NULL, &md, (int)(left < 250 ? left : 250));
        if (!last) {
            rd_kafka_metadata_destroy(md);
            return 0;
        }
        pthread_mutex_lock(&p->mu);
        int give_up = p->auth_failed || (p->all_down && p->cause[0]);
        pthread_mutex_unlock(&p->mu);
        if (give_up || now_ms() >= deadline)
            break;
    }
    pthread_mutex_lock(&p->mu);
    if (p->cause[0])
        snprintf(err, errlen, "kafka: cannot connect to brokers %s: %s", p->brokers, p->cause);
    else
        snprintf(err, errlen, "kafka: cannot connect to brokers %s: %s after %d ms", p->brokers,
                 rd_kafka_err2str(last), timeout_ms);
    pthread_mutex_unlock(&p->mu);
    return -1;
}

void dk_produce(dk_producer *p, const char *topic, int32_t partition,
                const void *key, size_t key_len, const void *value, size_t len,
                const dk_header *headers, size_t n_headers,
                dk_produce_cb cb, void *ctx)
{
    if (!topic || !dk_topic_name_ok(topic)) {
        complete(cb, ctx, DAPR_ERR_INVALID_ARGUMENT,
                 "kafka: invalid topic name '%.300s' (letters, digits, '.', '_' and '-', "
                 "at most 249)", topic ? topic : "");
        return;
    }
    if ((int64_t)(len + key_len) > p->max_message_bytes) {
        complete(cb, ctx, DAPR_ERR_INVALID_ARGUMENT,
                 "kafka: publishing to topic %s: message of %zu bytes exceeds maxMessageBytes (%lld)",
                 topic, len + key_len, (long long)p->max_message_bytes);
        return;
    }
    pending *pd = malloc(sizeof *pd);
    rd_kafka_headers_t *hdrs = n_headers ? rd_kafka_headers_new(n_headers) : NULL;
    if (!pd) {
        if (hdrs)
            rd_kafka_headers_destroy(hdrs);
        complete(cb, ctx, DAPR_ERR_INTERNAL, "kafka: out of memory");
        return;
    }
    pd->cb = cb;
    pd->ctx = ctx;
    for (size_t i = 0; i < n_headers; i++)
        rd_kafka_header_add(hdrs, headers[i].name, -1, headers[i].value, (ssize_t)headers[i].len);

    rd_kafka_resp_err_t e = rd_kafka_producev(
        p->rk, RD_KAFKA_V_TOPIC(topic),
        RD_KAFKA_V_PARTITION(partition >= 0 ? partition : RD_KAFKA_PARTITION_UA),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_VALUE((void *)value, value ? len : 0),
        RD_KAFKA_V_KEY(key, key ? key_len : 0),
        RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(pd), RD_KAFKA_V_END);
    if (e) {
        /* Refused at once: the headers are still ours. */
        if (hdrs)
            rd_kafka_headers_destroy(hdrs);
        free(pd);
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            complete(cb, ctx, DAPR_ERR_UNAVAILABLE,
                     "kafka: publishing to topic %s: the producer queue is full", topic);
        else
            complete(cb, ctx, map_error(e), "kafka: publishing to topic %s: %s", topic,
                     rd_kafka_err2str(e));
    }
}

void dk_producer_free(dk_producer *p)
{
    if (!p)
        return;
    atomic_store(&p->stop, 1);
    pthread_join(p->thread, NULL);
    /* Delivery reports are served here from now on. */
    int64_t wait = p->timeout_ms < 5000 ? p->timeout_ms : 5000;
    if (rd_kafka_flush(p->rk, (int)wait) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        /* Serves the purged messages' reports: every callback runs. */
        rd_kafka_flush(p->rk, 1000);
        rd_kafka_poll(p->rk, 0);
    }
    rd_kafka_destroy(p->rk);
    pthread_mutex_destroy(&p->mu);
    free(p->brokers);
    free(p);
}

/* ---- records from Dapr's metadata --------------------------------------------- */

static const char *kvs_find(dapr_kvs kvs, const char *name)
{
    const char *v = NULL;
    for (size_t i = 0; i < kvs.n; i++)
        if (kvs.items[i].name && strcmp(kvs.items[i].name, name) == 0)
            v = kvs.items[i].value;
    return v;
}

int dk_record_from_metadata(dk_record *rm, dapr_kvs meta, dapr_kvs extra,
                            const char *content_type, char *err, size_t errlen)
{
    memset(rm, 0, sizeof *rm);
    rm->partition = -1;
    rm->headers = calloc(meta.n + extra.n + 1, sizeof *rm->headers);
    if (!rm->headers) {
        snprintf(err, errlen, "kafka: out of memory");
        return -1;
    }
    int has_ct = 0;
    for (int pass = 0; pass < 2; pass++) {
        dapr_kvs kvs = pass ? extra : meta;
        for (size_t i = 0; i < kvs.n; i++) {
            const char *name = kvs.items[i].name, *value = kvs.items[i].value;
            if (!name || !value)
                continue;
            /* A request-level pair replaces the entry's of the same name. */
            if (pass == 0 && kvs_find(extra, name))
                continue;
            if (strcmp(name, "partitionKey") == 0 || strcmp(name, "__key") == 0)
                rm->key = value;
            if (strcmp(name, "partitionNumber") == 0) {
                char *end;
                long n = strtol(value, &end, 10);
                if (end == value || *end || n < 0 || n > INT32_MAX) {
                    snprintf(err, errlen, "kafka: partitionNumber must be a partition number, not "
                                          "'%.64s'", value);
                    dk_record_free(rm);
                    return -1;
                }
                rm->partition = (int32_t)n;
            }
            if (strcasecmp(name, "content-type") == 0)
                has_ct = 1;
            rm->headers[rm->n_headers++] = (dk_header){name, value, strlen(value)};
        }
    }
    if (content_type && *content_type && !has_ct)
        rm->headers[rm->n_headers++] =
            (dk_header){"content-type", content_type, strlen(content_type)};
    return 0;
}

void dk_record_free(dk_record *rm)
{
    free(rm->headers);
    rm->headers = NULL;
    rm->n_headers = 0;
}

const void *dk_record_value(dapr_bytes data)
{
    if (data.len == 0 || (data.len == 4 && memcmp(data.ptr, "null", 4) == 0))
        return NULL;
    return data.ptr;
}
