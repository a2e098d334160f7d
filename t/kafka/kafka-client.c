/*
 * kafka-client - drive the pubsub.kafka plugin through the public ABI
 * with a minimal fake host, for t/kafka/run.sh.
 *
 *   kafka-client [--meta NAME=VALUE]... PLUGIN.so publish TOPIC FROM TO
 *                [--bulk N] [--key KEY] [--interval MS]
 *       Publish the ids FROM..TO as {"id":N} (application/json), one by
 *       one or N per bulk publish, with metadata partitionKey=KEY and
 *       trace=t<id>, waiting MS milliseconds after each publish.  Prints "PUBLISHED <ok> FAILED <n>" and exits 0 when
 *       all succeeded.
 *
 *   kafka-client [--meta NAME=VALUE]... PLUGIN.so consume TOPIC
 *                [--mif N] [--ack-upto K] [--ack-mod M] [--hold]
 *       Subscribe and print "READY" when the subscribe completed, then
 *       one line per delivery:
 *           MSG <id> p=<partition> o=<offset> key=<key> ct=<type> trace=<t>
 *       Each message is acked SUCCESS at once unless --hold is given;
 *       with --hold only ids <= K (--ack-upto) and ids divisible by M
 *       (--ack-mod) are acked and the rest are kept unacked, as an app
 *       that is still working on them.  Runs until SIGTERM/SIGINT, then
 *       unsubscribes, acks what it holds with RETRY, closes, exits 0.
 *       --extra TOPIC2 --extra-after N: once N messages arrived, also
 *       subscribe to TOPIC2 (a rebalance while messages are held);
 *       prints "EXTRA READY" when that subscribe completed.
 *
 * The host's metadata are the --meta pairs (names case-insensitive); the
 * app id is "kafka-client".  Log lines go to stderr ("[level] text").
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dapr/plugin.h>

#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* ---- the fake host ------------------------------------------------------------ */

static char **meta_names, **meta_values;
static size_t n_meta;
static dapr_kv *meta_kv;

static void h_log(dapr_host *h, dapr_log_level level, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    char buf[2048];
    va_list ap;
    (void)h;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "[%s] %s\n", names[level & 3], buf);
}

static int h_log_enabled(dapr_host *h, dapr_log_level level)
{
    (void)h;
    return level >= DAPR_LOG_INFO || getenv("KAFKA_CLIENT_DEBUG") != NULL;
}

static const char *h_metadata_get(dapr_host *h, const char *name)
{
    (void)h;
    for (size_t i = 0; i < n_meta; i++)
        if (strcasecmp(meta_names[i], name) == 0)
            return meta_values[i];
    return NULL;
}

static dapr_kvs h_metadata_all(dapr_host *h)
{
    (void)h;
    return (dapr_kvs){meta_kv, n_meta};
}
static const char *h_component_name(dapr_host *h) { (void)h; return "kafka"; }
static const char *h_app_id(dapr_host *h) { (void)h; return "kafka-client"; }
static int h_submit(dapr_host *h, dapr_task_fn fn, void *arg)
{
    (void)h;
    fn(arg);
    return 0;
}
static uint64_t h_timer_start(dapr_host *h, uint64_t ms, dapr_task_fn fn, void *arg)
{
    (void)h; (void)ms; (void)fn; (void)arg;
    return 0;
}
static void h_timer_stop(dapr_host *h, uint64_t id) { (void)h; (void)id; }
static void h_metric_add(dapr_host *h, const char *name, double v) { (void)h; (void)name; (void)v; }

static const dapr_host_api host_api = {
    .size = sizeof(dapr_host_api),
    .log = h_log,
    .log_enabled = h_log_enabled,
    .metadata_get = h_metadata_get,
    .metadata_all = h_metadata_all,
    .component_name = h_component_name,
    .app_id = h_app_id,
    .submit = h_submit,
    .timer_start = h_timer_start,
    .timer_stop = h_timer_stop,
    .metric_add = h_metric_add,
};

/* ---- waiting for completions -------------------------------------------------- */

typedef struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    dapr_status status;
    char message[512];
    size_t n_failed;
} waiter;

static void waiter_init(waiter *w)
{
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->done = 0;
    w->n_failed = 0;
    w->message[0] = '\0';
}

static void waiter_wait(waiter *w)
{
    pthread_mutex_lock(&w->mu);
    while (!w->done)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
}

static void result_cb(void *ctx, const dapr_result *r)
{
    waiter *w = ctx;
    pthread_mutex_lock(&w->mu);
    w->status = r->status;
    snprintf(w->message, sizeof w->message, "%s", r->message ? r->message : "");
    w->done = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void bulk_cb(void *ctx, const dapr_pubsub_bulk_publish_result *r)
{
    waiter *w = ctx;
    pthread_mutex_lock(&w->mu);
    w->status = r->status;
    w->n_failed = r->n_failed;
    snprintf(w->message, sizeof w->message, "%s", r->message ? r->message : "");
    w->done = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* ---- consuming ---------------------------------------------------------------- */

typedef struct held {
    dapr_pubsub_ack_fn ack;
    void *ctx;
} held;

static pthread_mutex_t held_mu = PTHREAD_MUTEX_INITIALIZER;
static held *helds;
static size_t n_held, cap_held;
static int hold_mode;
static long ack_upto = -1, ack_mod = 0;
static long received;

static const char *meta_of(const dapr_pubsub_message *m, const char *name)
{
    for (size_t i = 0; i < m->metadata.n; i++)
        if (strcmp(m->metadata.items[i].name, name) == 0)
            return m->metadata.items[i].value;
    return "-";
}

static void handler(void *hctx, const dapr_pubsub_message *m, dapr_pubsub_ack_fn ack, void *ack_ctx)
{
    (void)hctx;
    char body[128];
    size_t n = m->data.len < sizeof body - 1 ? m->data.len : sizeof body - 1;
    memcpy(body, m->data.ptr, n);
    body[n] = '\0';
    const char *p = strstr(body, "\"id\":");
    long id = p ? strtol(p + 5, NULL, 10) : -1;
    pthread_mutex_lock(&held_mu);
    received++;
    pthread_mutex_unlock(&held_mu);
    printf("MSG %ld p=%s o=%s key=%s ct=%s trace=%s\n", id, meta_of(m, "__partition"),
           meta_of(m, "__offset"), meta_of(m, "__key"), m->content_type ? m->content_type : "-",
           meta_of(m, "trace"));
    fflush(stdout);
    int ack_now = !hold_mode || (ack_upto >= 0 && id <= ack_upto) ||
                  (ack_mod > 0 && id >= 0 && id % ack_mod == 0);
    if (ack_now) {
        ack(ack_ctx, DAPR_PUBSUB_ACK_SUCCESS);
        return;
    }
    pthread_mutex_lock(&held_mu);
    if (n_held == cap_held) {
        cap_held = cap_held ? 2 * cap_held : 64;
        helds = realloc(helds, cap_held * sizeof *helds);
        if (!helds)
            abort();
    }
    helds[n_held++] = (held){ack, ack_ctx};
    pthread_mutex_unlock(&held_mu);
}

static void usage(void)
{
    fprintf(stderr, "usage: kafka-client [--meta NAME=VALUE]... PLUGIN.so publish TOPIC FROM TO "
                    "[--bulk N] [--key KEY] [--interval MS]\n"
                    "       kafka-client [--meta NAME=VALUE]... PLUGIN.so consume TOPIC [--mif N] "
                    "[--hold] [--ack-upto K] [--ack-mod M] [--extra TOPIC2 --extra-after N]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int i = 1;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    /* Before the plugin starts its threads, so that they inherit it. */
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    for (; i + 1 < argc && strcmp(argv[i], "--meta") == 0; i += 2) {
        char *eq = strchr(argv[i + 1], '=');
        if (!eq)
            usage();
        *eq = '\0';
        meta_names = realloc(meta_names, (n_meta + 1) * sizeof *meta_names);
        meta_values = realloc(meta_values, (n_meta + 1) * sizeof *meta_values);
        meta_kv = realloc(meta_kv, (n_meta + 1) * sizeof *meta_kv);
        if (!meta_names || !meta_values || !meta_kv)
            abort();
        meta_names[n_meta] = argv[i + 1];
        meta_values[n_meta] = eq + 1;
        meta_kv[n_meta] = (dapr_kv){argv[i + 1], eq + 1};
        n_meta++;
    }
    if (argc - i < 3)
        usage();
    const char *so = argv[i], *mode = argv[i + 1], *topic = argv[i + 2];
    i += 3;

    void *dl = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        fprintf(stderr, "kafka-client: %s\n", dlerror());
        return 1;
    }
    dapr_plugin_entry_fn entry;
    *(void **)&entry = dlsym(dl, DAPR_PLUGIN_ENTRY_SYMBOL);
    const dapr_plugin_descriptor *d = entry ? entry() : NULL;
    const dapr_component_def *def = NULL;
    for (size_t k = 0; d && k < d->n_components; k++)
        if (strcmp(d->components[k]->type, "pubsub.kafka") == 0)
            def = d->components[k];
    if (!def) {
        fprintf(stderr, "kafka-client: %s has no pubsub.kafka\n", so);
        return 1;
    }
    const dapr_pubsub_vtable *vt = def->vtable;
    void *inst = NULL;
    char err[1024] = "";
    if (def->init((dapr_host *)&host_api, &host_api, &inst, err, sizeof err) != DAPR_OK) {
        printf("INIT FAILED: %s\n", err);
        return 3;
    }

    int rc = 0;
    if (strcmp(mode, "publish") == 0) {
        if (argc - i < 2)
            usage();
        long from = atol(argv[i]), to = atol(argv[i + 1]);
        long bulk = 0, interval_ms = 0;
        const char *key = NULL;
        for (i += 2; i < argc; i++) {
            if (strcmp(argv[i], "--bulk") == 0 && i + 1 < argc)
                bulk = atol(argv[++i]);
            else if (strcmp(argv[i], "--key") == 0 && i + 1 < argc)
                key = argv[++i];
            else if (strcmp(argv[i], "--interval") == 0 && i + 1 < argc)
                interval_ms = atol(argv[++i]);
            else
                usage();
        }
        long ok = 0, failed = 0;
        for (long id = from; id <= to;) {
            long n = bulk > 0 ? bulk : 1;
            if (id + n - 1 > to)
                n = to - id + 1;
            char (*bodies)[64] = calloc((size_t)n, sizeof *bodies);
            char (*traces)[32] = calloc((size_t)n, sizeof *traces);
            char (*ids)[32] = calloc((size_t)n, sizeof *ids);
            dapr_kv (*kvs)[2] = calloc((size_t)n, sizeof *kvs);
            dapr_pubsub_bulk_entry *entries = calloc((size_t)n, sizeof *entries);
            if (!bodies || !traces || !ids || !kvs || !entries)
                abort();
            for (long k = 0; k < n; k++) {
                snprintf(bodies[k], sizeof bodies[k], "{\"id\":%ld}", id + k);
                snprintf(traces[k], sizeof traces[k], "t%ld", id + k);
                snprintf(ids[k], sizeof ids[k], "e%ld", id + k);
                size_t nk = 0;
                kvs[k][nk++] = (dapr_kv){"trace", traces[k]};
                if (key)
                    kvs[k][nk++] = (dapr_kv){"partitionKey", key};
                entries[k] = (dapr_pubsub_bulk_entry){
                    .entry_id = ids[k],
                    .data = {(const uint8_t *)bodies[k], strlen(bodies[k])},
                    .content_type = "application/json",
                    .metadata = {kvs[k], nk},
                };
            }
            waiter w;
            waiter_init(&w);
            if (bulk > 0) {
                dapr_pubsub_bulk_publish_req req = {.topic = topic, .entries = entries,
                                                    .n_entries = (size_t)n};
                vt->bulk_publish(inst, &req, bulk_cb, &w);
                waiter_wait(&w);
                failed += (long)w.n_failed;
                ok += n - (long)w.n_failed;
            } else {
                dapr_pubsub_publish_req req = {.topic = topic, .data = entries[0].data,
                                               .content_type = "application/json",
                                               .metadata = entries[0].metadata};
                vt->publish(inst, &req, result_cb, &w);
                waiter_wait(&w);
                if (w.status == DAPR_OK)
                    ok++;
                else
                    failed++;
            }
            if (w.status != DAPR_OK)
                fprintf(stderr, "kafka-client: publish: status %d: %s\n", (int)w.status, w.message);
            free(bodies);
            free(traces);
            free(ids);
            free(kvs);
            free(entries);
            id += n;
            if (interval_ms > 0)
                usleep((useconds_t)interval_ms * 1000);
        }
        printf("PUBLISHED %ld FAILED %ld\n", ok, failed);
        rc = failed ? 1 : 0;
    } else if (strcmp(mode, "consume") == 0) {
        uint32_t mif = 0;
        const char *extra = NULL;
        long extra_after = 0;
        for (; i < argc; i++) {
            if (strcmp(argv[i], "--mif") == 0 && i + 1 < argc)
                mif = (uint32_t)atol(argv[++i]);
            else if (strcmp(argv[i], "--extra") == 0 && i + 1 < argc)
                extra = argv[++i];
            else if (strcmp(argv[i], "--extra-after") == 0 && i + 1 < argc)
                extra_after = atol(argv[++i]);
            else if (strcmp(argv[i], "--hold") == 0)
                hold_mode = 1;
            else if (strcmp(argv[i], "--ack-upto") == 0 && i + 1 < argc)
                ack_upto = atol(argv[++i]);
            else if (strcmp(argv[i], "--ack-mod") == 0 && i + 1 < argc)
                ack_mod = atol(argv[++i]);
            else
                usage();
        }
        waiter w;
        waiter_init(&w);
        uint64_t id = 0;
        dapr_pubsub_subscribe_req req = {.topic = topic, .handler = handler, .max_in_flight = mif};
        vt->subscribe(inst, &req, &id, result_cb, &w);
        waiter_wait(&w);
        if (w.status != DAPR_OK) {
            printf("SUBSCRIBE FAILED: %s\n", w.message);
            rc = 1;
        } else {
            printf("READY\n");
            fflush(stdout);
            uint64_t extra_id = 0;
            struct timespec tick = {0, 50 * 1000000L};
            while (sigtimedwait(&set, NULL, &tick) < 0) {
                pthread_mutex_lock(&held_mu);
                int go = extra && !extra_id && received >= extra_after;
                pthread_mutex_unlock(&held_mu);
                if (!go)
                    continue;
                dapr_pubsub_subscribe_req req2 = {.topic = extra, .handler = handler,
                                                  .max_in_flight = mif};
                waiter_init(&w);
                vt->subscribe(inst, &req2, &extra_id, result_cb, &w);
                waiter_wait(&w);
                printf("EXTRA %s\n", w.status == DAPR_OK ? "READY" : w.message);
                fflush(stdout);
            }
            waiter_init(&w);
            vt->unsubscribe(inst, id, result_cb, &w);
            waiter_wait(&w);
            if (extra_id) {
                waiter_init(&w);
                vt->unsubscribe(inst, extra_id, result_cb, &w);
                waiter_wait(&w);
            }
            pthread_mutex_lock(&held_mu);
            for (size_t k = 0; k < n_held; k++)
                helds[k].ack(helds[k].ctx, DAPR_PUBSUB_ACK_RETRY);
            n_held = 0;
            pthread_mutex_unlock(&held_mu);
        }
    } else {
        usage();
    }
    def->close(inst);
    printf("CLOSED\n");
    fflush(stdout);
    free(helds);
    free(meta_names);
    free(meta_values);
    free(meta_kv);
    /* No dlclose: leak reports then still name the plugin's functions. */
    (void)dl;
    return rc;
}
