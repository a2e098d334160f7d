/*
 * state-example.c - a complete, minimal Dapr state store plugin.
 *
 * Component type "state.example": an in-memory hash table with etags.
 * It shows everything a state plugin needs and nothing more:
 *
 *   - the one exported symbol, dapr_plugin_entry(), returning a constant
 *     descriptor (ABI version, component list);
 *   - a metadata schema, read through the host's services table;
 *   - init/close and the three required operations get, set and del,
 *     with Dapr's etag and first-write rules;
 *   - thread safety: the host may call operations from several worker
 *     threads at once.
 *
 * It claims only the ETAG feature: no transactions, TTL, bulk or query.
 * The host answers "not supported" for transactions and falls back on
 * get/set/del for bulk requests, since those vtable slots are NULL.
 *
 * Build:   make            (uses pkg-config --cflags --libs dapr-plugin-sdk)
 * Test:    dapr-plugin-conformance ./state-example.so
 * Install: make install   (into pkg-config --variable=plugindir dapr-plugin-sdk)
 */
#define _POSIX_C_SOURCE 200809L

#include <dapr/plugin.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the store --------------------------------------------------------- */

typedef struct item {
    char *key;
    uint8_t *value;
    size_t len;
    uint64_t version;          /* the etag, printed in decimal */
    struct item *next;         /* bucket chain */
} item;

typedef struct store {
    pthread_mutex_t lock;      /* guards everything below */
    item **buckets;
    size_t n_buckets;          /* a power of two */
    size_t n_items;
    /* One counter for the whole store, not per key: an etag read before a
     * delete can then never match the key once it is written again. */
    uint64_t next_version;
    size_t max_value_bytes;    /* 0 = no limit (metadata maxValueBytes) */
    dapr_host *host;
    const dapr_host_api *api;
} store;

/* FNV-1a: short and good enough for a hash table. */
static size_t hash_key(const char *key)
{
    uint64_t h = 14695981039346656037ull;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        h ^= *p;
        h *= 1099511628211ull;
    }
    return (size_t)h;
}

/* Returns the address of the link pointing at key's item (or at the NULL
 * ending its bucket), so callers can insert or unlink in place. */
static item **find_slot(store *s, const char *key)
{
    item **pp = &s->buckets[hash_key(key) & (s->n_buckets - 1)];
    while (*pp && strcmp((*pp)->key, key) != 0)
        pp = &(*pp)->next;
    return pp;
}

/* Double the table when it gets full; on allocation failure just keep
 * the longer chains. */
static void maybe_grow(store *s)
{
    if (s->n_items < s->n_buckets)
        return;
    size_t n = s->n_buckets * 2;
    item **b = calloc(n, sizeof *b);
    if (!b)
        return;
    for (size_t i = 0; i < s->n_buckets; i++) {
        item *it = s->buckets[i];
        while (it) {
            item *next = it->next;
            size_t j = hash_key(it->key) & (n - 1);
            it->next = b[j];
            b[j] = it;
            it = next;
        }
    }
    free(s->buckets);
    s->buckets = b;
    s->n_buckets = n;
}

static void free_item(item *it)
{
    free(it->key);
    free(it->value);
    free(it);
}

/* Does the request's etag allow touching this item?  An etag of NULL or
 * "" means "no etag". */
static int etag_matches(const item *it, const char *etag)
{
    char buf[24];
    if (!it)
        return 0; /* an etag never matches a missing key */
    snprintf(buf, sizeof buf, "%" PRIu64, it->version);
    return strcmp(buf, etag) == 0;
}

/* ---- operations ------------------------------------------------------
 *
 * The host calls these on a worker thread (we do not set
 * DAPR_COMPONENT_NONBLOCKING), so they may take a lock and complete
 * inline.  They never call the callback while holding the lock: a
 * callback may take its time, and should never be able to deadlock us.
 */

static void example_get(void *inst, const dapr_state_get_req *req,
                        dapr_state_get_cb cb, void *ctx)
{
    store *s = inst;
    dapr_state_get_result res = {.status = DAPR_OK};
    uint8_t *copy = NULL;
    char etag[24];

    pthread_mutex_lock(&s->lock);
    item *it = *find_slot(s, req->key);
    if (it) {
        /* Copy what we return: once the lock is released another thread
         * may overwrite or free the item. */
        copy = malloc(it->len ? it->len : 1);
        if (copy) {
            memcpy(copy, it->value, it->len);
            res.found = 1;
            res.value.ptr = copy;
            res.value.len = it->len;
            snprintf(etag, sizeof etag, "%" PRIu64, it->version);
            res.etag = etag;
        } else {
            res.status = DAPR_ERR_INTERNAL;
            res.message = "out of memory";
        }
    }
    pthread_mutex_unlock(&s->lock);

    cb(ctx, &res); /* the host copies the result before returning */
    free(copy);
}

static void example_set(void *inst, const dapr_state_set_req *req,
                        dapr_result_cb cb, void *ctx)
{
    store *s = inst;
    dapr_result res = {.status = DAPR_OK};
    int has_etag = req->etag && req->etag[0];

    if (s->max_value_bytes && req->value.len > s->max_value_bytes) {
        res.status = DAPR_ERR_INVALID_ARGUMENT;
        res.message = "value larger than maxValueBytes";
        cb(ctx, &res);
        return;
    }

    /* Allocate before taking the lock, to keep the critical section short. */
    uint8_t *value = malloc(req->value.len ? req->value.len : 1);
    if (!value) {
        res.status = DAPR_ERR_INTERNAL;
        res.message = "out of memory";
        cb(ctx, &res);
        return;
    }
    if (req->value.len)
        memcpy(value, req->value.ptr, req->value.len);

    pthread_mutex_lock(&s->lock);
    item **slot = find_slot(s, req->key);
    item *it = *slot;
    if (has_etag && !etag_matches(it, req->etag)) {
        /* Dapr's rule: an etag that differs, or any etag on a missing
         * key, is a mismatch (HTTP 409). */
        res.status = DAPR_ERR_ETAG_MISMATCH;
        res.message = "possible etag mismatch: the key is missing or its etag differs";
    } else if (!has_etag && req->concurrency == DAPR_CONCURRENCY_FIRST_WRITE && it) {
        /* first-write without an etag only creates. */
        res.status = DAPR_ERR_ETAG_MISMATCH;
        res.message = "first-write: the key already exists";
    } else if (it) {
        free(it->value);
        it->value = value;
        it->len = req->value.len;
        it->version = ++s->next_version; /* every write: a new etag */
        value = NULL;
    } else if ((it = calloc(1, sizeof *it)) && (it->key = strdup(req->key))) {
        it->value = value;
        it->len = req->value.len;
        it->version = ++s->next_version;
        *slot = it; /* slot is still valid: we hold the lock */
        s->n_items++;
        maybe_grow(s);
        value = NULL;
    } else {
        free(it);
        res.status = DAPR_ERR_INTERNAL;
        res.message = "out of memory";
    }
    pthread_mutex_unlock(&s->lock);

    free(value); /* not stored: the write was refused */
    cb(ctx, &res);
}

static void example_del(void *inst, const dapr_state_delete_req *req,
                        dapr_result_cb cb, void *ctx)
{
    store *s = inst;
    dapr_result res = {.status = DAPR_OK};
    item *gone = NULL;

    pthread_mutex_lock(&s->lock);
    item **slot = find_slot(s, req->key);
    if (req->etag && req->etag[0] && !etag_matches(*slot, req->etag)) {
        res.status = DAPR_ERR_ETAG_MISMATCH;
        res.message = "possible etag mismatch: the key is missing or its etag differs";
    } else if (*slot) {
        gone = *slot;
        *slot = gone->next;
        s->n_items--;
    }
    /* else: deleting a missing key without an etag succeeds. */
    pthread_mutex_unlock(&s->lock);

    if (gone)
        free_item(gone);
    cb(ctx, &res);
}

/* ---- lifecycle ------------------------------------------------------- */

static dapr_status example_init(dapr_host *host, const dapr_host_api *api,
                                void **instance, char *errbuf, size_t errlen)
{
    /* The host has checked the manifest against our schema already, and
     * metadata_get falls back on the schema's default_value. */
    const char *max = api->metadata_get(host, "maxValueBytes");
    char *end;
    long long n = max ? strtoll(max, &end, 10) : 0;
    if (max && (*max == '\0' || *end != '\0' || n < 0)) {
        snprintf(errbuf, errlen, "maxValueBytes must be a non-negative integer, not '%s'", max);
        return DAPR_ERR_INVALID_ARGUMENT;
    }

    store *s = calloc(1, sizeof *s);
    if (!s || !(s->buckets = calloc(64, sizeof *s->buckets))) {
        free(s);
        snprintf(errbuf, errlen, "out of memory");
        return DAPR_ERR_INTERNAL;
    }
    pthread_mutex_init(&s->lock, NULL);
    s->n_buckets = 64;
    s->max_value_bytes = (size_t)n;
    s->host = host;
    s->api = api;
    api->log(host, DAPR_LOG_INFO, "state.example ready (maxValueBytes=%lld)", n);
    *instance = s;
    return DAPR_OK;
}

/* The host calls close once, after every operation has completed. */
static void example_close(void *instance)
{
    store *s = instance;
    s->api->log(s->host, DAPR_LOG_DEBUG, "state.example closing with %zu items",
                s->n_items);
    for (size_t i = 0; i < s->n_buckets; i++) {
        item *it = s->buckets[i];
        while (it) {
            item *next = it->next;
            free_item(it);
            it = next;
        }
    }
    free(s->buckets);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* ---- the descriptor ---------------------------------------------------- */

static const dapr_metadata_field example_schema[] = {
    {.name = "maxValueBytes", .type = DAPR_META_INT, .flags = 0,
     .default_value = "0",
     .description = "largest value accepted, in bytes (0: no limit)"},
};

/* Slots left NULL (bulk_*, transact, query) mean the store lacks them. */
static const dapr_state_vtable example_vtable = {
    .size = sizeof(dapr_state_vtable),
    .get = example_get,
    .set = example_set,
    .del = example_del,
};

static const dapr_component_def example_component = {
    .size = sizeof(dapr_component_def),
    .kind = DAPR_KIND_STATE,
    .type = "state.example",
    .version = "v1",
    .features = DAPR_STATE_ETAG,
    .flags = 0, /* operations may block: the host calls them on workers */
    .metadata_schema = example_schema,
    .n_metadata_schema = sizeof example_schema / sizeof *example_schema,
    .init = example_init,
    .close = example_close,
    .vtable = &example_vtable,
};

/* The descriptor lists its component types by pointer. */
static const dapr_component_def *const example_components[] = {&example_component};

static const dapr_plugin_descriptor example_descriptor = {
    DAPR_PLUGIN_DESCRIPTOR_HEADER,
    .name = "state-example",
    .version = "1.0.0",
    .description = "Example in-memory state store with etags",
    .components = example_components,
    .n_components = 1,
};

/* The only symbol this .so exports (everything else is hidden by
 * -fvisibility=hidden, which pkg-config's Cflags turn on). */
DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void)
{
    return &example_descriptor;
}
