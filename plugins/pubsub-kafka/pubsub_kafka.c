/*
 * pubsub_kafka.c - pubsub.kafka: Dapr pub/sub on Apache Kafka through
 * librdkafka.
 *
 * A thin layer over plugins/kafka-common (dk.h), which bindings.kafka
 * shares: this file maps the pub/sub ABI onto dk_producer (publish, bulk
 * publish) and dk_consumer (subscribe, acks), and Dapr's message
 * conventions onto Kafka records:
 *
 *  - publish metadata partitionKey (or __key) is the record key, and
 *    partitionNumber picks the partition; every metadata pair also
 *    becomes a record header, as Dapr's component does;
 *  - the content type travels in a "content-type" header (the CloudEvents
 *    Kafka binding's name; Dapr itself sends none and ignores it), so a
 *    subscriber gets the publisher's content type back;
 *  - an empty or "null" body is a null record value, and a null value is
 *    delivered as "null", as in Dapr;
 *  - received records carry __key, __offset, __partition, __topic,
 *    __timestamp and every header as message metadata.
 *
 * Every operation only queues work (the consumer and producer have their
 * own threads), so the component is DAPR_COMPONENT_NONBLOCKING.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <dapr/plugin.h>

#include "../kafka-common/dk.h"

/* How long init waits for the brokers to answer: below daprd's default
 * initTimeout of 5 s, so the error says why rather than "timed out". */
#define PROBE_TIMEOUT_MS 4000

typedef struct ps_sub {
    uint64_t id;
    dapr_pubsub_handler handler;
    void *handler_ctx;
    char *topic;
    struct ps_sub *next;
} ps_sub;

typedef struct kafka_ps {
    dapr_host *host;
    const dapr_host_api *api;
    dk_config cfg;
    dk_producer *prod;
    dk_consumer *cons;
    pthread_mutex_t mu; /* guards subs */
    ps_sub *subs;
} kafka_ps;

static void complete(dapr_result_cb cb, void *ctx, dapr_status st, const char *msg)
{
    dapr_result res = {.status = st, .message = msg};
    cb(ctx, &res);
}

/* ---- publish -------------------------------------------------------------- */

typedef struct pub_ctx {
    dapr_result_cb cb;
    void *ctx;
} pub_ctx;

static void published(void *ctx, dapr_status st, const char *msg)
{
    pub_ctx pc = *(pub_ctx *)ctx;
    free(ctx);
    complete(pc.cb, pc.ctx, st, msg);
}

static void kafka_publish(void *inst, const dapr_pubsub_publish_req *req,
                          dapr_result_cb cb, void *ctx)
{
    kafka_ps *k = inst;
    char err[256];
    dk_record rm;
    if (!req->topic || !*req->topic) {
        complete(cb, ctx, DAPR_ERR_INVALID_ARGUMENT, "topic is empty");
        return;
    }
    if (req->data.len && !req->data.ptr) {
        complete(cb, ctx, DAPR_ERR_INVALID_ARGUMENT, "data is NULL");
        return;
    }
    dapr_kvs none = {NULL, 0};
    if (dk_record_from_metadata(&rm, req->metadata, none, req->content_type, err, sizeof err) != 0) {
        complete(cb, ctx, DAPR_ERR_INVALID_ARGUMENT, err);
        return;
    }
    pub_ctx *pc = malloc(sizeof *pc);
    if (!pc) {
        dk_record_free(&rm);
        complete(cb, ctx, DAPR_ERR_INTERNAL, "out of memory");
        return;
    }
    pc->cb = cb;
    pc->ctx = ctx;
    const void *value = dk_record_value(req->data);
    dk_produce(k->prod, req->topic, rm.partition, rm.key, rm.key ? strlen(rm.key) : 0, value,
               value ? req->data.len : 0, rm.headers, rm.n_headers, published, pc);
    dk_record_free(&rm); /* copied by librdkafka */
}

/* ---- bulk publish: all entries in flight at once ----------------------------- */

typedef struct bulk_ctx {
    pthread_mutex_t mu;
    size_t left;
    dapr_pubsub_bulk_entry_result *failed;
    size_t n_failed;
    char **messages;
    dapr_pubsub_bulk_publish_cb cb;
    void *ctx;
} bulk_ctx;

typedef struct bulk_entry_ctx {
    bulk_ctx *b;
    const char *entry_id; /* the request's: valid until we complete */
} bulk_entry_ctx;

static void bulk_finish(bulk_ctx *b)
{
    char summary[256];
    dapr_pubsub_bulk_publish_result res = {.status = DAPR_OK};
    if (b->n_failed) {
        res.status = b->failed[0].status;
        snprintf(summary, sizeof summary, "%zu entr%s failed; first: %s", b->n_failed,
                 b->n_failed == 1 ? "y" : "ies", b->failed[0].message);
        res.message = summary;
        res.failed = b->failed;
        res.n_failed = b->n_failed;
    }
    /* The result points into b: free it after the callback (which does
     * not touch the instance). */
    b->cb(b->ctx, &res);
    for (size_t i = 0; i < b->n_failed; i++)
        free(b->messages[i]);
    free(b->messages);
    free(b->failed);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

/* Record one entry's outcome; the last one finishes the request. */
static void bulk_record(bulk_ctx *b, const char *entry_id, dapr_status st, const char *msg)
{
    pthread_mutex_lock(&b->mu);
    if (st != DAPR_OK) {
        size_t i = b->n_failed++;
        b->messages[i] = strdup(msg ? msg : "failed");
        b->failed[i] = (dapr_pubsub_bulk_entry_result){
            .entry_id = entry_id, .status = st,
            .message = b->messages[i] ? b->messages[i] : "failed"};
    }
    int last = --b->left == 0;
    pthread_mutex_unlock(&b->mu);
    if (last)
        bulk_finish(b);
}

static void bulk_entry_done(void *ctx, dapr_status st, const char *msg)
{
    bulk_entry_ctx ec = *(bulk_entry_ctx *)ctx;
    free(ctx);
    bulk_record(ec.b, ec.entry_id, st, msg);
}

static void kafka_bulk_publish(void *inst, const dapr_pubsub_bulk_publish_req *req,
                               dapr_pubsub_bulk_publish_cb cb, void *ctx)
{
    kafka_ps *k = inst;
    dapr_pubsub_bulk_publish_result res = {.status = DAPR_ERR_INVALID_ARGUMENT};
    if (!req->topic || !*req->topic) {
        res.message = "topic is empty";
        cb(ctx, &res);
        return;
    }
    if (req->n_entries == 0) {
        res.status = DAPR_OK;
        cb(ctx, &res);
        return;
    }
    bulk_ctx *b = calloc(1, sizeof *b);
    if (b) {
        b->failed = calloc(req->n_entries, sizeof *b->failed);
        b->messages = calloc(req->n_entries, sizeof *b->messages);
    }
    if (!b || !b->failed || !b->messages) {
        if (b) {
            free(b->failed);
            free(b->messages);
        }
        free(b);
        res.status = DAPR_ERR_INTERNAL;
        res.message = "out of memory";
        cb(ctx, &res);
        return;
    }
    pthread_mutex_init(&b->mu, NULL);
    b->cb = cb;
    b->ctx = ctx;
    /* One extra count, released below, so that entries completing while
     * we still queue others cannot finish the request early. */
    b->left = req->n_entries + 1;
    for (size_t i = 0; i < req->n_entries; i++) {
        const dapr_pubsub_bulk_entry *e = &req->entries[i];
        char err[256];
        dk_record rm;
        if (e->data.len && !e->data.ptr) {
            bulk_record(b, e->entry_id, DAPR_ERR_INVALID_ARGUMENT, "data is NULL");
            continue;
        }
        if (dk_record_from_metadata(&rm, e->metadata, req->metadata, e->content_type, err,
                                    sizeof err)) {
            bulk_record(b, e->entry_id, DAPR_ERR_INVALID_ARGUMENT, err);
            continue;
        }
        bulk_entry_ctx *ec = malloc(sizeof *ec);
        if (!ec) {
            dk_record_free(&rm);
            bulk_record(b, e->entry_id, DAPR_ERR_INTERNAL, "out of memory");
            continue;
        }
        ec->b = b;
        ec->entry_id = e->entry_id;
        const void *value = dk_record_value(e->data);
        dk_produce(k->prod, req->topic, rm.partition, rm.key, rm.key ? strlen(rm.key) : 0, value,
                   value ? e->data.len : 0, rm.headers, rm.n_headers, bulk_entry_done, ec);
        dk_record_free(&rm);
    }
    /* Release the extra count. */
    bulk_record(b, NULL, DAPR_OK, NULL);
}

/* ---- subscribe ---------------------------------------------------------------- */

static void ack_fn(void *ack_ctx, dapr_pubsub_ack verdict)
{
    dk_verdict v = verdict == DAPR_PUBSUB_ACK_SUCCESS ? DK_ACK_DONE
                   : verdict == DAPR_PUBSUB_ACK_DROP  ? DK_ACK_DROP
                   : verdict == DAPR_PUBSUB_ACK_RETRY ? DK_ACK_RETRY
                                                      : (dk_verdict)verdict; /* dk warns */
    dk_ack(ack_ctx, v);
}

static void on_message(void *ctx, const dk_message *m, dk_delivery *d)
{
    ps_sub *s = ctx;
    dapr_pubsub_message msg = {
        .topic = m->topic,
        .data = {m->value, m->len},
        .content_type = m->content_type,
        .metadata = {m->metadata, m->n_metadata},
    };
    s->handler(s->handler_ctx, &msg, ack_fn, d);
}

static void subscribed(void *ctx, dapr_status st, const char *msg)
{
    pub_ctx pc = *(pub_ctx *)ctx;
    free(ctx);
    complete(pc.cb, pc.ctx, st, msg);
}

static void kafka_subscribe(void *inst, const dapr_pubsub_subscribe_req *req,
                            uint64_t *sub_id, dapr_result_cb cb, void *ctx)
{
    kafka_ps *k = inst;
    char err[512];
    if (!req->topic || !*req->topic || !req->handler) {
        complete(cb, ctx, DAPR_ERR_INVALID_ARGUMENT, !req->handler ? "no handler" : "topic is empty");
        return;
    }
    ps_sub *s = calloc(1, sizeof *s);
    pub_ctx *pc = malloc(sizeof *pc);
    if (!s || !pc || !(s->topic = strdup(req->topic))) {
        free(s);
        free(pc);
        complete(cb, ctx, DAPR_ERR_INTERNAL, "out of memory");
        return;
    }
    s->handler = req->handler;
    s->handler_ctx = req->handler_ctx;
    pc->cb = cb;
    pc->ctx = ctx;
    const char *topics[1] = {req->topic};
    /* Registered before the consumer may complete the subscribe. */
    pthread_mutex_lock(&k->mu);
    if (dk_consumer_subscribe(k->cons, topics, 1, req->max_in_flight, on_message, s, subscribed, pc,
                              sub_id, err, sizeof err) != 0) {
        pthread_mutex_unlock(&k->mu);
        free(s->topic);
        free(s);
        free(pc);
        complete(cb, ctx, DAPR_ERR_INVALID_ARGUMENT, err);
        return;
    }
    s->id = *sub_id;
    s->next = k->subs;
    k->subs = s;
    pthread_mutex_unlock(&k->mu);
}

static void kafka_unsubscribe(void *inst, uint64_t sub_id, dapr_result_cb cb, void *ctx)
{
    kafka_ps *k = inst;
    pthread_mutex_lock(&k->mu);
    ps_sub **pp = &k->subs;
    while (*pp && (*pp)->id != sub_id)
        pp = &(*pp)->next;
    ps_sub *s = *pp;
    if (s)
        *pp = s->next;
    pthread_mutex_unlock(&k->mu);
    if (!s || dk_consumer_unsubscribe(k->cons, sub_id) != 0) {
        complete(cb, ctx, DAPR_ERR_NOT_FOUND, "no such subscription");
        return;
    }
    /* No handler call for it starts any more: its context can go. */
    free(s->topic);
    free(s);
    complete(cb, ctx, DAPR_OK, NULL);
}

/* ---- lifecycle -------------------------------------------------------------------- */

static dapr_status kafka_init(dapr_host *host, const dapr_host_api *api, void **instance,
                              char *errbuf, size_t errlen)
{
    kafka_ps *k = calloc(1, sizeof *k);
    if (!k) {
        snprintf(errbuf, errlen, "out of memory");
        return DAPR_ERR_INTERNAL;
    }
    k->host = host;
    k->api = api;
    pthread_mutex_init(&k->mu, NULL);
    if (dk_config_from_host(&k->cfg, host, api, 1, errbuf, errlen) != 0) {
        dk_config_free(&k->cfg);
        pthread_mutex_destroy(&k->mu);
        free(k);
        return DAPR_ERR_INVALID_ARGUMENT;
    }
    dapr_status st = DAPR_ERR_INTERNAL;
    k->prod = dk_producer_new(&k->cfg, host, api, errbuf, errlen);
    if (!k->prod)
        goto fail;
    /* Fail at start-up, naming the brokers and the cause, rather than
     * at the first publish. */
    if (dk_producer_probe(k->prod, PROBE_TIMEOUT_MS, errbuf, errlen) != 0) {
        st = DAPR_ERR_UNAVAILABLE;
        goto fail;
    }
    k->cons = dk_consumer_new(&k->cfg, host, api, errbuf, errlen);
    if (!k->cons)
        goto fail;
    api->log(host, DAPR_LOG_INFO,
             "kafka: connected to brokers %s (authType %s%s, consumer group %s, initialOffset %s)",
             k->cfg.brokers, dk_auth_name(k->cfg.auth), k->cfg.tls ? ", TLS" : "",
             k->cfg.consumer_group, k->cfg.initial_oldest ? "oldest" : "newest");
    *instance = k;
    return DAPR_OK;
fail:
    dk_producer_free(k->prod);
    dk_config_free(&k->cfg);
    pthread_mutex_destroy(&k->mu);
    free(k);
    return st;
}

static void kafka_close(void *inst)
{
    kafka_ps *k = inst;
    /* The host unsubscribed and acked everything before. */
    dk_consumer_free(k->cons);
    dk_producer_free(k->prod);
    while (k->subs) {
        ps_sub *s = k->subs;
        k->subs = s->next;
        free(s->topic);
        free(s);
    }
    dk_config_free(&k->cfg);
    pthread_mutex_destroy(&k->mu);
    free(k);
}

/* ---- descriptor ----------------------------------------------------------------- */

static const dapr_metadata_field kafka_schema[] = {
    DK_METADATA_SCHEMA("true"),
};

static const dapr_pubsub_vtable kafka_vtable = {
    .size = sizeof(dapr_pubsub_vtable),
    .publish = kafka_publish,
    .bulk_publish = kafka_bulk_publish,
    .subscribe = kafka_subscribe,
    .unsubscribe = kafka_unsubscribe,
};

static const dapr_component_def kafka_component = {
    .size = sizeof(dapr_component_def),
    .kind = DAPR_KIND_PUBSUB,
    .type = "pubsub.kafka",
    .version = "v1",
    .features = DAPR_PUBSUB_BULK_PUBLISH,
    .flags = DAPR_COMPONENT_NONBLOCKING,
    .metadata_schema = kafka_schema,
    .n_metadata_schema = sizeof kafka_schema / sizeof *kafka_schema,
    .init = kafka_init,
    .close = kafka_close,
    .vtable = &kafka_vtable,
};

static const dapr_component_def *const kafka_components[] = {&kafka_component};

static const dapr_plugin_descriptor kafka_descriptor = {
    DAPR_PLUGIN_DESCRIPTOR_HEADER,
    .name = "pubsub-kafka",
    .version = "1.0.0",
    .description = "pubsub.kafka: Apache Kafka through librdkafka, offsets committed after the acks",
    .components = kafka_components,
    .n_components = 1,
};

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void);

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void)
{
    return &kafka_descriptor;
}
