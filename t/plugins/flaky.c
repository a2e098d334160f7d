/*
 * flaky.c - a test state store (state.flaky) that fails and stalls on
 * purpose, for the resiliency tests (t/resiliency).  Its behaviour comes
 * from the key:
 *
 *   a key holding "fail<N>"  the first N sets (and gets) of that key fail
 *                            with DAPR_ERR_UNAVAILABLE, later ones succeed
 *   a key holding "slow"     get and set block for 1.5 s, then succeed
 *   a key holding "etag"     a set with an etag fails with ETAG_MISMATCH
 *   "count-<key>"            get answers the number of set and get calls
 *                            seen for <key>: {"sets": n, "gets": m}
 *
 * and a broker (pubsub.flaky, publish only): the first N publishes to a
 * topic holding "fail<N>" fail with DAPR_ERR_UNAVAILABLE; a topic holding
 * "slow" blocks 1.5 s.  "count-pub-<topic>" on the store gives
 * {"sets": publishes seen, ...}.
 *
 * Blocking (not DAPR_COMPONENT_NONBLOCKING): calls run on the host's
 * worker pool, so the counters are guarded by a mutex.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep under -std=c11 */

#include <dapr/plugin.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_KEYS 256

struct counter {
    char key[200];
    int sets, gets;
};

static struct counter counters[MAX_KEYS];
static int n_counters;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int flaky_instance;

static struct counter *counter_find(const char *key)
{
    for (int i = 0; i < n_counters; i++)
        if (strcmp(counters[i].key, key) == 0)
            return &counters[i];
    return NULL;
}

/* The counter of key (created on first use); NULL when the table is full. */
static struct counter *counter_of(const char *key)
{
    for (int i = 0; i < n_counters; i++)
        if (strcmp(counters[i].key, key) == 0)
            return &counters[i];
    if (n_counters == MAX_KEYS)
        return NULL;
    struct counter *c = &counters[n_counters++];
    snprintf(c->key, sizeof c->key, "%s", key);
    return c;
}

/* N of "fail<N>" in the key, or 0. */
static int fail_count(const char *key)
{
    const char *p = strstr(key, "fail");
    return p ? atoi(p + 4) : 0;
}

static void pause_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static dapr_status flaky_init(dapr_host *host, const dapr_host_api *api, void **instance, char *errbuf,
                              size_t errlen)
{
    (void)host; (void)api; (void)errbuf; (void)errlen;
    *instance = &flaky_instance;
    return DAPR_OK;
}

static void flaky_close(void *instance)
{
    (void)instance;
}

static void flaky_get(void *inst, const dapr_state_get_req *req, dapr_state_get_cb cb, void *ctx)
{
    (void)inst;
    const char *count = strstr(req->key, "count-");
    if (count) {
        char target[200];
        snprintf(target, sizeof target, "%.*s%s", (int)(count - req->key), req->key, count + 6);
        char body[64];
        pthread_mutex_lock(&lock);
        struct counter *c = counter_find(target);
        if (!c)
            c = counter_find(count + 6); /* a topic: no key prefix */
        snprintf(body, sizeof body, "{\"sets\":%d,\"gets\":%d}", c ? c->sets : 0, c ? c->gets : 0);
        pthread_mutex_unlock(&lock);
        dapr_state_get_result res = {.status = DAPR_OK, .found = 1,
                                     .value = {(const uint8_t *)body, strlen(body)}};
        cb(ctx, &res);
        return;
    }
    pthread_mutex_lock(&lock);
    struct counter *c = counter_of(req->key);
    int n = c ? ++c->gets : 1;
    pthread_mutex_unlock(&lock);
    if (strstr(req->key, "slow"))
        pause_ms(1500);
    if (n <= fail_count(req->key)) {
        dapr_state_get_result res = {.status = DAPR_ERR_UNAVAILABLE, .message = "flaky: planned failure"};
        cb(ctx, &res);
        return;
    }
    static const char late[] = "\"late\"";
    dapr_state_get_result res = {.status = DAPR_OK, .found = 1, .value = {(const uint8_t *)late, strlen(late)}};
    cb(ctx, &res);
}

static void flaky_set(void *inst, const dapr_state_set_req *req, dapr_result_cb cb, void *ctx)
{
    (void)inst;
    pthread_mutex_lock(&lock);
    struct counter *c = counter_of(req->key);
    int n = c ? ++c->sets : 1;
    pthread_mutex_unlock(&lock);
    if (strstr(req->key, "slow"))
        pause_ms(1500);
    dapr_result res = {.status = DAPR_OK};
    if (strstr(req->key, "etag") && req->etag && *req->etag) {
        res.status = DAPR_ERR_ETAG_MISMATCH;
        res.message = "flaky: etag mismatch";
    } else if (n <= fail_count(req->key)) {
        res.status = DAPR_ERR_UNAVAILABLE;
        res.message = "flaky: planned failure";
    }
    cb(ctx, &res);
}

static void flaky_del(void *inst, const dapr_state_delete_req *req, dapr_result_cb cb, void *ctx)
{
    (void)inst; (void)req;
    dapr_result res = {.status = DAPR_OK};
    cb(ctx, &res);
}

static void flaky_publish(void *inst, const dapr_pubsub_publish_req *req, dapr_result_cb cb, void *ctx)
{
    (void)inst;
    char key[200];
    snprintf(key, sizeof key, "pub-%s", req->topic);
    pthread_mutex_lock(&lock);
    struct counter *c = counter_of(key);
    int n = c ? ++c->sets : 1;
    pthread_mutex_unlock(&lock);
    if (strstr(req->topic, "slow"))
        pause_ms(1500);
    dapr_result res = {.status = DAPR_OK};
    if (n <= fail_count(req->topic)) {
        res.status = DAPR_ERR_UNAVAILABLE;
        res.message = "flaky: planned failure";
    }
    cb(ctx, &res);
}

static const dapr_pubsub_vtable flaky_pubsub_vtable = {
    .size = sizeof(dapr_pubsub_vtable),
    .publish = flaky_publish,
};

static const dapr_component_def flaky_pubsub_component = {
    .size = sizeof(dapr_component_def),
    .kind = DAPR_KIND_PUBSUB,
    .type = "pubsub.flaky",
    .version = "v1",
    .features = 0,
    .flags = 0,
    .init = flaky_init,
    .close = flaky_close,
    .vtable = &flaky_pubsub_vtable,
};

static const dapr_state_vtable flaky_vtable = {
    .size = sizeof(dapr_state_vtable),
    .get = flaky_get,
    .set = flaky_set,
    .del = flaky_del,
};

static const dapr_component_def flaky_component = {
    .size = sizeof(dapr_component_def),
    .kind = DAPR_KIND_STATE,
    .type = "state.flaky",
    .version = "v1",
    .features = DAPR_STATE_ETAG,
    .flags = 0, /* blocking: the host uses its worker pool */
    .init = flaky_init,
    .close = flaky_close,
    .vtable = &flaky_vtable,
};

static const dapr_component_def *const flaky_components[] = {&flaky_component, &flaky_pubsub_component};

static const dapr_plugin_descriptor flaky_descriptor = {
    DAPR_PLUGIN_DESCRIPTOR_HEADER,
    .name = "test-flaky",
    .version = "0.1.0",
    .description = "test state store that fails and stalls on purpose",
    .components = flaky_components,
    .n_components = 2,
};

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void);

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void)
{
    return &flaky_descriptor;
}
