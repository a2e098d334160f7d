/*
 * mongodb-direct.c - the reference side of bench/mongodb-bench.sh: the
 * operations that state.mongodb performs for one state get and one state
 * save, run in a closed loop straight through libmongoc (no HTTP, no
 * daprd), by as many threads as wrk has connections.
 *
 *   get              find {_id: KEY} with limit 1 (what the plugin runs)
 *   save             replaceOne {_id: KEY} with upsert, a document in
 *                    Dapr's layout (the plugin's save on a real MongoDB)
 *   save-serialized  the plugin's save on FerretDB: under one process-wide
 *                    lock, find {_id: KEY}, then replaceOne with upsert
 *
 * Usage: mongodb-direct URI DATABASE COLLECTION KEY OP SECONDS THREADS
 * Prints one line: op, operations, ops/s, p50 and p99 latency in ms, errors.
 * Exits 3 when no operation succeeded (the script's readiness probe).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* libmongoc's headers use struct addrinfo (POSIX, not C11) */
#endif
#include <mongoc/mongoc.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum op { OP_GET, OP_SAVE, OP_SAVE_SERIALIZED };

typedef struct worker {
    pthread_t th;
    mongoc_client_pool_t *pool;
    const char *db, *coll, *key;
    enum op op;
    double deadline;
    uint32_t *lat_us; /* one latency per operation */
    size_t n, cap;
    long long errors;
    unsigned seq;
} worker;

static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int do_find(mongoc_collection_t *coll, const char *key)
{
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(key));
    bson_t *opts = BCON_NEW("limit", BCON_INT64(1));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    const bson_t *doc;
    bson_error_t err;
    int ok = mongoc_cursor_next(cur, &doc) || !mongoc_cursor_error(cur, &err);
    mongoc_cursor_destroy(cur);
    bson_destroy(filter);
    bson_destroy(opts);
    return ok ? 0 : -1;
}

static int do_replace(mongoc_collection_t *coll, const char *key, unsigned seq)
{
    char etag[40];
    bson_error_t err;
    /* A fresh etag per write, as the plugin makes (its format does not
     * matter to the server). */
    snprintf(etag, sizeof(etag), "00000000-0000-4000-8000-%012x", seq);
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(key));
    bson_t *doc = BCON_NEW("_id", BCON_UTF8(key), "value", "{", "n", BCON_INT32(1), "}",
                           "_etag", BCON_UTF8(etag), "_ttl", BCON_NULL);
    bson_t *opts = BCON_NEW("upsert", BCON_BOOL(true));
    int ok = mongoc_collection_replace_one(coll, filter, doc, opts, NULL, &err);
    bson_destroy(filter);
    bson_destroy(doc);
    bson_destroy(opts);
    return ok ? 0 : -1;
}

static void *run(void *arg)
{
    worker *w = arg;
    mongoc_client_t *client = mongoc_client_pool_pop(w->pool);
    mongoc_collection_t *coll = mongoc_client_get_collection(client, w->db, w->coll);
    for (;;) {
        double t0 = now();
        if (t0 >= w->deadline) break;
        int rc;
        if (w->op == OP_GET) {
            rc = do_find(coll, w->key);
        } else if (w->op == OP_SAVE) {
            rc = do_replace(coll, w->key, ++w->seq);
        } else {
            pthread_mutex_lock(&write_lock);
            rc = do_find(coll, w->key);
            if (rc == 0) rc = do_replace(coll, w->key, ++w->seq);
            pthread_mutex_unlock(&write_lock);
        }
        if (rc != 0) w->errors++;
        if (w->n == w->cap) {
            size_t ncap = w->cap ? w->cap * 2 : 4096;
            uint32_t *p = realloc(w->lat_us, ncap * sizeof(*p));
            if (!p) break;
            w->lat_us = p;
            w->cap = ncap;
        }
        w->lat_us[w->n++] = (uint32_t)((now() - t0) * 1e6);
    }
    mongoc_collection_destroy(coll);
    mongoc_client_pool_push(w->pool, client);
    return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void quiet_log(mongoc_log_level_t level, const char *domain, const char *msg, void *data)
{
    (void)data;
    if (level <= MONGOC_LOG_LEVEL_ERROR) fprintf(stderr, "%s: %s\n", domain, msg);
}

int main(int argc, char **argv)
{
    if (argc != 8) {
        fprintf(stderr, "usage: mongodb-direct URI DATABASE COLLECTION KEY get|save|save-serialized "
                        "SECONDS THREADS\n");
        return 2;
    }
    enum op op;
    if (strcmp(argv[5], "get") == 0) op = OP_GET;
    else if (strcmp(argv[5], "save") == 0) op = OP_SAVE;
    else if (strcmp(argv[5], "save-serialized") == 0) op = OP_SAVE_SERIALIZED;
    else {
        fprintf(stderr, "unknown operation %s\n", argv[5]);
        return 2;
    }
    double seconds = atof(argv[6]);
    int threads = atoi(argv[7]);
    if (seconds <= 0 || threads < 1 || threads > 1024) {
        fprintf(stderr, "bad SECONDS or THREADS\n");
        return 2;
    }

    mongoc_log_set_handler(quiet_log, NULL);
    mongoc_init();
    bson_error_t err;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(argv[1], &err);
    if (!uri) {
        fprintf(stderr, "bad URI: %s\n", err.message);
        return 2;
    }
    mongoc_client_pool_t *pool = mongoc_client_pool_new(uri);
    mongoc_client_pool_set_error_api(pool, MONGOC_ERROR_API_VERSION_2);
    mongoc_client_pool_max_size(pool, (uint32_t)threads);

    worker *w = calloc((size_t)threads, sizeof(*w));
    if (!w) return 1;
    double start = now();
    for (int i = 0; i < threads; i++) {
        w[i] = (worker){.pool = pool, .db = argv[2], .coll = argv[3], .key = argv[4], .op = op,
                        .deadline = start + seconds, .seq = (unsigned)i << 24};
        if (pthread_create(&w[i].th, NULL, run, &w[i]) != 0) {
            fprintf(stderr, "cannot start a thread\n");
            return 1;
        }
    }
    size_t total = 0;
    long long errors = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(w[i].th, NULL);
        total += w[i].n;
        errors += w[i].errors;
    }
    double elapsed = now() - start;
    uint32_t *all = malloc((total ? total : 1) * sizeof(*all));
    if (!all) return 1;
    size_t k = 0;
    for (int i = 0; i < threads; i++) {
        memcpy(all + k, w[i].lat_us, w[i].n * sizeof(*all));
        k += w[i].n;
        free(w[i].lat_us);
    }
    qsort(all, total, sizeof(*all), cmp_u32);
    double p50 = total ? all[(size_t)((double)(total - 1) * 0.50)] / 1000.0 : 0;
    double p99 = total ? all[(size_t)((double)(total - 1) * 0.99)] / 1000.0 : 0;
    printf("%s %zu %.0f %.3f %.3f %lld\n", argv[5], total, (double)total / elapsed, p50, p99, errors);
    free(all);
    free(w);
    mongoc_client_pool_destroy(pool);
    mongoc_uri_destroy(uri);
    mongoc_cleanup();
    return total > 0 && errors < (long long)total ? 0 : 3;
}
