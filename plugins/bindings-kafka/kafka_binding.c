/*
 * kafka_binding.c - bindings.kafka: Dapr's Kafka input and output binding
 * on librdkafka.
 *
 * A thin layer over plugins/kafka-common (dk.h), the Kafka client code
 * pubsub.kafka uses too: the same metadata (dk_config), the same producer
 * with delivery reports and the same consumer-group member that commits an
 * offset only once every message before it was acknowledged.  This file
 * only maps the bindings ABI onto them:
 *
 *  - output (DAPR_KIND_OUTPUT_BINDING): operation create publishes the
 *    request's data to publishTopic and answers once the brokers
 *    acknowledged it (acks=all); no response body (the app gets 204), as
 *    Dapr.  Request metadata as for pub/sub (dk_record_from_metadata):
 *    partitionKey (or __key) is the record key, partitionNumber the
 *    partition, and every pair is a record header.
 *
 *  - input (DAPR_KIND_INPUT_BINDING): start subscribes to `topics` in the
 *    consumer group; each record reaches the app with its value as the
 *    body and __key, __topic, __partition, __offset, __timestamp and the
 *    record headers as metadata (request headers to the app).  The app's
 *    2xx commits it; another status is retried in place after
 *    consumeRetryInterval when consumeRetryEnabled is true, and logged and
 *    skipped when it is false (the default for bindings, as in Dapr).  An
 *    event the app never saw (unreachable, unhealthy, daprd stopping) is
 *    never skipped: it stays uncommitted and comes again.
 *
 * The host makes one instance per direction, so an instance holds either
 * a producer or a consumer.  Every operation only queues work for those
 * clients' own threads: the component is DAPR_COMPONENT_NONBLOCKING.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dapr/plugin.h>

#include "../kafka-common/dk.h"

/* How long init waits for the brokers to answer: below daprd's default
 * initTimeout of 5 s, so the error says why rather than "timed out". */
#define PROBE_TIMEOUT_MS 4000
#define MAX_TOPICS 64

typedef struct kafka_binding {
    dapr_host *host;
    const dapr_host_api *api;
    dk_config cfg;
    /* output */
    dk_producer *prod;
    char *publish_topic;      /* NULL: invoke fails (Dapr's field is optional) */
    /* input */
    dk_consumer *cons;
    char *topics_buf;         /* the `topics` value, split in place */
    const char *topics[MAX_TOPICS];
    size_t n_topics;
    pthread_mutex_t mu;       /* guards the reading state below */
    dapr_binding_handler handler;
    void *handler_ctx;
    uint64_t sub_id;          /* 0: not reading */
} kafka_binding;

static void complete(dapr_result_cb cb, void *ctx, dapr_status st, const char *msg)
{
    dapr_result res = {.status = st, .message = msg};
    cb(ctx, &res);
}

static const char *meta(const kafka_binding *k, const char *name)
{
    const char *v = k->api->metadata_get(k->host, name);
    return v && *v ? v : NULL;
}

/* ---- output: create ---------------------------------------------------------- */

typedef struct invoke_ctx {
    dapr_binding_invoke_cb cb;
    void *ctx;
} invoke_ctx;

static void invoke_fail(dapr_binding_invoke_cb cb, void *ctx, dapr_status st, const char *msg)
{
    dapr_binding_invoke_result res = {.status = st, .message = msg};
    cb(ctx, &res);
}

static void produced(void *arg, dapr_status st, const char *msg)
{
    invoke_ctx ic = *(invoke_ctx *)arg;
    free(arg);
    /* Success has no response: Dapr's binding returns none (204). */
    dapr_binding_invoke_result res = {.status = st, .message = st == DAPR_OK ? NULL : msg};
    ic.cb(ic.ctx, &res);
}

static void kafka_invoke(void *inst, const dapr_binding_invoke_req *req,
                         dapr_binding_invoke_cb cb, void *ctx)
{
    kafka_binding *k = inst;
    char err[256];
    /* The host checked the operation against our list ("create" only). */
    if (!k->publish_topic) {
        invoke_fail(cb, ctx, DAPR_ERR_INVALID_ARGUMENT,
                    "kafka: the component has no 'publishTopic': it cannot publish");
        return;
    }
    if (req->data.len && !req->data.ptr) {
        invoke_fail(cb, ctx, DAPR_ERR_INVALID_ARGUMENT, "data is NULL");
        return;
    }
    dk_record rec;
    dapr_kvs none = {NULL, 0};
    if (dk_record_from_metadata(&rec, req->metadata, none, NULL, err, sizeof err) != 0) {
        invoke_fail(cb, ctx, DAPR_ERR_INVALID_ARGUMENT, err);
        return;
    }
    invoke_ctx *ic = malloc(sizeof *ic);
    if (!ic) {
        dk_record_free(&rec);
        invoke_fail(cb, ctx, DAPR_ERR_INTERNAL, "out of memory");
        return;
    }
    ic->cb = cb;
    ic->ctx = ctx;
    const void *value = dk_record_value(req->data);
    dk_produce(k->prod, k->publish_topic, rec.partition, rec.key, rec.key ? strlen(rec.key) : 0,
               value, value ? req->data.len : 0, rec.headers, rec.n_headers, produced, ic);
    dk_record_free(&rec); /* copied by librdkafka */
}

/* ---- input: read ---------------------------------------------------------------- */

/* The host's verdict.  The delivery token is the ack context: it stays
 * valid until acked, also after stop. */
static void acked(void *ack_ctx, dapr_status st, const char *msg, dapr_bytes response)
{
    (void)msg;
    (void)response;
    dk_ack(ack_ctx, st == DAPR_OK            ? DK_ACK_DONE
                    : st == DAPR_ERR_INTERNAL ? DK_ACK_RETRY    /* the app answered non-2xx */
                                              : DK_ACK_REQUEUE); /* the app never saw it */
}

static void on_message(void *ctx, const dk_message *m, dk_delivery *d)
{
    kafka_binding *k = ctx;
    /* Read under the lock: start may set a new handler after a stop. */
    pthread_mutex_lock(&k->mu);
    dapr_binding_handler h = k->handler;
    void *hctx = k->handler_ctx;
    pthread_mutex_unlock(&k->mu);
    dapr_binding_event ev = {
        .data = {m->value, m->len},
        .metadata = {m->metadata, m->n_metadata},
        .content_type = m->content_type,
    };
    h(hctx, &ev, acked, d);
}

typedef struct start_ctx {
    dapr_result_cb cb;
    void *ctx;
} start_ctx;

static void subscribed(void *arg, dapr_status st, const char *msg)
{
    start_ctx sc = *(start_ctx *)arg;
    free(arg);
    complete(sc.cb, sc.ctx, st, msg);
}

static void kafka_start(void *inst, const dapr_binding_read_req *req, dapr_result_cb cb, void *ctx)
{
    kafka_binding *k = inst;
    char err[512];
    if (!req->handler) {
        complete(cb, ctx, DAPR_ERR_INVALID_ARGUMENT, "no handler");
        return;
    }
    if (k->n_topics == 0) {
        /* As Dapr: an input binding without topics reads nothing. */
        k->api->log(k->host, DAPR_LOG_WARN,
                    "kafka binding: no topic defined ('topics'), input bindings will not be started");
        complete(cb, ctx, DAPR_OK, NULL);
        return;
    }
    start_ctx *sc = malloc(sizeof *sc);
    if (!sc) {
        complete(cb, ctx, DAPR_ERR_INTERNAL, "out of memory");
        return;
    }
    sc->cb = cb;
    sc->ctx = ctx;
    pthread_mutex_lock(&k->mu);
    if (k->sub_id) {
        pthread_mutex_unlock(&k->mu);
        free(sc);
        complete(cb, ctx, DAPR_OK, NULL); /* already reading */
        return;
    }
    k->handler = req->handler;
    k->handler_ctx = req->handler_ctx;
    /* Under the lock: the consumer may deliver (and complete) before
     * dk_consumer_subscribe returns, and on_message takes the lock. */
    uint64_t id = 0;
    int rc = dk_consumer_subscribe(k->cons, k->topics, k->n_topics, req->max_in_flight, on_message,
                                   k, subscribed, sc, &id, err, sizeof err);
    if (rc == 0)
        k->sub_id = id;
    pthread_mutex_unlock(&k->mu);
    if (rc != 0) {
        free(sc);
        complete(cb, ctx, DAPR_ERR_INVALID_ARGUMENT, err);
    }
}

static void kafka_stop(void *inst, dapr_result_cb cb, void *ctx)
{
    kafka_binding *k = inst;
    pthread_mutex_lock(&k->mu);
    uint64_t id = k->sub_id;
    k->sub_id = 0;
    pthread_mutex_unlock(&k->mu);
    /* Waits for a running on_message; unacked deliveries are acked later
     * (a RETRY then stays uncommitted for the group's next reader). */
    if (id)
        dk_consumer_unsubscribe(k->cons, id);
    complete(cb, ctx, DAPR_OK, NULL);
}

/* ---- lifecycle ---------------------------------------------------------------------- */

static void binding_free(kafka_binding *k)
{
    dk_consumer_free(k->cons);
    dk_producer_free(k->prod);
    free(k->publish_topic);
    free(k->topics_buf);
    dk_config_free(&k->cfg);
    pthread_mutex_destroy(&k->mu);
    free(k);
}

/* `topics`: a comma-separated list, blanks around names ignored. */
static int parse_topics(kafka_binding *k, char *errbuf, size_t errlen)
{
    const char *v = meta(k, "topics");
    if (!v)
        return 0;
    if (!(k->topics_buf = strdup(v))) {
        snprintf(errbuf, errlen, "out of memory");
        return -1;
    }
    for (char *save = NULL, *t = strtok_r(k->topics_buf, ",", &save); t;
         t = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*t))
            t++;
        char *e = t + strlen(t);
        while (e > t && isspace((unsigned char)e[-1]))
            *--e = '\0';
        if (!*t)
            continue;
        if (!dk_topic_name_ok(t)) {
            snprintf(errbuf, errlen, "kafka: invalid topic '%.64s' in 'topics' (1 to 249 letters, "
                                     "digits, '.', '_' or '-')", t);
            return -1;
        }
        if (k->n_topics == MAX_TOPICS) {
            snprintf(errbuf, errlen, "kafka: 'topics' lists more than %d topics", MAX_TOPICS);
            return -1;
        }
        k->topics[k->n_topics++] = t;
    }
    return 0;
}

static dapr_status binding_init(dapr_host *host, const dapr_host_api *api, void **instance,
                                char *errbuf, size_t errlen, int input)
{
    kafka_binding *k = calloc(1, sizeof *k);
    if (!k) {
        snprintf(errbuf, errlen, "out of memory");
        return DAPR_ERR_INTERNAL;
    }
    k->host = host;
    k->api = api;
    pthread_mutex_init(&k->mu, NULL);
    dapr_status st = DAPR_ERR_INVALID_ARGUMENT;
    /* consumeRetryEnabled defaults to false here (the schema says so, and
     * the host hands the schema's default as the value). */
    if (dk_config_from_host(&k->cfg, host, api, 0, errbuf, errlen) != 0)
        goto fail;
    /* Both fields are checked in either direction: one manifest makes
     * both instances, and a typo should fail at start-up, not later. */
    const char *pt = meta(k, "publishTopic");
    if (pt && !dk_topic_name_ok(pt)) {
        snprintf(errbuf, errlen, "kafka: invalid topic '%.64s' in 'publishTopic' (1 to 249 letters, "
                                 "digits, '.', '_' or '-')", pt);
        goto fail;
    }
    if (parse_topics(k, errbuf, errlen) != 0)
        goto fail;
    st = DAPR_ERR_INTERNAL;
    /* Fail at start-up, naming the brokers and the cause, rather than at
     * the first publish or silently in the consumer's thread.  The input
     * side probes with a producer too (the consumer has no such check)
     * and frees it afterwards. */
    k->prod = dk_producer_new(&k->cfg, host, api, errbuf, errlen);
    if (!k->prod)
        goto fail;
    if (dk_producer_probe(k->prod, PROBE_TIMEOUT_MS, errbuf, errlen) != 0) {
        st = DAPR_ERR_UNAVAILABLE;
        goto fail;
    }
    if (input) {
        dk_producer_free(k->prod);
        k->prod = NULL;
        k->cons = dk_consumer_new(&k->cfg, host, api, errbuf, errlen);
        if (!k->cons)
            goto fail;
        api->log(host, DAPR_LOG_INFO,
                 "kafka binding: input from brokers %s (authType %s%s), topics %s, consumer group "
                 "%s, initialOffset %s, consumeRetryEnabled %s",
                 k->cfg.brokers, dk_auth_name(k->cfg.auth), k->cfg.tls ? ", TLS" : "",
                 k->n_topics ? meta(k, "topics") : "(none)", k->cfg.consumer_group,
                 k->cfg.initial_oldest ? "oldest" : "newest",
                 k->cfg.consume_retry_enabled ? "true" : "false");
    } else {
        if (pt && !(k->publish_topic = strdup(pt))) {
            snprintf(errbuf, errlen, "out of memory");
            goto fail;
        }
        if (!pt)
            api->log(host, DAPR_LOG_WARN,
                     "kafka binding: no 'publishTopic': the output binding cannot publish");
        api->log(host, DAPR_LOG_INFO,
                 "kafka binding: output to brokers %s (authType %s%s), publishTopic %s",
                 k->cfg.brokers, dk_auth_name(k->cfg.auth), k->cfg.tls ? ", TLS" : "",
                 pt ? pt : "(none)");
    }
    *instance = k;
    return DAPR_OK;
fail:
    binding_free(k);
    return st;
}

static dapr_status kafka_init_output(dapr_host *host, const dapr_host_api *api, void **instance,
                                     char *errbuf, size_t errlen)
{
    return binding_init(host, api, instance, errbuf, errlen, 0);
}

static dapr_status kafka_init_input(dapr_host *host, const dapr_host_api *api, void **instance,
                                    char *errbuf, size_t errlen)
{
    return binding_init(host, api, instance, errbuf, errlen, 1);
}

static void kafka_close(void *inst)
{
    /* The host stopped reading and acked every event before. */
    binding_free(inst);
}

/* ---- descriptor ------------------------------------------------------------------------ */

static const dapr_metadata_field kafka_schema[] = {
    {"topics", DAPR_META_STRING, 0, NULL, "comma-separated topics the input binding reads"},
    {"publishTopic", DAPR_META_STRING, 0, NULL, "topic the output binding's create publishes to"},
    DK_METADATA_SCHEMA("false"),
};

static const char *const kafka_operations[] = {"create", NULL};

static const dapr_output_binding_vtable kafka_output_vtable = {
    .size = sizeof(dapr_output_binding_vtable),
    .operations = kafka_operations,
    .invoke = kafka_invoke,
};

static const dapr_input_binding_vtable kafka_input_vtable = {
    .size = sizeof(dapr_input_binding_vtable),
    .start = kafka_start,
    .stop = kafka_stop,
};

static const dapr_component_def kafka_output_component = {
    .size = sizeof(dapr_component_def),
    .kind = DAPR_KIND_OUTPUT_BINDING,
    .type = "bindings.kafka",
    .version = "v1",
    .flags = DAPR_COMPONENT_NONBLOCKING, /* invoke only queues for the producer's thread */
    .metadata_schema = kafka_schema,
    .n_metadata_schema = sizeof kafka_schema / sizeof *kafka_schema,
    .init = kafka_init_output,
    .close = kafka_close,
    .vtable = &kafka_output_vtable,
};

static const dapr_component_def kafka_input_component = {
    .size = sizeof(dapr_component_def),
    .kind = DAPR_KIND_INPUT_BINDING,
    .type = "bindings.kafka",
    .version = "v1",
    .flags = DAPR_COMPONENT_NONBLOCKING, /* start/stop only queue for the consumer's thread */
    .metadata_schema = kafka_schema,
    .n_metadata_schema = sizeof kafka_schema / sizeof *kafka_schema,
    .init = kafka_init_input,
    .close = kafka_close,
    .vtable = &kafka_input_vtable,
};

static const dapr_component_def *const kafka_components[] = {&kafka_input_component,
                                                             &kafka_output_component};

static const dapr_plugin_descriptor kafka_descriptor = {
    DAPR_PLUGIN_DESCRIPTOR_HEADER,
    .name = "bindings-kafka",
    .version = "1.0.0",
    .description = "bindings.kafka: Apache Kafka input and output binding through librdkafka, "
                   "offsets committed after the app's answer",
    .components = kafka_components,
    .n_components = 2,
};

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void);

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void)
{
    return &kafka_descriptor;
}
