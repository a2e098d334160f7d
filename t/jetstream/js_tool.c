/*
 * js_tool.c - test helper for t/jetstream/run.sh, built on nats.c.
 *
 *   js_tool stream-add URL NAME SUBJECT...   create a file-backed stream
 *                                            (TLS: set JS_CA, JS_CERT, JS_KEY)
 *   js_tool stream-msgs URL NAME             print the stream's message count
 *   js_tool consumer URL STREAM CONSUMER     print "pending=N ack_pending=N
 *                                            redelivered=N" (exit 3: none)
 *   js_tool consumer-delete URL STREAM CONSUMER
 *   js_tool fault PLUGIN.so URL KILL START   the plugin-level fault test
 *
 * The fault test loads the plugin like daprd does (dlopen, descriptor,
 * init with a small host services table), subscribes and publishes ids
 * while it runs the shell command KILL (SIGKILL nats-server) and then
 * START (start it again on the same port and store folder, wait until
 * ready).  It counts every id on both sides and prints exact numbers:
 * publishes fail cleanly while the server is down and work after; the
 * messages the "app" held unacked across the restart come back after
 * ackWait; every id whose publish succeeded is delivered.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dapr/plugin.h>

#include <nats/nats.h>

#include <dlfcn.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static int die(const char *what, natsStatus s)
{
    fprintf(stderr, "js_tool: %s: %s (%s)\n", what, natsStatus_GetText(s), nats_GetLastError(NULL));
    return 1;
}

/* TLS when JS_CA (and JS_CERT/JS_KEY for a client certificate) are set. */
static natsStatus connect_js(const char *url, natsConnection **nc, jsCtx **js)
{
    natsOptions *o = NULL;
    const char *ca = getenv("JS_CA"), *cert = getenv("JS_CERT"), *key = getenv("JS_KEY");
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK)
        s = natsOptions_SetURL(o, url);
    if (s == NATS_OK && ca) {
        s = natsOptions_SetSecure(o, true);
        if (s == NATS_OK)
            s = natsOptions_LoadCATrustedCertificates(o, ca);
        if (s == NATS_OK && cert && key)
            s = natsOptions_LoadCertificatesChain(o, cert, key);
    }
    if (s == NATS_OK)
        s = natsConnection_Connect(nc, o);
    if (s == NATS_OK)
        s = natsConnection_JetStream(js, *nc, NULL);
    natsOptions_Destroy(o);
    return s;
}

static void disconnect(natsConnection *nc, jsCtx *js)
{
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    nats_CloseAndWait(2000);
}

static int stream_add(int argc, char **argv)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    natsStatus s = connect_js(argv[0], &nc, &js);
    if (s != NATS_OK)
        return die("connect", s);
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = argv[1];
    sc.Subjects = (const char **)&argv[2];
    sc.SubjectsLen = argc - 2;
    sc.Storage = js_FileStorage;
    sc.MaxBytes = 512LL * 1024 * 1024; /* bounded: tests store little */
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    s = js_AddStream(&si, js, &sc, NULL, &jerr);
    jsStreamInfo_Destroy(si);
    int rc = s == NATS_OK ? 0 : die("stream add", s);
    disconnect(nc, js);
    return rc;
}

static int stream_msgs(char **argv)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    natsStatus s = connect_js(argv[0], &nc, &js);
    if (s != NATS_OK)
        return die("connect", s);
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    s = js_GetStreamInfo(&si, js, argv[1], NULL, &jerr);
    int rc = 0;
    if (s == NATS_OK)
        printf("%" PRIu64 "\n", si->State.Msgs);
    else
        rc = die("stream info", s);
    jsStreamInfo_Destroy(si);
    disconnect(nc, js);
    return rc;
}

static int consumer_delete(char **argv)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    natsStatus s = connect_js(argv[0], &nc, &js);
    if (s != NATS_OK)
        return die("connect", s);
    jsErrCode jerr = 0;
    s = js_DeleteConsumer(js, argv[1], argv[2], NULL, &jerr);
    int rc = s == NATS_OK ? 0 : die("consumer delete", s);
    disconnect(nc, js);
    return rc;
}

static int consumer_info(char **argv)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    natsStatus s = connect_js(argv[0], &nc, &js);
    if (s != NATS_OK)
        return die("connect", s);
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    s = js_GetConsumerInfo(&ci, js, argv[1], argv[2], NULL, &jerr);
    int rc = 0;
    if (s == NATS_OK) {
        printf("pending=%" PRIu64 " ack_pending=%" PRId64 " redelivered=%" PRId64 " pull=%d\n",
               ci->NumPending, ci->NumAckPending, ci->NumRedelivered,
               !ci->Config->DeliverSubject || !*ci->Config->DeliverSubject);
    } else {
        fprintf(stderr, "js_tool: consumer %s: %s\n", argv[2], natsStatus_GetText(s));
        rc = 3;
    }
    jsConsumerInfo_Destroy(ci);
    disconnect(nc, js);
    return rc;
}

/* ------------------------------------------------------------------ */
/* The fault test: a minimal host                                       */
/* ------------------------------------------------------------------ */

#define N_IDS 600
#define KILL_AFTER 150     /* ids published OK before the kill */
#define HOLD_EVERY 10      /* the "app" holds ids with id % 10 == 3 before the kill */

static const char *meta_names[16], *meta_values[16];
static size_t n_meta;

static void h_log(dapr_host *h, dapr_log_level l, const char *fmt, ...)
{
    (void)h;
    static const char *names[] = {"debug", "info", "warn", "error"};
    if (l < DAPR_LOG_INFO)
        return;
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "plugin %s: %s\n", names[l], buf);
}
static int h_log_enabled(dapr_host *h, dapr_log_level l) { (void)h; return l >= DAPR_LOG_INFO; }
static const char *h_meta(dapr_host *h, const char *name)
{
    (void)h;
    for (size_t i = 0; i < n_meta; i++)
        if (!strcasecmp(meta_names[i], name))
            return meta_values[i];
    return NULL;
}
static dapr_kvs h_meta_all(dapr_host *h) { (void)h; return (dapr_kvs){NULL, 0}; }
static const char *h_name(dapr_host *h) { (void)h; return "fault"; }
static const char *h_app_id(dapr_host *h) { (void)h; return "faultapp"; }
static int h_submit(dapr_host *h, dapr_task_fn fn, void *arg) { (void)h; fn(arg); return 0; }
static uint64_t h_timer_start(dapr_host *h, uint64_t ms, dapr_task_fn fn, void *arg)
{
    (void)h; (void)ms; (void)fn; (void)arg;
    return 0;
}
static void h_timer_stop(dapr_host *h, uint64_t id) { (void)h; (void)id; }
static void h_metric(dapr_host *h, const char *n, double v) { (void)h; (void)n; (void)v; }

static const dapr_host_api host_api = {
    .size = sizeof(dapr_host_api),
    .log = h_log,
    .log_enabled = h_log_enabled,
    .metadata_get = h_meta,
    .metadata_all = h_meta_all,
    .component_name = h_name,
    .app_id = h_app_id,
    .submit = h_submit,
    .timer_start = h_timer_start,
    .timer_stop = h_timer_stop,
    .metric_add = h_metric,
};

/* Synchronous completion of an operation. */
typedef struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    dapr_status st;
    char msg[512];
} waiter;

static void w_init(waiter *w)
{
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->done = 0;
    w->msg[0] = '\0';
}
static void w_cb(void *ctx, const dapr_result *r)
{
    waiter *w = ctx;
    pthread_mutex_lock(&w->mu);
    w->st = r->status;
    snprintf(w->msg, sizeof w->msg, "%s", r->message ? r->message : "");
    w->done = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}
static void w_wait(waiter *w)
{
    pthread_mutex_lock(&w->mu);
    while (!w->done)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Shared state, under mu. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int seen[N_IDS + 1];
static int pub_status[N_IDS + 1];     /* 0 not yet, 1 ok, 2 failed */
static double pub_ms[N_IDS + 1];
static int killed;                    /* server killed: stop holding */
static unsigned char was_held[N_IDS + 1];
typedef struct held { dapr_pubsub_ack_fn ack; void *ctx; } held;
static held holds[N_IDS];
static int n_holds;
static int n_pub_ok;

static void handler(void *ctx, const dapr_pubsub_message *msg, dapr_pubsub_ack_fn ack, void *ack_ctx)
{
    (void)ctx;
    char buf[32];
    size_t n = msg->data.len < sizeof buf - 1 ? msg->data.len : sizeof buf - 1;
    memcpy(buf, msg->data.ptr, n);
    buf[n] = '\0';
    int id = atoi(buf);
    pthread_mutex_lock(&mu);
    int hold = 0;
    if (id >= 1 && id <= N_IDS) {
        /* Hold first deliveries of every 10th id until the kill: the app
         * received them and never answered. */
        hold = seen[id] == 0 && id % HOLD_EVERY == 3 && !killed;
        seen[id]++;
    }
    if (hold) {
        was_held[id] = 1;
        holds[n_holds].ack = ack;
        holds[n_holds].ctx = ack_ctx;
        n_holds++;
    }
    pthread_mutex_unlock(&mu);
    if (!hold)
        ack(ack_ctx, DAPR_PUBSUB_ACK_SUCCESS);
}

static const dapr_pubsub_vtable *vt;
static void *instance;

static void *publisher(void *arg)
{
    (void)arg;
    for (int id = 1; id <= N_IDS; id++) {
        char body[32];
        int n = snprintf(body, sizeof body, "%d", id);
        dapr_pubsub_publish_req req = {.topic = "fault", .data = {(const uint8_t *)body, (size_t)n},
                                       .content_type = "text/plain"};
        waiter w;
        w_init(&w);
        double t0 = now_ms();
        vt->publish(instance, &req, w_cb, &w);
        w_wait(&w);
        pthread_mutex_lock(&mu);
        pub_ms[id] = now_ms() - t0;
        pub_status[id] = w.st == DAPR_OK ? 1 : 2;
        if (w.st == DAPR_OK)
            n_pub_ok++;
        pthread_mutex_unlock(&mu);
        if (w.st != DAPR_OK && (id % 20) == 0)
            fprintf(stderr, "publish %d failed: %s\n", id, w.msg);
        usleep(w.st == DAPR_OK ? 3000 : 20000);
    }
    return NULL;
}

static int fault(char **argv)
{
    const char *so = argv[0], *url = argv[1], *kill_cmd = argv[2], *start_cmd = argv[3];
    void *h = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 2;
    }
    dapr_plugin_entry_fn entry = (dapr_plugin_entry_fn)dlsym(h, DAPR_PLUGIN_ENTRY_SYMBOL);
    const dapr_component_def *def = entry()->components[0];
    vt = def->vtable;
    meta_names[n_meta] = "natsURL", meta_values[n_meta++] = url;
    meta_names[n_meta] = "ackWait", meta_values[n_meta++] = "2s";
    meta_names[n_meta] = "durableName", meta_values[n_meta++] = "faulttest";
    char err[512] = "";
    if (def->init(NULL, &host_api, &instance, err, sizeof err) != DAPR_OK) {
        fprintf(stderr, "init: %s\n", err);
        return 1;
    }
    waiter w;
    w_init(&w);
    uint64_t sub_id = 0;
    dapr_pubsub_subscribe_req sreq = {.topic = "fault", .handler = handler, .max_in_flight = 64};
    vt->subscribe(instance, &sreq, &sub_id, w_cb, &w);
    w_wait(&w);
    if (w.st != DAPR_OK) {
        fprintf(stderr, "subscribe: %s\n", w.msg);
        return 1;
    }

    pthread_t pub;
    pthread_create(&pub, NULL, publisher, NULL);
    for (;;) {
        pthread_mutex_lock(&mu);
        int ok = n_pub_ok;
        pthread_mutex_unlock(&mu);
        if (ok >= KILL_AFTER)
            break;
        usleep(5000);
    }
    pthread_mutex_lock(&mu);
    killed = 1;
    int n_held = n_holds;
    pthread_mutex_unlock(&mu);
    printf("# killing nats-server after %d publishes; the app holds %d unacked messages\n", KILL_AFTER,
           n_held);
    fflush(stdout);
    if (system(kill_cmd) != 0)
        fprintf(stderr, "kill command failed\n");
    double down = now_ms();
    usleep(1500000);
    if (system(start_cmd) != 0) {
        fprintf(stderr, "start command failed\n");
        return 1;
    }
    double up = now_ms();
    pthread_join(pub, NULL);

    /* Wait for every id published OK, and for the held ones to come
     * back (ackWait 2 s after the restart). */
    double give_up = now_ms() + 30000;
    int missing = 0, held_back = 0;
    for (;;) {
        missing = 0;
        held_back = 0;
        pthread_mutex_lock(&mu);
        for (int id = 1; id <= N_IDS; id++)
            if (pub_status[id] == 1 && !seen[id])
                missing++;
        for (int id = 1; id <= N_IDS; id++)
            if (was_held[id] && seen[id] >= 2)
                held_back++;
        pthread_mutex_unlock(&mu);
        if ((!missing && held_back >= n_held) || now_ms() > give_up)
            break;
        usleep(50000);
    }
    /* The first deliveries of the held ids: the host acks every delivery
     * exactly once, late or not. */
    pthread_mutex_lock(&mu);
    for (int i = 0; i < n_holds; i++)
        holds[i].ack(holds[i].ctx, DAPR_PUBSUB_ACK_SUCCESS);
    int ok = 0, failed = 0, extra = 0, dups = 0, dup_lo = 0, dup_hi = 0;
    double slowest_fail = 0;
    for (int id = 1; id <= N_IDS; id++) {
        if (pub_status[id] == 1)
            ok++;
        else {
            failed++;
            if (pub_ms[id] > slowest_fail)
                slowest_fail = pub_ms[id];
            if (seen[id])
                extra++;
        }
        if (seen[id] > 1 && !was_held[id]) {
            dups++;
            if (!dup_lo)
                dup_lo = id;
            dup_hi = id;
        }
    }
    int after_ok = 0;
    for (int id = N_IDS - 50; id <= N_IDS; id++)
        after_ok += pub_status[id] == 1;
    pthread_mutex_unlock(&mu);

    printf("# server down for %.0f ms\n", up - down);
    printf("published_ok=%d published_failed=%d slowest_failure_ms=%.0f last50_ok=%d\n", ok, failed,
           slowest_fail, after_ok);
    printf("held=%d held_redelivered=%d lost=%d duplicates_other=%d (ids %d-%d) "
           "delivered_after_failed_publish=%d\n",
           n_held, held_back, missing, dups, dup_lo, dup_hi, extra);
    fflush(stdout);

    w_init(&w);
    vt->unsubscribe(instance, sub_id, w_cb, &w);
    w_wait(&w);
    def->close(instance);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 5 && !strcmp(argv[1], "stream-add"))
        return stream_add(argc - 2, argv + 2);
    if (argc == 4 && !strcmp(argv[1], "stream-msgs"))
        return stream_msgs(argv + 2);
    if (argc == 5 && !strcmp(argv[1], "consumer"))
        return consumer_info(argv + 2);
    if (argc == 5 && !strcmp(argv[1], "consumer-delete"))
        return consumer_delete(argv + 2);
    if (argc == 6 && !strcmp(argv[1], "fault"))
        return fault(argv + 2);
    fprintf(stderr, "usage: js_tool stream-add URL NAME SUBJECT... | stream-msgs URL NAME |\n"
                    "       consumer[-delete] URL STREAM CONSUMER | fault PLUGIN.so URL KILL-CMD START-CMD\n");
    return 2;
}
