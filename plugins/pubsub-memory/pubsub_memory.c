/*
 * pubsub_memory.c - pubsub.in-memory: Dapr's process-local broker.
 *
 * Every subscription on a topic gets every message published after it
 * subscribed (fan-out).  Unlike Dapr's own in-memory broker, which only
 * logs a failed delivery, this one is at-least-once within the process:
 * a message stays queued for each subscription until the host acks it
 * SUCCESS or DROP; RETRY puts it back for redelivery after a backoff
 * (100 ms doubling to 5 s).
 *
 * Memory is bounded: each subscription holds at most maxQueueLength
 * messages (queued, waiting for a retry, or handed out and unacked).  A
 * publish that would exceed it on any subscription of the topic fails with
 * DAPR_ERR_UNAVAILABLE "queue full" and is queued nowhere, so the caller
 * sees explicit back-pressure and nothing is silently dropped.
 *
 * Threading: publish, subscribe, unsubscribe and ack only take the mutex,
 * so the component is DAPR_COMPONENT_NONBLOCKING.  Deliveries run on one
 * thread per instance.  One thread rather than api->submit because the
 * pool may run tasks in any order (per-subscription FIFO would need extra
 * sequencing) and may refuse a task when its queue is full (a delivery
 * must then be rescheduled anyway); and the handler only copies the
 * message and queues it (daprd's does), so one thread is not a bottleneck.
 *
 * Topics may use MQTT-style wildcards in subscriptions: "+" matches one
 * "/"-separated level, a final "#" matches any number of levels (also
 * none).  Published topic names are taken literally.
 *
 * Lifetime: an unsubscribed subscription drops its queue at once, but its
 * struct lives on until every message it handed out has been acked (the
 * host may ack after unsubscribe; a late RETRY then simply frees the
 * message, as nobody can receive it any more).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strdup, pthread_condattr_setclock */
#endif
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <dapr/plugin.h>

#define DEFAULT_MAX_QUEUE 10000
#define DEFAULT_MAX_IN_FLIGHT 64
#define RETRY_FIRST_MS 100
#define RETRY_MAX_MS 5000

/* One published message, shared by the subscriptions it was fanned out
 * to; freed with the last reference. */
typedef struct message {
    int refs; /* under the instance mutex */
    char *topic;
    char *content_type; /* NULL when the publisher gave none */
    size_t len;
    uint8_t data[];
} message;

struct subscription;

/* A message's place in one subscription.  Also the ack context. */
typedef struct entry {
    struct subscription *sub;
    message *msg;
    int attempts;     /* deliveries so far */
    int64_t due_ms;   /* earliest redelivery (monotonic), after RETRY */
    struct entry *next;
} entry;

struct broker;

typedef struct subscription {
    struct broker *b;
    uint64_t id;
    char *topic; /* pattern */
    dapr_pubsub_handler handler;
    void *handler_ctx;
    uint32_t max_in_flight;
    int active;         /* 0 once unsubscribed */
    int unsub_waiting;  /* an unsubscribe waits for its handler call */
    entry *head, *tail; /* new messages, publish order */
    entry *retry;       /* waiting for their backoff; prepended */
    size_t held;        /* queued + retrying + in flight */
    uint32_t in_flight; /* handed to the handler, not acked yet */
    struct subscription *next;
} subscription;

typedef struct broker {
    dapr_host *host;
    const dapr_host_api *api;
    size_t max_queue;
    pthread_mutex_t mu;
    pthread_cond_t cv;   /* wakes the delivery thread */
    pthread_cond_t idle; /* signalled when a handler call returns */
    pthread_t thread;
    int stop;
    subscription *subs; /* active and draining ones */
    subscription *rr;   /* where the next delivery scan starts (fairness) */
    uint64_t next_id;
    subscription *delivering; /* whose handler is running, or NULL */
} broker;

/* ---- helpers ------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void complete(dapr_result_cb cb, void *ctx, dapr_status st, const char *msg)
{
    dapr_result res = {.status = st, .message = msg};
    cb(ctx, &res);
}

/* MQTT-style match of a published topic against a subscription pattern. */
static int topic_match(const char *pat, const char *topic)
{
    for (;;) {
        if (pat[0] == '#' && pat[1] == '\0')
            return 1; /* "a/#" also matches "a", handled below */
        if (pat[0] == '+' && (pat[1] == '/' || pat[1] == '\0')) {
            while (*topic && *topic != '/')
                topic++;
            pat++;
        } else {
            while (*pat && *pat != '/' && *pat == *topic)
                pat++, topic++;
            if ((*pat && *pat != '/') || (*topic && *topic != '/'))
                return 0;
        }
        /* Both at a level end. */
        if (!*pat && !*topic)
            return 1;
        if (!*topic)
            return strcmp(pat, "/#") == 0; /* "a/#" matches "a" */
        if (!*pat || *pat != *topic)
            return 0;
        pat++, topic++;
    }
}

static void message_unref(message *m)
{
    if (--m->refs == 0) {
        free(m->topic);
        free(m->content_type);
        free(m);
    }
}

static void entry_free(entry *e)
{
    message_unref(e->msg);
    free(e);
}

static void sub_free(subscription *s)
{
    free(s->topic);
    free(s);
}

/* Drop every queued message of a subscription (not the in-flight ones). */
static void sub_drain(subscription *s)
{
    entry *lists[2] = {s->head, s->retry};
    for (int i = 0; i < 2; i++) {
        while (lists[i]) {
            entry *e = lists[i];
            lists[i] = e->next;
            entry_free(e);
            s->held--;
        }
    }
    s->head = s->tail = s->retry = NULL;
}

/* Unlink and free an unsubscribed subscription once nothing refers to it. */
static void sub_maybe_free(broker *b, subscription *s)
{
    if (s->active || s->in_flight || b->delivering == s || s->unsub_waiting)
        return;
    for (subscription **pp = &b->subs; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    if (b->rr == s)
        b->rr = NULL;
    sub_free(s);
}

static int64_t backoff_ms(int attempts)
{
    int64_t ms = RETRY_FIRST_MS;
    for (int i = 1; i < attempts && ms < RETRY_MAX_MS; i++)
        ms *= 2;
    return ms < RETRY_MAX_MS ? ms : RETRY_MAX_MS;
}

/* ---- delivery --------------------------------------------------------- */

/* Take the next deliverable entry of s, or NULL.  *wake_ms is lowered to
 * the earliest due time of a retry that is not due yet. */
static entry *sub_take(subscription *s, int64_t now, int64_t *wake_ms)
{
    if (!s->active || s->in_flight >= s->max_in_flight)
        return NULL;
    /* Retries first: they are older than anything in the queue. */
    entry **best = NULL;
    for (entry **pp = &s->retry; *pp; pp = &(*pp)->next) {
        if ((*pp)->due_ms <= now) {
            if (!best || (*pp)->due_ms < (*best)->due_ms)
                best = pp;
        } else if ((*pp)->due_ms < *wake_ms) {
            *wake_ms = (*pp)->due_ms;
        }
    }
    if (best) {
        entry *e = *best;
        *best = e->next;
        return e;
    }
    /* With one message in flight at most, the subscriber sees publish
     * order: a message waiting for its retry holds back the later ones. */
    if (s->max_in_flight == 1 && s->retry)
        return NULL;
    entry *e = s->head;
    if (e) {
        s->head = e->next;
        if (!s->head)
            s->tail = NULL;
    }
    return e;
}

static void ack_message(void *ack_ctx, dapr_pubsub_ack verdict);

static void *delivery_thread(void *arg)
{
    broker *b = arg;

    pthread_mutex_lock(&b->mu);
    while (!b->stop) {
        int64_t now = now_ms();
        int64_t wake = INT64_MAX;
        entry *e = NULL;
        subscription *s = NULL;

        /* Round robin over the subscriptions, starting after the one
         * served last, so a busy topic cannot starve the others. */
        subscription *start = b->rr && b->rr->next ? b->rr->next : b->subs;
        s = start;
        while (s) {
            if ((e = sub_take(s, now, &wake)) != NULL)
                break;
            s = s->next ? s->next : b->subs;
            if (s == start)
                break;
        }
        if (!e) {
            if (wake == INT64_MAX) {
                pthread_cond_wait(&b->cv, &b->mu);
            } else {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                int64_t ms = wake - now;
                ts.tv_sec += (time_t)(ms / 1000);
                ts.tv_nsec += (long)(ms % 1000) * 1000000L;
                if (ts.tv_nsec >= 1000000000L) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&b->cv, &b->mu, &ts);
            }
            continue;
        }

        b->rr = s;
        s->in_flight++;
        e->attempts++;
        b->delivering = s;
        dapr_pubsub_message msg = {
            .topic = e->msg->topic,
            .data = {e->msg->data, e->msg->len},
            .content_type = e->msg->content_type,
            .metadata = {NULL, 0},
        };
        /* The handler may ack inline (from this thread): never hold the
         * mutex across it.  An ack may free e and its message before the
         * handler returns, so take a reference of our own on the message
         * the handler is reading. */
        message *keep = e->msg;
        keep->refs++;
        pthread_mutex_unlock(&b->mu);
        s->handler(s->handler_ctx, &msg, ack_message, e);
        pthread_mutex_lock(&b->mu);
        message_unref(keep);
        b->delivering = NULL;
        pthread_cond_broadcast(&b->idle);
        sub_maybe_free(b, s);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}


/* The host's verdict on one delivered message: exactly once, any thread,
 * possibly after the subscription was unsubscribed. */
static void ack_message(void *ack_ctx, dapr_pubsub_ack verdict)
{
    entry *e = ack_ctx;
    subscription *s = e->sub;
    broker *b = s->b;

    pthread_mutex_lock(&b->mu);
    s->in_flight--;
    if (verdict != DAPR_PUBSUB_ACK_SUCCESS && verdict != DAPR_PUBSUB_ACK_DROP &&
        verdict != DAPR_PUBSUB_ACK_RETRY) {
        /* Unknown verdict: keeping the message is the safe reading. */
        b->api->log(b->host, DAPR_LOG_WARN, "unknown ack verdict %d on topic %s: retrying",
                    (int)verdict, e->msg->topic);
        verdict = DAPR_PUBSUB_ACK_RETRY;
    }
    if (verdict == DAPR_PUBSUB_ACK_RETRY && s->active) {
        e->due_ms = now_ms() + backoff_ms(e->attempts);
        e->next = s->retry;
        s->retry = e;
    } else {
        /* SUCCESS, DROP, or a RETRY nobody can receive any more. */
        entry_free(e);
        s->held--;
    }
    /* A slot is free, or a retry has a due time to wait for. */
    pthread_cond_signal(&b->cv);
    sub_maybe_free(b, s);
    pthread_mutex_unlock(&b->mu);
}

/* ---- operations ------------------------------------------------------ */

static void mem_publish(void *inst, const dapr_pubsub_publish_req *req,
                        dapr_result_cb cb, void *ctx)
{
    broker *b = inst;
    char err[512];

    if (!req->topic || !*req->topic) {
        complete(cb, ctx, DAPR_ERR_INVALID_ARGUMENT, "topic is empty");
        return;
    }
    if (req->data.len && !req->data.ptr) {
        complete(cb, ctx, DAPR_ERR_INVALID_ARGUMENT, "data is NULL");
        return;
    }
    /* Copy once before taking the lock; every subscription shares it. */
    message *m = malloc(sizeof *m + req->data.len);
    if (!m) {
        complete(cb, ctx, DAPR_ERR_INTERNAL, "out of memory");
        return;
    }
    m->refs = 0;
    m->len = req->data.len;
    if (m->len)
        memcpy(m->data, req->data.ptr, m->len);
    m->topic = strdup(req->topic);
    m->content_type = req->content_type ? strdup(req->content_type) : NULL;
    if (!m->topic || (req->content_type && !m->content_type)) {
        free(m->topic);
        free(m->content_type);
        free(m);
        complete(cb, ctx, DAPR_ERR_INTERNAL, "out of memory");
        return;
    }

    pthread_mutex_lock(&b->mu);
    /* All or nothing: first check every subscription has room and make
     * every entry, then queue them, so a failed publish queued nothing
     * and the publisher may simply try again. */
    size_t n = 0;
    for (subscription *s = b->subs; s; s = s->next) {
        if (!s->active || !topic_match(s->topic, m->topic))
            continue;
        if (s->held >= b->max_queue) {
            pthread_mutex_unlock(&b->mu);
            snprintf(err, sizeof err,
                     "queue full: a subscription to %s holds %zu messages (maxQueueLength)",
                     s->topic, b->max_queue);
            m->refs = 1;
            message_unref(m);
            complete(cb, ctx, DAPR_ERR_UNAVAILABLE, err);
            return;
        }
        n++;
    }
    entry *made = NULL;
    size_t n_made = 0;
    for (; n_made < n; n_made++) {
        entry *e = calloc(1, sizeof *e);
        if (!e)
            break;
        e->next = made;
        made = e;
    }
    if (n_made < n) {
        pthread_mutex_unlock(&b->mu);
        while (made) {
            entry *e = made;
            made = e->next;
            free(e);
        }
        m->refs = 1;
        message_unref(m);
        complete(cb, ctx, DAPR_ERR_INTERNAL, "out of memory");
        return;
    }
    for (subscription *s = b->subs; s && made; s = s->next) {
        if (!s->active || !topic_match(s->topic, m->topic))
            continue;
        entry *e = made;
        made = e->next;
        e->next = NULL;
        e->sub = s;
        e->msg = m;
        m->refs++;
        if (s->tail)
            s->tail->next = e;
        else
            s->head = e;
        s->tail = e;
        s->held++;
    }
    if (n)
        pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);

    if (n == 0) {
        /* Nobody listens: the message is gone, as in Dapr. */
        m->refs = 1;
        message_unref(m);
    }
    complete(cb, ctx, DAPR_OK, NULL);
}

static void mem_subscribe(void *inst, const dapr_pubsub_subscribe_req *req,
                          uint64_t *sub_id, dapr_result_cb cb, void *ctx)
{
    broker *b = inst;

    if (!req->topic || !*req->topic) {
        complete(cb, ctx, DAPR_ERR_INVALID_ARGUMENT, "topic is empty");
        return;
    }
    if (!req->handler) {
        complete(cb, ctx, DAPR_ERR_INVALID_ARGUMENT, "no handler");
        return;
    }
    subscription *s = calloc(1, sizeof *s);
    if (!s || !(s->topic = strdup(req->topic))) {
        free(s);
        complete(cb, ctx, DAPR_ERR_INTERNAL, "out of memory");
        return;
    }
    s->b = b;
    s->handler = req->handler;
    s->handler_ctx = req->handler_ctx;
    s->max_in_flight = req->max_in_flight ? req->max_in_flight : DEFAULT_MAX_IN_FLIGHT;
    s->active = 1;

    pthread_mutex_lock(&b->mu);
    s->id = ++b->next_id;
    s->next = b->subs;
    b->subs = s;
    *sub_id = s->id;
    pthread_mutex_unlock(&b->mu);
    complete(cb, ctx, DAPR_OK, NULL);
}

static void mem_unsubscribe(void *inst, uint64_t sub_id, dapr_result_cb cb, void *ctx)
{
    broker *b = inst;
    subscription *s;

    pthread_mutex_lock(&b->mu);
    for (s = b->subs; s; s = s->next)
        if (s->id == sub_id && s->active)
            break;
    if (!s) {
        pthread_mutex_unlock(&b->mu);
        complete(cb, ctx, DAPR_ERR_NOT_FOUND, "no such subscription");
        return;
    }
    s->active = 0;
    sub_drain(s);
    /* No handler call may be running for it when we complete.  The wait
     * is short (a handler only queues the message) and skipped when the
     * handler itself unsubscribes. */
    s->unsub_waiting = 1; /* nobody frees s while we sleep on it */
    while (b->delivering == s && !pthread_equal(pthread_self(), b->thread))
        pthread_cond_wait(&b->idle, &b->mu);
    s->unsub_waiting = 0;
    sub_maybe_free(b, s);
    pthread_mutex_unlock(&b->mu);
    complete(cb, ctx, DAPR_OK, NULL);
}

/* ---- lifecycle ------------------------------------------------------- */

static dapr_status mem_init(dapr_host *host, const dapr_host_api *api,
                            void **instance, char *errbuf, size_t errlen)
{
    size_t max_queue = DEFAULT_MAX_QUEUE;
    const char *v = api->metadata_get(host, "maxQueueLength");
    if (v && *v) {
        char *end;
        errno = 0;
        long long n = strtoll(v, &end, 10);
        if (errno || end == v || *end || n <= 0) {
            snprintf(errbuf, errlen, "maxQueueLength must be a positive integer, got '%s'", v);
            return DAPR_ERR_INVALID_ARGUMENT;
        }
        max_queue = (size_t)n;
    }

    broker *b = calloc(1, sizeof *b);
    if (!b) {
        snprintf(errbuf, errlen, "out of memory");
        return DAPR_ERR_INTERNAL;
    }
    b->host = host;
    b->api = api;
    b->max_queue = max_queue;
    pthread_mutex_init(&b->mu, NULL);
    /* Retry due times are monotonic; so must the waits be. */
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&b->idle, NULL);
    if (pthread_create(&b->thread, NULL, delivery_thread, b) != 0) {
        pthread_cond_destroy(&b->idle);
        pthread_cond_destroy(&b->cv);
        pthread_mutex_destroy(&b->mu);
        free(b);
        snprintf(errbuf, errlen, "cannot start the delivery thread");
        return DAPR_ERR_INTERNAL;
    }
    *instance = b;
    return DAPR_OK;
}

static void mem_close(void *inst)
{
    broker *b = inst;

    pthread_mutex_lock(&b->mu);
    b->stop = 1;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->thread, NULL);

    /* The host unsubscribed everything and returned every ack first;
     * whatever is left here is only queued messages. */
    while (b->subs) {
        subscription *s = b->subs;
        b->subs = s->next;
        sub_drain(s);
        sub_free(s);
    }
    pthread_cond_destroy(&b->idle);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

/* ---- descriptor ------------------------------------------------------ */

static const dapr_metadata_field mem_schema[] = {
    {"maxQueueLength", DAPR_META_INT, 0, "10000",
     "messages one subscription may hold (queued or unacked) before publish fails"},
};

static const dapr_pubsub_vtable mem_vtable = {
    .size = sizeof(dapr_pubsub_vtable),
    .publish = mem_publish,
    .bulk_publish = NULL, /* the host publishes entry by entry */
    .subscribe = mem_subscribe,
    .unsubscribe = mem_unsubscribe,
};

static const dapr_component_def mem_component = {
    .size = sizeof(dapr_component_def),
    .kind = DAPR_KIND_PUBSUB,
    .type = "pubsub.in-memory",
    .version = "v1",
    .features = DAPR_PUBSUB_SUBSCRIBE_WILDCARDS,
    .flags = DAPR_COMPONENT_NONBLOCKING,
    .metadata_schema = mem_schema,
    .n_metadata_schema = sizeof mem_schema / sizeof *mem_schema,
    .init = mem_init,
    .close = mem_close,
    .vtable = &mem_vtable,
};

static const dapr_component_def *const mem_components[] = {&mem_component};

static const dapr_plugin_descriptor mem_descriptor = {
    DAPR_PLUGIN_DESCRIPTOR_HEADER,
    .name = "pubsub-memory",
    .version = "1.0.0",
    .description = "pubsub.in-memory: process-local, at-least-once fan-out broker",
    .components = mem_components,
    .n_components = 1,
};

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void);

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void)
{
    return &mem_descriptor;
}
