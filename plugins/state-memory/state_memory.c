/*
 * state_memory.c - state.in-memory: Dapr's process-local state store.
 *
 * Everything lives in one hash table (memtable.c) behind one mutex.  No
 * operation waits on I/O, so the component is DAPR_COMPONENT_NONBLOCKING
 * and the host calls it on its event loop; the one costly operation,
 * query, moves itself to the host's worker pool.
 *
 * Writes (set, delete, bulk, transaction) share one path: every new value
 * is allocated before the lock is taken; under the lock all etag
 * conditions are checked against the current contents and only then is
 * anything applied, so a batch is all or nothing and cannot fail halfway.
 *
 * TTL: an item's expiry is kept in milliseconds of CLOCK_REALTIME.  Expired
 * items are absent for every operation, are removed when a lookup meets
 * them, and a periodic sweep reclaims the rest a slice at a time.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <dapr/plugin.h>

#include "memtable.h"
#include "query.h"

#define SWEEP_INTERVAL_MS 1000
#define SWEEP_MAX_BUCKETS 4096 /* bounds the time the sweep holds the lock */

typedef struct memstore {
    dapr_host *host;
    const dapr_host_api *api;
    pthread_mutex_t mu;
    memtable tab;
    size_t sweep_cursor;
    uint64_t timer;
} memstore;

/* ---- helpers ------------------------------------------------------- */

static const char *kvs_get(dapr_kvs m, const char *name)
{
    for (size_t i = 0; i < m.n; i++)
        if (m.items[i].name && strcasecmp(m.items[i].name, name) == 0)
            return m.items[i].value;
    return NULL;
}

/* Read ttlInSeconds into *expire_ms (0 = no expiry).  Negative values
 * and 0 mean "no TTL" as in Dapr's in-memory store; an empty value is
 * treated as absent. */
static int parse_ttl(dapr_kvs meta, int64_t now_ms, int64_t *expire_ms,
                     char *err, size_t errlen)
{
    const char *s = kvs_get(meta, "ttlInSeconds");
    char *end;
    long long ttl;

    *expire_ms = 0;
    if (!s || !*s)
        return 0;
    errno = 0;
    ttl = strtoll(s, &end, 10);
    if (errno || end == s || *end) {
        snprintf(err, errlen, "invalid value for ttlInSeconds '%s': not an integer", s);
        return -1;
    }
    if (ttl > 0)
        *expire_ms = ttl > (INT64_MAX - now_ms) / 1000 ? INT64_MAX : now_ms + ttl * 1000;
    return 0;
}

/* RFC 3339 UTC, as Dapr reports ttlExpireTime. */
static void format_expire(int64_t expire_ms, char *buf, size_t len)
{
    const int64_t max_s = 253402300799; /* 9999-12-31T23:59:59Z: RFC 3339 has 4-digit years */
    time_t t = (time_t)(expire_ms / 1000 > max_s ? max_s : expire_ms / 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(buf, len, "9999-12-31T23:59:59Z");
}

static int has_etag(const char *etag)
{
    return etag && *etag;
}

/* ---- writes ---------------------------------------------------------- */

/* One prepared write. */
typedef struct wop {
    int is_delete;
    const char *key;
    const char *etag;
    dapr_concurrency concurrency;
    mt_value *val;       /* upserts: the new version */
    mt_entry *spare;     /* upserts: an entry in case the key is new */
    int64_t expire_ms;
} wop;

static void wops_free(wop *ops, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        mt_value_unref(ops[i].val);
        free(ops[i].spare);
    }
    free(ops);
}

static int prep_set(wop *w, const dapr_state_set_req *r, int64_t now_ms,
                    char *err, size_t errlen)
{
    memset(w, 0, sizeof *w);
    if (!r->key || !*r->key) {
        snprintf(err, errlen, "key is empty");
        return DAPR_ERR_INVALID_ARGUMENT;
    }
    if (parse_ttl(r->metadata, now_ms, &w->expire_ms, err, errlen) < 0)
        return DAPR_ERR_INVALID_ARGUMENT;
    w->key = r->key;
    w->etag = r->etag;
    w->concurrency = r->concurrency;
    w->val = mt_value_new(r->key, r->value.ptr, r->value.len);
    w->spare = malloc(sizeof *w->spare);
    if (!w->val || !w->spare) {
        snprintf(err, errlen, "out of memory");
        return DAPR_ERR_INTERNAL;
    }
    return DAPR_OK;
}

static int prep_del(wop *w, const dapr_state_delete_req *r, char *err, size_t errlen)
{
    memset(w, 0, sizeof *w);
    if (!r->key || !*r->key) {
        snprintf(err, errlen, "key is empty");
        return DAPR_ERR_INVALID_ARGUMENT;
    }
    w->is_delete = 1;
    w->key = r->key;
    w->etag = r->etag;
    w->concurrency = r->concurrency;
    return DAPR_OK;
}

/* Check every condition, then apply every write.  Called with no lock. */
static dapr_status apply(memstore *st, wop *ops, size_t n, int64_t now_ms,
                         char *err, size_t errlen)
{
    dapr_status rc = DAPR_OK;

    pthread_mutex_lock(&st->mu);
    for (size_t i = 0; i < n; i++) {
        mt_entry *cur = mt_find(&st->tab, ops[i].key, now_ms);
        if (has_etag(ops[i].etag)) {
            if (!cur || strcmp(cur->val->etag, ops[i].etag) != 0) {
                snprintf(err, errlen, "possible etag mismatch for key '%s'", ops[i].key);
                rc = DAPR_ERR_ETAG_MISMATCH;
                break;
            }
        } else if (!ops[i].is_delete && cur &&
                   ops[i].concurrency == DAPR_CONCURRENCY_FIRST_WRITE) {
            snprintf(err, errlen, "key '%s' already exists (first-write without etag)",
                     ops[i].key);
            rc = DAPR_ERR_ETAG_MISMATCH;
            break;
        }
    }
    if (rc == DAPR_OK) {
        for (size_t i = 0; i < n; i++) {
            if (ops[i].is_delete) {
                mt_del(&st->tab, ops[i].key);
            } else {
                /* Cannot fail: the spare entry covers a new key. */
                mt_put(&st->tab, ops[i].val, ops[i].expire_ms, &ops[i].spare);
                ops[i].val = NULL;
            }
        }
    }
    pthread_mutex_unlock(&st->mu);
    return rc;
}

static void finish(dapr_result_cb cb, void *ctx, dapr_status rc, const char *err)
{
    dapr_result res = {.status = rc, .message = rc == DAPR_OK ? NULL : err};
    cb(ctx, &res);
}

/* Run a batch given as set and delete requests (either may be NULL). */
static void write_batch(memstore *st, const dapr_state_set_req *sets, size_t nsets,
                        const dapr_state_delete_req *dels, size_t ndels,
                        const dapr_state_op *txn, size_t ntxn,
                        dapr_result_cb cb, void *ctx)
{
    char err[512] = "";
    size_t n = nsets + ndels + ntxn, i;
    int64_t now_ms = mt_now_ms();
    dapr_status rc = DAPR_OK;
    wop *ops;

    if (n == 0) {
        finish(cb, ctx, DAPR_OK, NULL);
        return;
    }
    if (!(ops = calloc(n, sizeof *ops))) {
        finish(cb, ctx, DAPR_ERR_INTERNAL, "out of memory");
        return;
    }
    for (i = 0; i < n && rc == DAPR_OK; i++) {
        if (i < nsets) {
            rc = prep_set(&ops[i], &sets[i], now_ms, err, sizeof err);
        } else if (i < nsets + ndels) {
            rc = prep_del(&ops[i], &dels[i - nsets], err, sizeof err);
        } else {
            const dapr_state_op *o = &txn[i - nsets - ndels];
            if (o->kind == DAPR_STATE_OP_UPSERT) {
                rc = prep_set(&ops[i], &o->set, now_ms, err, sizeof err);
            } else if (o->kind == DAPR_STATE_OP_DELETE) {
                rc = prep_del(&ops[i], &o->del, err, sizeof err);
            } else {
                snprintf(err, sizeof err, "operation %zu: unknown kind %d",
                         i - nsets - ndels, (int)o->kind);
                rc = DAPR_ERR_INVALID_ARGUMENT;
            }
        }
    }
    if (rc == DAPR_OK)
        rc = apply(st, ops, n, now_ms, err, sizeof err);
    wops_free(ops, n);
    finish(cb, ctx, rc, err);
}

static void mem_set(void *inst, const dapr_state_set_req *req,
                    dapr_result_cb cb, void *ctx)
{
    write_batch(inst, req, 1, NULL, 0, NULL, 0, cb, ctx);
}

static void mem_del(void *inst, const dapr_state_delete_req *req,
                    dapr_result_cb cb, void *ctx)
{
    write_batch(inst, NULL, 0, req, 1, NULL, 0, cb, ctx);
}

/* Bulk writes are all or nothing here too, which Dapr's contract allows
 * (it only asks that the first failure be reported). */
static void mem_bulk_set(void *inst, const dapr_state_set_req *reqs, size_t n,
                         dapr_result_cb cb, void *ctx)
{
    write_batch(inst, reqs, n, NULL, 0, NULL, 0, cb, ctx);
}

static void mem_bulk_delete(void *inst, const dapr_state_delete_req *reqs, size_t n,
                            dapr_result_cb cb, void *ctx)
{
    write_batch(inst, NULL, 0, reqs, n, NULL, 0, cb, ctx);
}

static void mem_transact(void *inst, const dapr_state_txn_req *req,
                         dapr_result_cb cb, void *ctx)
{
    write_batch(inst, NULL, 0, NULL, 0, req->ops, req->n_ops, cb, ctx);
}

/* ---- reads ----------------------------------------------------------- */

/* Take a reference to key's current value (NULL when absent). */
static mt_value *lookup(memstore *st, const char *key, int64_t now_ms, int64_t *expire_ms)
{
    mt_value *v = NULL;
    mt_entry *e;

    pthread_mutex_lock(&st->mu);
    if (key && (e = mt_find(&st->tab, key, now_ms))) {
        v = mt_value_ref(e->val);
        *expire_ms = e->expire_ms;
    }
    pthread_mutex_unlock(&st->mu);
    return v;
}

static void mem_get(void *inst, const dapr_state_get_req *req,
                    dapr_state_get_cb cb, void *ctx)
{
    memstore *st = inst;
    int64_t expire_ms = 0;
    mt_value *v = lookup(st, req->key, mt_now_ms(), &expire_ms);
    dapr_state_get_result res = {.status = DAPR_OK};
    char when[32];
    dapr_kv md = {"ttlExpireTime", when};

    if (v) {
        res.found = 1;
        res.value.ptr = v->data;
        res.value.len = v->len;
        res.etag = v->etag;
        if (expire_ms) {
            format_expire(expire_ms, when, sizeof when);
            res.metadata.items = &md;
            res.metadata.n = 1;
        }
    }
    cb(ctx, &res);
    mt_value_unref(v);
}

static void mem_bulk_get(void *inst, const dapr_state_bulk_get_req *req,
                         dapr_state_bulk_get_cb cb, void *ctx)
{
    memstore *st = inst;
    dapr_state_bulk_get_result res = {.status = DAPR_OK};
    size_t n = req->n_keys;
    int64_t now_ms = mt_now_ms();

    if (n == 0) {
        cb(ctx, &res);
        return;
    }
    /* One block: items, their values, their metadata pairs and times. */
    dapr_state_bulk_item *items = calloc(n, sizeof *items);
    mt_value **vals = calloc(n, sizeof *vals);
    dapr_kv *mds = calloc(n, sizeof *mds);
    char (*whens)[32] = calloc(n, sizeof *whens);

    if (!items || !vals || !mds || !whens) {
        res.status = DAPR_ERR_INTERNAL;
        res.message = "out of memory";
        cb(ctx, &res);
        goto done;
    }
    pthread_mutex_lock(&st->mu);
    for (size_t i = 0; i < n; i++) {
        mt_entry *e = req->keys[i] ? mt_find(&st->tab, req->keys[i], now_ms) : NULL;
        items[i].key = req->keys[i];
        if (!e)
            continue;
        vals[i] = mt_value_ref(e->val);
        items[i].found = 1;
        items[i].value.ptr = vals[i]->data;
        items[i].value.len = vals[i]->len;
        items[i].etag = vals[i]->etag;
        if (e->expire_ms) {
            format_expire(e->expire_ms, whens[i], sizeof whens[i]);
            mds[i].name = "ttlExpireTime";
            mds[i].value = whens[i];
            items[i].metadata.items = &mds[i];
            items[i].metadata.n = 1;
        }
    }
    pthread_mutex_unlock(&st->mu);

    res.items = items;
    res.n_items = n;
    cb(ctx, &res);

done:
    if (vals)
        for (size_t i = 0; i < n; i++)
            mt_value_unref(vals[i]);
    free(items);
    free(vals);
    free(mds);
    free(whens);
}

/* ---- query ------------------------------------------------------------ */

typedef struct query_task {
    memstore *st;
    const dapr_state_query_req *req;
    dapr_state_query_cb cb;
    void *ctx;
} query_task;

typedef struct snapshot {
    const char *prefix;
    size_t plen;
    int64_t now_ms;
    mt_value **vals;
    size_t n, cap;
    int oom;
} snapshot;

static int snapshot_add(mt_entry *e, void *arg)
{
    snapshot *s = arg;

    if (e->expire_ms && e->expire_ms <= s->now_ms)
        return 0;
    if (strncmp(e->val->key, s->prefix, s->plen) != 0)
        return 0;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        mt_value **v = realloc(s->vals, cap * sizeof *v);
        if (!v) {
            s->oom = 1;
            return 1;
        }
        s->vals = v;
        s->cap = cap;
    }
    s->vals[s->n++] = mt_value_ref(e->val);
    return 0;
}

static void query_fail(query_task *t, dapr_status rc, const char *msg)
{
    dapr_state_query_result res = {.status = rc, .message = msg};
    t->cb(t->ctx, &res);
}

static void query_run(void *arg)
{
    query_task *t = arg;
    memstore *st = t->st;
    char err[512];
    char token[MQ_TOKEN_MAX];
    snapshot snap = {.prefix = t->req->key_prefix ? t->req->key_prefix : ""};
    mq_doc *docs = NULL;
    dapr_state_query_item *items = NULL;
    size_t *sel = NULL, nsel = 0;
    mq_query *q = mq_parse(t->req->query_json.ptr, t->req->query_json.len,
                           err, sizeof err);

    if (!q) {
        query_fail(t, DAPR_ERR_INVALID_ARGUMENT, err);
        goto done;
    }

    /* Copy references under the lock; parse and sort without it. */
    snap.plen = strlen(snap.prefix);
    snap.now_ms = mt_now_ms();
    pthread_mutex_lock(&st->mu);
    mt_foreach(&st->tab, snapshot_add, &snap);
    pthread_mutex_unlock(&st->mu);
    if (snap.oom || (snap.n && !(docs = calloc(snap.n, sizeof *docs)))) {
        query_fail(t, DAPR_ERR_INTERNAL, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < snap.n; i++) {
        docs[i].key = snap.vals[i]->key;
        docs[i].data = snap.vals[i]->data;
        docs[i].len = snap.vals[i]->len;
    }
    if (mq_run(q, docs, snap.n, &sel, &nsel, token) < 0 ||
        (nsel && !(items = calloc(nsel, sizeof *items)))) {
        query_fail(t, DAPR_ERR_INTERNAL, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < nsel; i++) {
        mt_value *v = snap.vals[sel[i]];
        items[i].key = v->key;
        items[i].data.ptr = v->data;
        items[i].data.len = v->len;
        items[i].etag = v->etag;
    }
    dapr_state_query_result res = {
        .status = DAPR_OK,
        .items = items,
        .n_items = nsel,
        .token = token[0] ? token : NULL,
    };
    t->cb(t->ctx, &res);

done:
    for (size_t i = 0; i < snap.n; i++)
        mt_value_unref(snap.vals[i]);
    free(snap.vals);
    free(docs);
    free(sel);
    free(items);
    mq_free(q);
    free(t);
}

/* Parsing every stored value is real work, so it runs on the worker pool
 * rather than on the event loop that calls us. */
static void mem_query(void *inst, const dapr_state_query_req *req,
                      dapr_state_query_cb cb, void *ctx)
{
    memstore *st = inst;
    query_task *t = malloc(sizeof *t);

    if (!t) {
        dapr_state_query_result res = {.status = DAPR_ERR_INTERNAL,
                                       .message = "out of memory"};
        cb(ctx, &res);
        return;
    }
    t->st = st;
    t->req = req;
    t->cb = cb;
    t->ctx = ctx;
    if (!st->api->submit) {
        query_run(t);
        return;
    }
    if (st->api->submit(st->host, query_run, t) != 0) {
        free(t);
        dapr_state_query_result res = {.status = DAPR_ERR_UNAVAILABLE,
                                       .message = "worker pool is full, retry later"};
        cb(ctx, &res);
    }
}

/* ---- lifecycle -------------------------------------------------------- */

static void sweep(void *arg)
{
    memstore *st = arg;
    size_t removed;

    pthread_mutex_lock(&st->mu);
    removed = mt_sweep(&st->tab, mt_now_ms(), &st->sweep_cursor, SWEEP_MAX_BUCKETS);
    pthread_mutex_unlock(&st->mu);
    if (removed && st->api->log_enabled && st->api->log_enabled(st->host, DAPR_LOG_DEBUG))
        st->api->log(st->host, DAPR_LOG_DEBUG, "removed %zu expired items", removed);
}

static dapr_status mem_init(dapr_host *host, const dapr_host_api *api,
                            void **instance, char *errbuf, size_t errlen)
{
    memstore *st = calloc(1, sizeof *st);

    if (!st || mt_init(&st->tab) < 0) {
        free(st);
        snprintf(errbuf, errlen, "out of memory");
        return DAPR_ERR_INTERNAL;
    }
    st->host = host;
    st->api = api;
    pthread_mutex_init(&st->mu, NULL);
    if (api->timer_start)
        st->timer = api->timer_start(host, SWEEP_INTERVAL_MS, sweep, st);
    if (!st->timer && api->log)
        api->log(host, DAPR_LOG_WARN,
                 "no sweep timer: expired items are reclaimed only when read");
    *instance = st;
    return DAPR_OK;
}

static void mem_close(void *instance)
{
    memstore *st = instance;

    if (!st)
        return;
    if (st->timer)
        st->api->timer_stop(st->host, st->timer);
    mt_free(&st->tab);
    pthread_mutex_destroy(&st->mu);
    free(st);
}

static const dapr_state_vtable mem_vtable = {
    .size = sizeof(dapr_state_vtable),
    .get = mem_get,
    .set = mem_set,
    .del = mem_del,
    .bulk_get = mem_bulk_get,
    .bulk_set = mem_bulk_set,
    .bulk_delete = mem_bulk_delete,
    .transact = mem_transact,
    .query = mem_query,
    .max_transaction_ops = 0,
};

static const dapr_component_def mem_component = {
    .size = sizeof(dapr_component_def),
    .kind = DAPR_KIND_STATE,
    .type = "state.in-memory",
    .version = "v1",
    .features = DAPR_STATE_ETAG | DAPR_STATE_TRANSACTIONAL | DAPR_STATE_TTL |
                DAPR_STATE_QUERY,
    .flags = DAPR_COMPONENT_NONBLOCKING,
    .metadata_schema = NULL,
    .n_metadata_schema = 0,
    .init = mem_init,
    .close = mem_close,
    .vtable = &mem_vtable,
};

static const dapr_component_def *const mem_components[] = {&mem_component};

static const dapr_plugin_descriptor mem_descriptor = {
    DAPR_PLUGIN_DESCRIPTOR_HEADER,
    .name = "state-memory",
    .version = "0.1.0",
    .description = "process-local state store (state.in-memory)",
    .components = mem_components,
    .n_components = 1,
};

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void);

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void)
{
    return &mem_descriptor;
}
