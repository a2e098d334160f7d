/*
 * pubsub_ops.c - call a broker plugin the way daprd does and record what
 * its handler receives.
 *
 * Operations run on the op pool (host_run_op): worker threads for a
 * blocking plugin, one "loop" thread for a non-blocking one.  The handler
 * copies each message; acks are then sent from the kit's ack thread (as
 * daprd acks later from its loop) or by the test (manual subscriptions).
 * The unacked count drops before ack is called, because the plugin may
 * hand out the next message as soon as it sees the ack.
 *
 * Call records and subscriptions are kept until the end of the run, so
 * that a late callback or a handler call after unsubscribe still finds
 * valid memory and can be reported.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "pubsub.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void oom(void)
{
    fprintf(stderr, "dapr-plugin-conformance: out of memory\n");
    exit(2);
}

double ps_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void ps_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void deadline_in(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void cond_init_mono(pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
}

void ps_topic(char *buf, size_t len, const char *name)
{
    /* The run prefix is "conformance-<time>-<pid>||": keep it, minus the
     * "||" that Kafka or NATS would not take in a topic. */
    const char *p = ck_run_prefix();
    size_t n = strcspn(p, "|");
    snprintf(buf, len, "%.*s-%s", (int)n, p, name);
}

/* ---- the ack thread ----------------------------------------------- */

typedef struct ack_job {
    ps_sub *s;
    dapr_pubsub_ack_fn ack;
    void *ack_ctx;
    dapr_pubsub_ack verdict;
    struct ack_job *next;
} ack_job;

static pthread_mutex_t ack_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ack_cv = PTHREAD_COND_INITIALIZER;
static pthread_cond_t ack_idle_cv = PTHREAD_COND_INITIALIZER;
static ack_job *ack_head, *ack_tail;
static int ack_busy, ack_stop, ack_started;
static pthread_t ack_thread;

static void send_ack(ps_sub *s, dapr_pubsub_ack_fn ack, void *ctx, dapr_pubsub_ack v)
{
    pthread_mutex_lock(&s->mu);
    s->unacked--;
    pthread_mutex_unlock(&s->mu);
    ack(ctx, v);
}

static void *ack_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&ack_mu);
    for (;;) {
        while (!ack_head && !ack_stop)
            pthread_cond_wait(&ack_cv, &ack_mu);
        if (!ack_head)
            break;
        ack_job *j = ack_head;
        ack_head = j->next;
        if (!ack_head)
            ack_tail = NULL;
        ack_busy = 1;
        pthread_mutex_unlock(&ack_mu);
        send_ack(j->s, j->ack, j->ack_ctx, j->verdict);
        free(j);
        pthread_mutex_lock(&ack_mu);
        ack_busy = 0;
        if (!ack_head)
            pthread_cond_broadcast(&ack_idle_cv);
    }
    pthread_mutex_unlock(&ack_mu);
    return NULL;
}

static void queue_ack(ps_sub *s, dapr_pubsub_ack_fn ack, void *ctx, dapr_pubsub_ack v)
{
    ack_job *j = calloc(1, sizeof *j);
    if (!j)
        oom();
    j->s = s;
    j->ack = ack;
    j->ack_ctx = ctx;
    j->verdict = v;
    pthread_mutex_lock(&ack_mu);
    if (!ack_started) {
        if (pthread_create(&ack_thread, NULL, ack_main, NULL) != 0) {
            fprintf(stderr, "dapr-plugin-conformance: cannot start a thread\n");
            exit(2);
        }
        ack_started = 1;
    }
    if (ack_tail)
        ack_tail->next = j;
    else
        ack_head = j;
    ack_tail = j;
    pthread_cond_signal(&ack_cv);
    pthread_mutex_unlock(&ack_mu);
}

static void wait_acks_sent(void)
{
    pthread_mutex_lock(&ack_mu);
    while (ack_head || ack_busy)
        pthread_cond_wait(&ack_idle_cv, &ack_mu);
    pthread_mutex_unlock(&ack_mu);
}

/* ---- the handler --------------------------------------------------- */

static pthread_mutex_t subs_mu = PTHREAD_MUTEX_INITIALIZER;
static ps_sub *all_subs;

static void note_bad(ps_sub *s, const char *what)
{
    if (!s->bad[0])
        snprintf(s->bad, sizeof s->bad, "%s", what);
}

static void handler(void *ctx, const dapr_pubsub_message *msg,
                    dapr_pubsub_ack_fn ack, void *ack_ctx)
{
    ps_sub *s = ctx;
    /* Read first: a call that began before unsubscribe completed is fine
     * even if it gets the lock later. */
    int late = atomic_load(&s->unsubscribed);

    if (!ack) {
        pthread_mutex_lock(&s->mu);
        note_bad(s, "handler called with a NULL ack function");
        pthread_mutex_unlock(&s->mu);
        return;
    }
    pthread_mutex_lock(&s->mu);
    s->unacked++;
    if (s->unacked > s->max_unacked)
        s->max_unacked = s->unacked;
    if (!msg) {
        note_bad(s, "handler called with a NULL message");
        pthread_mutex_unlock(&s->mu);
        queue_ack(s, ack, ack_ctx, DAPR_PUBSUB_ACK_DROP);
        return;
    }
    if (late) {
        s->late_calls++;
        pthread_mutex_unlock(&s->mu);
        queue_ack(s, ack, ack_ctx, DAPR_PUBSUB_ACK_SUCCESS);
        return;
    }
    if (msg->data.len && !msg->data.ptr)
        note_bad(s, "message data is NULL with a non-zero length");

    if (s->n_msgs == s->cap_msgs) {
        size_t cap = s->cap_msgs ? s->cap_msgs * 2 : 64;
        ps_msg *m = realloc(s->msgs, cap * sizeof *m);
        if (!m)
            oom();
        s->msgs = m;
        s->cap_msgs = cap;
    }
    ps_msg *m = &s->msgs[s->n_msgs];
    memset(m, 0, sizeof *m);
    m->topic = msg->topic ? strdup(msg->topic) : NULL;
    m->content_type = msg->content_type ? strdup(msg->content_type) : NULL;
    m->len = msg->data.len;
    m->data = malloc(m->len + 1);
    if (!m->data || (msg->topic && !m->topic) || (msg->content_type && !m->content_type))
        oom();
    if (m->len && msg->data.ptr)
        memcpy(m->data, msg->data.ptr, m->len);
    m->data[m->len] = '\0';
    s->n_msgs++;

    if (s->manual) {
        if (s->n_pending == s->cap_pending) {
            size_t cap = s->cap_pending ? s->cap_pending * 2 : 16;
            ps_pending *p = realloc(s->pending, cap * sizeof *p);
            if (!p)
                oom();
            s->pending = p;
            s->cap_pending = cap;
        }
        s->pending[s->n_pending++] = (ps_pending){ack, ack_ctx, s->n_msgs - 1};
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        return;
    }
    dapr_pubsub_ack v = s->decide ? s->decide(s, m, s->decide_arg) : DAPR_PUBSUB_ACK_SUCCESS;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    queue_ack(s, ack, ack_ctx, v);
}

/* ---- synchronous calls --------------------------------------------- */

typedef enum { CALL_PUBLISH, CALL_SUBSCRIBE, CALL_UNSUBSCRIBE } call_kind;

typedef struct call {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int ncalls;
    ps_reply *rep;             /* NULL once the waiter gave up */
    call_kind kind;
    dapr_pubsub_publish_req pub;
    dapr_pubsub_subscribe_req sub;
    uint64_t sub_id;           /* written by subscribe */
    uint64_t unsub_id;
    struct call *next;
} call;

static pthread_mutex_t calls_mu = PTHREAD_MUTEX_INITIALIZER;
static call *all_calls;
static atomic_long double_callbacks;

long ps_double_callbacks(void) { return atomic_load(&double_callbacks); }

static void on_result(void *ctx, const dapr_result *res)
{
    call *c = ctx;
    pthread_mutex_lock(&c->mu);
    if (++c->ncalls > 1) {
        atomic_fetch_add(&double_callbacks, 1);
    } else if (c->rep) {
        c->rep->status = res ? res->status : DAPR_ERR_INTERNAL;
        snprintf(c->rep->message, sizeof c->rep->message, "%s",
                 !res ? "NULL result" : res->message ? res->message : "");
    }
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void invoke(void *arg)
{
    call *c = arg;
    const dapr_pubsub_vtable *vt = ck_comp.ps;
    switch (c->kind) {
    case CALL_PUBLISH: vt->publish(ck_comp.inst, &c->pub, on_result, c); break;
    case CALL_SUBSCRIBE: vt->subscribe(ck_comp.inst, &c->sub, &c->sub_id, on_result, c); break;
    case CALL_UNSUBSCRIBE: vt->unsubscribe(ck_comp.inst, c->unsub_id, on_result, c); break;
    }
}

/* A non-blocking plugin runs on the "loop": report when it holds it. */
static void invoke_on_loop(void *arg)
{
    double start = ps_now_ms();
    invoke(arg);
    double took = ps_now_ms() - start;
    if (took > 500)
        fprintf(stderr, "# warning: a non-blocking plugin held the loop thread for %.0f ms\n",
                took);
}

static call *new_call(call_kind kind, ps_reply *rep)
{
    call *c = calloc(1, sizeof *c);
    if (!c)
        oom();
    pthread_mutex_init(&c->mu, NULL);
    cond_init_mono(&c->cv);
    c->kind = kind;
    memset(rep, 0, sizeof *rep);
    c->rep = rep;
    pthread_mutex_lock(&calls_mu);
    c->next = all_calls;
    all_calls = c;
    pthread_mutex_unlock(&calls_mu);
    return c;
}

static int run_call(call *c, const char *what)
{
    ps_reply *rep = c->rep;
    struct timespec deadline;

    host_run_op(ck_comp.nonblocking ? invoke_on_loop : invoke, c);
    deadline_in(&deadline, ck_opt.timeout_ms);
    pthread_mutex_lock(&c->mu);
    int rc = 0;
    while (c->ncalls == 0 && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&c->cv, &c->mu, &deadline);
    int n = c->ncalls;
    if (n == 0)
        c->rep = NULL; /* a late completion must not touch rep */
    pthread_mutex_unlock(&c->mu);
    if (n == 0) {
        snprintf(rep->failure, sizeof rep->failure,
                 "%s: completion callback not called within %d ms", what, ck_opt.timeout_ms);
        return -1;
    }
    if (n > 1) {
        snprintf(rep->failure, sizeof rep->failure, "%s: completion callback called %d times",
                 what, n);
        return -1;
    }
    rep->completed = 1;
    return 0;
}

int ps_publish(const char *topic, const void *data, size_t len,
               const char *content_type, ps_reply *rep)
{
    call *c = new_call(CALL_PUBLISH, rep);
    c->pub.topic = topic;
    c->pub.data.ptr = data;
    c->pub.data.len = len;
    c->pub.content_type = content_type;
    return run_call(c, "publish");
}

ps_sub *ps_subscribe(const char *topic, uint32_t max_in_flight, int manual,
                     ps_decide_fn decide, void *decide_arg, ps_reply *rep)
{
    ps_sub *s = calloc(1, sizeof *s);
    if (!s || !(s->topic = strdup(topic)))
        oom();
    pthread_mutex_init(&s->mu, NULL);
    cond_init_mono(&s->cv);
    s->max_in_flight = max_in_flight;
    s->manual = manual;
    s->decide = decide;
    s->decide_arg = decide_arg;
    s->in_test = 1;
    pthread_mutex_lock(&subs_mu);
    s->next = all_subs;
    all_subs = s;
    pthread_mutex_unlock(&subs_mu);

    call *c = new_call(CALL_SUBSCRIBE, rep);
    c->sub.topic = s->topic;
    c->sub.handler = handler;
    c->sub.handler_ctx = s;
    c->sub.max_in_flight = max_in_flight;
    if (run_call(c, "subscribe") == 0 && rep->status == DAPR_OK) {
        if (c->sub_id == 0) {
            snprintf(rep->failure, sizeof rep->failure,
                     "subscribe completed with DAPR_OK but left the subscription id 0");
            rep->completed = 0;
        } else {
            pthread_mutex_lock(&s->mu);
            s->id = c->sub_id;
            s->active = 1;
            pthread_mutex_unlock(&s->mu);
        }
    }
    return s;
}

int ps_unsubscribe(ps_sub *s, ps_reply *rep)
{
    call *c = new_call(CALL_UNSUBSCRIBE, rep);
    pthread_mutex_lock(&s->mu);
    c->unsub_id = s->id;
    s->active = 0;
    pthread_mutex_unlock(&s->mu);
    int rc = run_call(c, "unsubscribe");
    if (rc == 0) {
        /* From here on, a handler call for s is a contract violation. */
        atomic_store(&s->unsubscribed, 1);
    }
    return rc;
}

/* ---- waiting and acking -------------------------------------------- */

static int wait_for(ps_sub *s, const size_t *counter, size_t n, int timeout_ms)
{
    struct timespec deadline;
    deadline_in(&deadline, timeout_ms);
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    while (*counter < n && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&s->cv, &s->mu, &deadline);
    int ok = *counter >= n;
    pthread_mutex_unlock(&s->mu);
    return ok ? 0 : -1;
}

int ps_wait_msgs(ps_sub *s, size_t n, int timeout_ms)
{
    return wait_for(s, &s->n_msgs, n, timeout_ms);
}

int ps_wait_pending(ps_sub *s, size_t n, int timeout_ms)
{
    return wait_for(s, &s->n_pending, n, timeout_ms);
}

size_t ps_count(ps_sub *s)
{
    pthread_mutex_lock(&s->mu);
    size_t n = s->n_msgs;
    pthread_mutex_unlock(&s->mu);
    return n;
}

size_t ps_npending(ps_sub *s)
{
    pthread_mutex_lock(&s->mu);
    size_t n = s->n_pending;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void ps_ack(ps_sub *s, size_t i, dapr_pubsub_ack verdict)
{
    pthread_mutex_lock(&s->mu);
    if (i >= s->n_pending) {
        pthread_mutex_unlock(&s->mu);
        return;
    }
    ps_pending p = s->pending[i];
    memmove(&s->pending[i], &s->pending[i + 1], (s->n_pending - i - 1) * sizeof *s->pending);
    s->n_pending--;
    pthread_mutex_unlock(&s->mu);
    send_ack(s, p.ack, p.ack_ctx, verdict);
}

/* ---- per test and per run cleanup ------------------------------------ */

void ps_teardown(ck_test *t)
{
    pthread_mutex_lock(&subs_mu);
    ps_sub *list = all_subs;
    pthread_mutex_unlock(&subs_mu);

    for (ps_sub *s = list; s; s = s->next) {
        if (!s->in_test)
            continue;
        s->in_test = 0;
        pthread_mutex_lock(&s->mu);
        int active = s->active;
        pthread_mutex_unlock(&s->mu);
        if (active) {
            ps_reply rep;
            if (ps_unsubscribe(s, &rep) != 0)
                ck_fail(t, "cleanup: %s", rep.failure);
            else if (rep.status != DAPR_OK)
                ck_fail(t, "cleanup: unsubscribe returned %s: %s",
                        ck_status_name(rep.status), rep.message);
        }
        /* The host acks what it holds even after unsubscribing. */
        while (ps_npending(s))
            ps_ack(s, 0, DAPR_PUBSUB_ACK_SUCCESS);
    }
    wait_acks_sent();

    for (ps_sub *s = list; s; s = s->next) {
        pthread_mutex_lock(&s->mu);
        if (s->bad[0])
            ck_fail(t, "topic %s: %s", s->topic, s->bad);
        if (s->late_calls)
            ck_fail(t, "topic %s: handler called %ld time(s) after unsubscribe completed",
                    s->topic, s->late_calls);
        if (s->max_in_flight && s->max_unacked > s->max_in_flight)
            ck_fail(t, "topic %s: %u messages at the handler unacked, max_in_flight is %u",
                    s->topic, s->max_unacked, s->max_in_flight);
        s->bad[0] = '\0'; /* report each once */
        s->late_calls = 0;
        s->max_unacked = 0;
        pthread_mutex_unlock(&s->mu);
    }
}

void ps_shutdown(void)
{
    pthread_mutex_lock(&ack_mu);
    ack_stop = 1;
    pthread_cond_signal(&ack_cv);
    int started = ack_started;
    pthread_mutex_unlock(&ack_mu);
    if (started)
        pthread_join(ack_thread, NULL);

    while (all_subs) {
        ps_sub *s = all_subs;
        all_subs = s->next;
        for (size_t i = 0; i < s->n_msgs; i++) {
            free(s->msgs[i].topic);
            free(s->msgs[i].content_type);
            free(s->msgs[i].data);
        }
        free(s->msgs);
        free(s->pending);
        free(s->topic);
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        free(s);
    }
    while (all_calls) {
        call *c = all_calls;
        all_calls = c->next;
        pthread_cond_destroy(&c->cv);
        pthread_mutex_destroy(&c->mu);
        free(c);
    }
}
