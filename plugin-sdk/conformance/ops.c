/*
 * ops.c - call one vtable operation and wait for its completion.
 *
 * Each call honours the threading contract: a plugin without
 * DAPR_COMPONENT_NONBLOCKING is called on a pool of worker threads (it
 * may block and complete inline); a non-blocking one is called on one
 * single thread, like daprd's event loop, and must return promptly.  The completion is copied while the callback runs, since the
 * plugin's result is valid only until then.  A completion that never
 * comes (within --timeout) or comes twice is reported.
 *
 * Call records are kept until the end of the run, so that a late or a
 * second callback still finds valid memory and can be counted.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "conformance.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

typedef enum call_kind {
    CALL_GET, CALL_SET, CALL_DEL, CALL_BULK_GET, CALL_BULK_SET,
    CALL_BULK_DEL, CALL_TXN, CALL_QUERY
} call_kind;

typedef struct call {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int ncalls;
    ck_reply *rep;             /* NULL once the waiter gave up */
    call_kind kind;
    /* The request, owned by the caller (valid until completion). */
    dapr_state_get_req get;
    dapr_state_bulk_get_req bulk_get;
    dapr_state_txn_req txn;
    dapr_state_query_req query;
    const void *reqs;
    size_t n;
    struct call *next;
} call;

static pthread_mutex_t calls_mu = PTHREAD_MUTEX_INITIALIZER;
static call *all_calls;
static atomic_long double_callbacks;

long ck_double_callbacks(void) { return atomic_load(&double_callbacks); }

const char *ck_status_name(dapr_status s)
{
    static const char *names[] = {
        "DAPR_OK", "DAPR_ERR_INTERNAL", "DAPR_ERR_INVALID_ARGUMENT",
        "DAPR_ERR_NOT_FOUND", "DAPR_ERR_ETAG_MISMATCH", "DAPR_ERR_ETAG_INVALID",
        "DAPR_ERR_NOT_SUPPORTED", "DAPR_ERR_UNAVAILABLE", "DAPR_ERR_TIMEOUT",
        "DAPR_ERR_TOO_MANY_OPERATIONS", "DAPR_ERR_PERMISSION_DENIED",
        "DAPR_ERR_ALREADY_EXISTS"};
    if ((unsigned)s < sizeof names / sizeof *names)
        return names[s];
    return "(unknown status)";
}

/* ---- copying results ---------------------------------------------- */

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static void copy_item(ck_item *d, const char *key, dapr_status status,
                      const char *message, int found, dapr_bytes value,
                      const char *etag, dapr_kvs meta, const char *error)
{
    d->key = dup_or_null(key);
    d->status = status;
    d->message = dup_or_null(message);
    d->found = found;
    d->etag = dup_or_null(etag);
    d->error = dup_or_null(error);
    d->len = value.len;
    d->value = malloc(value.len + 1);
    if (d->value) {
        if (value.len && value.ptr)
            memcpy(d->value, value.ptr, value.len);
        else if (value.len)
            memset(d->value, 0, value.len); /* ptr NULL with len > 0: broken */
        d->value[value.len] = '\0';
    }
    if (meta.n && meta.items) {
        d->meta = calloc(meta.n, sizeof *d->meta);
        for (size_t i = 0; d->meta && i < meta.n; i++) {
            d->meta[i].name = dup_or_null(meta.items[i].name);
            d->meta[i].value = dup_or_null(meta.items[i].value);
        }
        d->n_meta = d->meta ? meta.n : 0;
    }
}

static void free_item(ck_item *it)
{
    free(it->key);
    free(it->message);
    free(it->value);
    free(it->etag);
    free(it->error);
    for (size_t i = 0; i < it->n_meta; i++) {
        free(it->meta[i].name);
        free(it->meta[i].value);
    }
    free(it->meta);
    memset(it, 0, sizeof *it);
}

void ck_reply_free(ck_reply *rep)
{
    free_item(&rep->r);
    for (size_t i = 0; i < rep->n_items; i++)
        free_item(&rep->items[i]);
    free(rep->items);
    free(rep->token);
    rep->items = NULL;
    rep->n_items = 0;
    rep->token = NULL;
}

const char *ck_meta_get(const ck_item *it, const char *name)
{
    for (size_t i = 0; i < it->n_meta; i++)
        if (it->meta[i].name && strcasecmp(it->meta[i].name, name) == 0)
            return it->meta[i].value;
    return NULL;
}

/* ---- completion callbacks ----------------------------------------- */

/* Lock the call and count this completion.  Returns the reply to fill,
 * or NULL when it must not be filled (second call, or waiter gone). */
static ck_reply *complete_begin(call *c)
{
    pthread_mutex_lock(&c->mu);
    c->ncalls++;
    if (c->ncalls > 1) {
        atomic_fetch_add(&double_callbacks, 1);
        return NULL;
    }
    return c->rep;
}

static void complete_end(call *c)
{
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void on_get(void *ctx, const dapr_state_get_result *res)
{
    call *c = ctx;
    ck_reply *rep = complete_begin(c);
    if (rep && res)
        copy_item(&rep->r, NULL, res->status, res->message, res->found,
                  res->value, res->etag, res->metadata, NULL);
    else if (rep)
        rep->r.status = DAPR_ERR_INTERNAL, rep->r.message = strdup("NULL result");
    complete_end(c);
}

static void on_result(void *ctx, const dapr_result *res)
{
    call *c = ctx;
    ck_reply *rep = complete_begin(c);
    if (rep && res) {
        rep->r.status = res->status;
        rep->r.message = dup_or_null(res->message);
    } else if (rep) {
        rep->r.status = DAPR_ERR_INTERNAL;
        rep->r.message = strdup("NULL result");
    }
    complete_end(c);
}

static void on_bulk_get(void *ctx, const dapr_state_bulk_get_result *res)
{
    call *c = ctx;
    ck_reply *rep = complete_begin(c);
    if (rep && res) {
        rep->r.status = res->status;
        rep->r.message = dup_or_null(res->message);
        if (res->n_items && res->items) {
            rep->items = calloc(res->n_items, sizeof *rep->items);
            for (size_t i = 0; rep->items && i < res->n_items; i++) {
                const dapr_state_bulk_item *it = &res->items[i];
                copy_item(&rep->items[i], it->key, it->status, it->message,
                          it->found, it->value, it->etag, it->metadata, NULL);
            }
            rep->n_items = rep->items ? res->n_items : 0;
        }
    } else if (rep) {
        rep->r.status = DAPR_ERR_INTERNAL;
        rep->r.message = strdup("NULL result");
    }
    complete_end(c);
}

static void on_query(void *ctx, const dapr_state_query_result *res)
{
    call *c = ctx;
    ck_reply *rep = complete_begin(c);
    if (rep && res) {
        rep->r.status = res->status;
        rep->r.message = dup_or_null(res->message);
        rep->token = dup_or_null(res->token);
        if (res->n_items && res->items) {
            rep->items = calloc(res->n_items, sizeof *rep->items);
            for (size_t i = 0; rep->items && i < res->n_items; i++) {
                const dapr_state_query_item *it = &res->items[i];
                dapr_kvs none = {NULL, 0};
                copy_item(&rep->items[i], it->key, DAPR_OK, NULL, 1, it->data,
                          it->etag, none, it->error);
            }
            rep->n_items = rep->items ? res->n_items : 0;
        }
    } else if (rep) {
        rep->r.status = DAPR_ERR_INTERNAL;
        rep->r.message = strdup("NULL result");
    }
    complete_end(c);
}

/* ---- invoking ------------------------------------------------------ */

static void invoke(void *arg)
{
    call *c = arg;
    const dapr_state_vtable *vt = ck_comp.vt;
    void *inst = ck_comp.inst;

    switch (c->kind) {
    case CALL_GET: vt->get(inst, &c->get, on_get, c); break;
    case CALL_SET: vt->set(inst, c->reqs, on_result, c); break;
    case CALL_DEL: vt->del(inst, c->reqs, on_result, c); break;
    case CALL_BULK_GET: vt->bulk_get(inst, &c->bulk_get, on_bulk_get, c); break;
    case CALL_BULK_SET: vt->bulk_set(inst, c->reqs, c->n, on_result, c); break;
    case CALL_BULK_DEL: vt->bulk_delete(inst, c->reqs, c->n, on_result, c); break;
    case CALL_TXN: vt->transact(inst, &c->txn, on_result, c); break;
    case CALL_QUERY: vt->query(inst, &c->query, on_query, c); break;
    }
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* A non-blocking plugin runs on the "loop": blocking there stalls every
 * other request in daprd.  Timing is only reported, never asserted. */
static void invoke_on_loop(void *arg)
{
    double start = now_ms();
    invoke(arg);
    double took = now_ms() - start;
    if (took > 500)
        fprintf(stderr, "# warning: a non-blocking plugin held the loop thread for %.0f ms\n",
                took);
}

static call *new_call(call_kind kind, ck_reply *rep)
{
    call *c = calloc(1, sizeof *c);
    if (!c) {
        fprintf(stderr, "dapr-plugin-conformance: out of memory\n");
        exit(2);
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &ca);
    pthread_condattr_destroy(&ca);
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
    ck_reply *rep = c->rep;

    host_run_op(ck_comp.nonblocking ? invoke_on_loop : invoke, c);

    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += ck_opt.timeout_ms / 1000;
    deadline.tv_nsec += (long)(ck_opt.timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }

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
                 "%s: completion callback not called within %d ms", what,
                 ck_opt.timeout_ms);
        return -1;
    }
    if (n > 1) {
        snprintf(rep->failure, sizeof rep->failure,
                 "%s: completion callback called %d times", what, n);
        return -1;
    }
    rep->completed = 1;
    return 0;
}

int ck_get(const char *key, ck_reply *rep)
{
    call *c = new_call(CALL_GET, rep);
    c->get.key = key;
    c->get.consistency = DAPR_CONSISTENCY_UNSPECIFIED;
    return run_call(c, "get");
}

int ck_set(const dapr_state_set_req *req, ck_reply *rep)
{
    call *c = new_call(CALL_SET, rep);
    c->reqs = req;
    return run_call(c, "set");
}

int ck_del(const dapr_state_delete_req *req, ck_reply *rep)
{
    call *c = new_call(CALL_DEL, rep);
    c->reqs = req;
    return run_call(c, "delete");
}

int ck_bulk_get(const char *const *keys, size_t n, ck_reply *rep)
{
    call *c = new_call(CALL_BULK_GET, rep);
    c->bulk_get.keys = keys;
    c->bulk_get.n_keys = n;
    return run_call(c, "bulk_get");
}

int ck_bulk_set(const dapr_state_set_req *reqs, size_t n, ck_reply *rep)
{
    call *c = new_call(CALL_BULK_SET, rep);
    c->reqs = reqs;
    c->n = n;
    return run_call(c, "bulk_set");
}

int ck_bulk_delete(const dapr_state_delete_req *reqs, size_t n, ck_reply *rep)
{
    call *c = new_call(CALL_BULK_DEL, rep);
    c->reqs = reqs;
    c->n = n;
    return run_call(c, "bulk_delete");
}

int ck_transact(const dapr_state_op *ops, size_t n, ck_reply *rep)
{
    call *c = new_call(CALL_TXN, rep);
    c->txn.ops = ops;
    c->txn.n_ops = n;
    return run_call(c, "transact");
}

int ck_query(const char *json, const char *key_prefix, ck_reply *rep)
{
    call *c = new_call(CALL_QUERY, rep);
    c->query.query_json.ptr = (const uint8_t *)json;
    c->query.query_json.len = strlen(json);
    c->query.key_prefix = key_prefix;
    return run_call(c, "query");
}

/* After close: every completion that will ever come has come. */
void ck_ops_shutdown(void)
{
    pthread_mutex_lock(&calls_mu);
    while (all_calls) {
        call *c = all_calls;
        all_calls = c->next;
        pthread_cond_destroy(&c->cv);
        pthread_mutex_destroy(&c->mu);
        free(c);
    }
    pthread_mutex_unlock(&calls_mu);
}
