/*
 * pubsub-direct.c - the reference path of bench/pubsub-bench.sh: the same
 * messages through the same broker plugin, with no sidecar.
 *
 * It dlopens a pub/sub plugin .so, initialises its component with the
 * metadata given on the command line and host services like daprd's
 * (logs, a bounded worker pool, timers), subscribes to one topic and then
 * publishes for a fixed time from N threads, each with one publish in
 * flight (as wrk's connections have one request each), either as fast as
 * the plugin completes them or paced at a fixed total rate.  Each message
 * is a CloudEvent shaped and sized like the one daprd publishes, whose data
 * carries pb_seq and pb_sent_ns (pubsub-stats.h); the handler counts it
 * with the same code as the sidecar path's app and acks SUCCESS from a
 * separate thread, as daprd acks from its loop once the app answered.
 *
 * After the run it waits for deliveries to drain, then prints one line of
 * name=value pairs on stdout:
 *
 *   PB sent= ok= failed= duration_s= published_per_s= pub_p50_us= pub_p99_us=
 *      drain=complete|idle|cap delivered= distinct= duplicates= stale= bad= delivered_per_s= p50_us= ...
 *
 * Not built by make; the benchmark compiles it with
 *
 *     cc -O2 -I plugin-sdk/include -o pubsub-direct pubsub-direct.c -ldl -lpthread
 *
 * Usage: pubsub-direct [options] PLUGIN.so
 *   --type TYPE            the pubsub component type (needed when the .so has several)
 *   --metadata NAME=VALUE  component metadata, as in a manifest (repeatable)
 *   --topic TOPIC          (default bench-direct)
 *   --app-id ID            what app_id() answers (default bench-direct)
 *   --duration SECS        measured publishing time (default 10)
 *   --warmup SECS          unmeasured publishing first, then drained (default 1)
 *   --concurrency N        publishing threads, one publish in flight each (default 32)
 *   --rate N               total messages per second; 0: as fast as possible (default 0)
 *   --max-in-flight N      the subscription's max_in_flight (default 32, as daprd)
 *   --drain SECS           longest wait for deliveries after the run (default 60);
 *                          the wait also ends when every published id arrived or
 *                          after --idle seconds without a new one
 *   --idle SECS            (default 5)
 *   --verbose              the plugin's info and debug logs too
 */
#define _GNU_SOURCE
#include "pubsub-stats.h"

#include <dapr/plugin.h>

#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define MEASURED_BASE 1000000000ull  /* warm-up ids are below, measured ids above */

static struct {
    const char *plugin, *type, *topic, *app_id;
    char **names, **values;
    size_t n_meta;
    double duration, warmup, drain, idle;
    int concurrency, verbose;
    double rate;
    uint32_t max_in_flight;
} opt = {.topic = "bench-direct", .app_id = "bench-direct", .duration = 10, .warmup = 1,
         .drain = 60, .idle = 5, .concurrency = 32, .max_in_flight = 32};

static const dapr_component_def *def;

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "pubsub-direct: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void cond_init_mono(pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
}

static struct timespec mono_deadline(uint64_t in_ns)
{
    uint64_t t = pb_now_ns() + in_ns;
    struct timespec ts = {(time_t)(t / 1000000000ull), (long)(t % 1000000000ull)};
    return ts;
}

/* ---- host services: what daprd offers a component ------------------- */

typedef struct task {
    dapr_task_fn fn;
    void *arg;
    struct task *next;
} task;

/* daprd's worker pool: fixed threads, one bounded FIFO. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    task *head, *tail;
    size_t len;
    int stop;
    pthread_t threads[8];
    int n;
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
#define POOL_CAP 4096

static void *pool_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&pool.mu);
    for (;;) {
        while (!pool.head && !pool.stop)
            pthread_cond_wait(&pool.cv, &pool.mu);
        if (!pool.head)
            break;
        task *t = pool.head;
        pool.head = t->next;
        if (!pool.head)
            pool.tail = NULL;
        pool.len--;
        pthread_mutex_unlock(&pool.mu);
        t->fn(t->arg);
        free(t);
        pthread_mutex_lock(&pool.mu);
    }
    pthread_mutex_unlock(&pool.mu);
    return NULL;
}

static int svc_submit(dapr_host *h, dapr_task_fn fn, void *arg)
{
    (void)h;
    task *t = malloc(sizeof *t);
    if (!t || !fn) {
        free(t);
        return -1;
    }
    *t = (task){fn, arg, NULL};
    pthread_mutex_lock(&pool.mu);
    if (pool.stop || pool.len >= POOL_CAP) {
        pthread_mutex_unlock(&pool.mu);
        free(t);
        return -1;
    }
    if (pool.tail)
        pool.tail->next = t;
    else
        pool.head = t;
    pool.tail = t;
    pool.len++;
    pthread_cond_signal(&pool.cv);
    pthread_mutex_unlock(&pool.mu);
    return 0;
}

/* Timers: one thread each; a run is never started while one is going. */
typedef struct timer {
    uint64_t id, interval_ms;
    dapr_task_fn fn;
    void *arg;
    int stop;
    pthread_t thread;
    pthread_cond_t cv;
    struct timer *next;
} timer;

static pthread_mutex_t timers_mu = PTHREAD_MUTEX_INITIALIZER;
static timer *timers;
static uint64_t next_timer_id = 1;

static void *timer_main(void *arg)
{
    timer *t = arg;
    pthread_mutex_lock(&timers_mu);
    while (!t->stop) {
        struct timespec dl = mono_deadline(t->interval_ms * 1000000ull);
        int rc = 0;
        while (!t->stop && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&t->cv, &timers_mu, &dl);
        if (t->stop)
            break;
        pthread_mutex_unlock(&timers_mu);
        t->fn(t->arg);
        pthread_mutex_lock(&timers_mu);
    }
    pthread_mutex_unlock(&timers_mu);
    return NULL;
}

static uint64_t svc_timer_start(dapr_host *h, uint64_t interval_ms, dapr_task_fn fn, void *arg)
{
    (void)h;
    if (!fn || !interval_ms)
        return 0;
    timer *t = calloc(1, sizeof *t);
    if (!t)
        return 0;
    t->interval_ms = interval_ms;
    t->fn = fn;
    t->arg = arg;
    cond_init_mono(&t->cv);
    pthread_mutex_lock(&timers_mu);
    t->id = next_timer_id++;
    if (pthread_create(&t->thread, NULL, timer_main, t) != 0) {
        pthread_mutex_unlock(&timers_mu);
        pthread_cond_destroy(&t->cv);
        free(t);
        return 0;
    }
    t->next = timers;
    timers = t;
    uint64_t id = t->id;
    pthread_mutex_unlock(&timers_mu);
    return id;
}

static void svc_timer_stop(dapr_host *h, uint64_t id)
{
    (void)h;
    pthread_mutex_lock(&timers_mu);
    timer *t = NULL;
    for (timer **pp = &timers; *pp; pp = &(*pp)->next)
        if ((*pp)->id == id) {
            t = *pp;
            *pp = t->next;
            break;
        }
    if (!t) {
        pthread_mutex_unlock(&timers_mu);
        return;
    }
    t->stop = 1;
    pthread_cond_signal(&t->cv);
    if (pthread_equal(t->thread, pthread_self())) {
        /* Stopped from its own run: the thread ends after fn returns; the
         * few bytes are left, as this only happens at close. */
        pthread_detach(t->thread);
        pthread_mutex_unlock(&timers_mu);
        return;
    }
    pthread_mutex_unlock(&timers_mu);
    pthread_join(t->thread, NULL);
    pthread_cond_destroy(&t->cv);
    free(t);
}

static void svc_log(dapr_host *h, dapr_log_level level, const char *fmt, ...)
{
    (void)h;
    static const char *names[] = {"debug", "info", "warn", "error"};
    if (level < DAPR_LOG_WARN && !opt.verbose)
        return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "pubsub-direct: plugin %s: %s\n",
            (unsigned)level < 4 ? names[level] : "?", line);
}

static int svc_log_enabled(dapr_host *h, dapr_log_level level)
{
    (void)h;
    return level >= DAPR_LOG_WARN || opt.verbose;
}

static const char *svc_metadata_get(dapr_host *h, const char *name)
{
    (void)h;
    if (!name)
        return NULL;
    for (size_t i = 0; i < opt.n_meta; i++)
        if (strcasecmp(opt.names[i], name) == 0)
            return opt.values[i];
    for (size_t i = 0; def && i < def->n_metadata_schema; i++)
        if (def->metadata_schema[i].name && strcasecmp(def->metadata_schema[i].name, name) == 0)
            return def->metadata_schema[i].default_value;
    return NULL;
}

static dapr_kv *all_meta;

static dapr_kvs svc_metadata_all(dapr_host *h)
{
    (void)h;
    return (dapr_kvs){all_meta, opt.n_meta};
}

static const char *svc_component_name(dapr_host *h)
{
    (void)h;
    return "pubsub";
}

static const char *svc_app_id(dapr_host *h)
{
    (void)h;
    return opt.app_id;
}

static void svc_metric_add(dapr_host *h, const char *name, double v)
{
    (void)h;
    (void)name;
    (void)v;
}

static const dapr_host_api host_api = {
    .size = sizeof(dapr_host_api),
    .log = svc_log,
    .log_enabled = svc_log_enabled,
    .metadata_get = svc_metadata_get,
    .metadata_all = svc_metadata_all,
    .component_name = svc_component_name,
    .app_id = svc_app_id,
    .submit = svc_submit,
    .timer_start = svc_timer_start,
    .timer_stop = svc_timer_stop,
    .metric_add = svc_metric_add,
};
static char host_token; /* the opaque host handle: any unique address */
#define HOST ((dapr_host *)&host_token)

/* ---- calling the plugin ----------------------------------------------- */

static void *inst;
static const dapr_pubsub_vtable *vt;
/* daprd calls a NONBLOCKING component only from its one loop thread; here
 * the calls are serialised by this lock instead. */
static pthread_mutex_t loop_mu = PTHREAD_MUTEX_INITIALIZER;
static int nonblocking;

typedef struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    dapr_status status;
    char message[256];
} waiter;

static void waiter_init(waiter *w)
{
    pthread_mutex_init(&w->mu, NULL);
    cond_init_mono(&w->cv);
    w->done = 0;
}

static void waiter_destroy(waiter *w)
{
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
}

static void on_result(void *ctx, const dapr_result *res)
{
    waiter *w = ctx;
    pthread_mutex_lock(&w->mu);
    w->status = res ? res->status : DAPR_ERR_INTERNAL;
    snprintf(w->message, sizeof w->message, "%s", res && res->message ? res->message : "");
    w->done = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Wait for a completion; -1 after timeout_s. */
static int waiter_wait(waiter *w, double timeout_s)
{
    struct timespec dl = mono_deadline((uint64_t)(timeout_s * 1e9));
    int rc = 0;
    pthread_mutex_lock(&w->mu);
    while (!w->done && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&w->cv, &w->mu, &dl);
    int done = w->done;
    pthread_mutex_unlock(&w->mu);
    return done ? 0 : -1;
}

static void lock_loop(void)
{
    if (nonblocking)
        pthread_mutex_lock(&loop_mu);
}

static void unlock_loop(void)
{
    if (nonblocking)
        pthread_mutex_unlock(&loop_mu);
}

/* ---- the subscriber ----------------------------------------------------- */

static pthread_mutex_t stats_mu = PTHREAD_MUTEX_INITIALIZER;
static pb_stats stats;

typedef struct ack_job {
    dapr_pubsub_ack_fn ack;
    void *ctx;
    struct ack_job *next;
} ack_job;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    ack_job *head, *tail;
    int stop;
    pthread_t thread;
} acker = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void *ack_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&acker.mu);
    for (;;) {
        while (!acker.head && !acker.stop)
            pthread_cond_wait(&acker.cv, &acker.mu);
        if (!acker.head)
            break;
        ack_job *j = acker.head;
        acker.head = NULL;
        acker.tail = NULL;
        pthread_mutex_unlock(&acker.mu);
        /* Everything queued so far, in order, outside the lock. */
        while (j) {
            ack_job *next = j->next;
            lock_loop();
            j->ack(j->ctx, DAPR_PUBSUB_ACK_SUCCESS);
            unlock_loop();
            free(j);
            j = next;
        }
        pthread_mutex_lock(&acker.mu);
    }
    pthread_mutex_unlock(&acker.mu);
    return NULL;
}

static void handler(void *hctx, const dapr_pubsub_message *msg, dapr_pubsub_ack_fn ack,
                    void *ack_ctx)
{
    (void)hctx;
    uint64_t now = pb_now_ns();
    pthread_mutex_lock(&stats_mu);
    pb_record(&stats, msg ? (const char *)msg->data.ptr : "",
              msg && msg->data.ptr ? msg->data.len : 0, now);
    pthread_mutex_unlock(&stats_mu);
    ack_job *j = malloc(sizeof *j);
    if (!j) {
        /* Cannot queue: ack here rather than leak the message. */
        ack(ack_ctx, DAPR_PUBSUB_ACK_SUCCESS);
        return;
    }
    *j = (ack_job){ack, ack_ctx, NULL};
    pthread_mutex_lock(&acker.mu);
    if (acker.tail)
        acker.tail->next = j;
    else
        acker.head = j;
    acker.tail = j;
    pthread_cond_signal(&acker.cv);
    pthread_mutex_unlock(&acker.mu);
}

/* ---- the publishers ------------------------------------------------------ */

static struct {
    uint64_t base;
    uint64_t stop_ns;
    double interval_ns;        /* per message over all threads; 0: unpaced */
    pthread_mutex_t mu;        /* the pacing schedule and the counters below */
    double next_slot_ns;
    uint64_t sent, ok, failed;
    uint64_t hist[PB_BUCKETS]; /* publish call latency, us */
    char first_error[320];
} run = {.mu = PTHREAD_MUTEX_INITIALIZER};

typedef struct publisher {
    pthread_t thread;
    unsigned index;
    uint64_t rng;
} publisher;

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* The envelope daprd would publish for the body pubsub-publish.lua sends:
 * the same fields and about the same size, so that the broker carries the
 * same bytes on both paths. */
static int make_event(char *buf, size_t len, publisher *p, uint64_t id, uint64_t sent_ns)
{
    uint64_t r1 = xorshift(&p->rng), r2 = xorshift(&p->rng), r3 = xorshift(&p->rng);
    uint64_t r4 = xorshift(&p->rng), r5 = xorshift(&p->rng);
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
    char trace[64];
    snprintf(trace, sizeof trace, "00-%016llx%016llx-%016llx-00", (unsigned long long)r3,
             (unsigned long long)r4, (unsigned long long)r5);
    return snprintf(buf, len,
                    "{\"data\":{\"pb_seq\":%llu,\"pb_sent_ns\":%llu},"
                    "\"datacontenttype\":\"application/json\","
                    "\"id\":\"%08llx-%04llx-4%03llx-%04llx-%012llx\","
                    "\"pubsubname\":\"pubsub\",\"source\":\"%s\",\"specversion\":\"1.0\","
                    "\"time\":\"%s\",\"topic\":\"%s\",\"traceid\":\"%s\","
                    "\"traceparent\":\"%s\",\"tracestate\":\"\",\"type\":\"com.dapr.event.sent\"}",
                    (unsigned long long)id, (unsigned long long)sent_ns,
                    (unsigned long long)(r1 >> 32), (unsigned long long)(r1 & 0xffff),
                    (unsigned long long)((r1 >> 16) & 0xfff),
                    (unsigned long long)(0x8000 | (r2 & 0x3fff)),
                    (unsigned long long)(r2 >> 16), opt.app_id, stamp, opt.topic, trace, trace);
}

static void *publisher_main(void *arg)
{
    publisher *p = arg;
    waiter w;
    waiter_init(&w);
    char body[1024];
    unsigned n = (unsigned)opt.concurrency;
    for (uint64_t seq = 0;; seq++) {
        uint64_t now = pb_now_ns();
        if (run.interval_ns > 0) {
            /* The next slot of one schedule shared by all threads; a slot
             * missed is not made up later in a burst. */
            pthread_mutex_lock(&run.mu);
            double slot = run.next_slot_ns + run.interval_ns;
            if (slot < (double)now)
                slot = (double)now;
            run.next_slot_ns = slot;
            pthread_mutex_unlock(&run.mu);
            if ((uint64_t)slot >= run.stop_ns)
                break;
            if (slot > (double)now)
                sleep_ns((uint64_t)slot - now);
        } else if (now >= run.stop_ns) {
            break;
        }
        uint64_t id = run.base + seq * n + p->index;
        uint64_t t0 = pb_now_ns();
        int blen = make_event(body, sizeof body, p, id, t0);
        dapr_pubsub_publish_req req = {
            .topic = opt.topic,
            .data = {(const uint8_t *)body, (size_t)blen},
            .content_type = "application/cloudevents+json",
            .metadata = {NULL, 0},
        };
        w.done = 0;
        lock_loop();
        vt->publish(inst, &req, on_result, &w);
        unlock_loop();
        if (waiter_wait(&w, 60) != 0)
            die("a publish did not complete within 60 s");
        uint64_t us = (pb_now_ns() - t0) / 1000;
        pthread_mutex_lock(&run.mu);
        run.sent++;
        if (w.status == DAPR_OK) {
            run.ok++;
            run.hist[pb_bucket(us)]++;
        } else {
            run.failed++;
            if (!run.first_error[0])
                snprintf(run.first_error, sizeof run.first_error, "status %d: %s",
                         (int)w.status, w.message);
        }
        pthread_mutex_unlock(&run.mu);
    }
    waiter_destroy(&w);
    return NULL;
}

static double run_quantile_us(double q)
{
    pb_stats tmp;
    memset(&tmp, 0, sizeof tmp);
    memcpy(tmp.hist, run.hist, sizeof tmp.hist);
    return pb_quantile_us(&tmp, q);
}

/* Publish for secs seconds with ids from base; returns the elapsed time. */
static double publish_for(double secs, uint64_t base, double rate)
{
    pthread_mutex_lock(&run.mu);
    run.base = base;
    run.sent = run.ok = run.failed = 0;
    memset(run.hist, 0, sizeof run.hist);
    run.first_error[0] = '\0';
    uint64_t start = pb_now_ns();
    run.stop_ns = start + (uint64_t)(secs * 1e9);
    run.interval_ns = rate > 0 ? 1e9 / rate : 0;
    run.next_slot_ns = (double)start - run.interval_ns;
    pthread_mutex_unlock(&run.mu);

    publisher *ps = calloc((size_t)opt.concurrency, sizeof *ps);
    if (!ps)
        die("out of memory");
    for (int i = 0; i < opt.concurrency; i++) {
        ps[i].index = (unsigned)i;
        ps[i].rng = 0x9e3779b97f4a7c15ull ^ (start + (uint64_t)i * 7919u) ^ ((uint64_t)getpid() << 20);
        if (!ps[i].rng)
            ps[i].rng = 1;
        if (pthread_create(&ps[i].thread, NULL, publisher_main, &ps[i]) != 0)
            die("cannot start a publishing thread");
    }
    for (int i = 0; i < opt.concurrency; i++)
        pthread_join(ps[i].thread, NULL);
    free(ps);
    return (double)(pb_now_ns() - start) / 1e9;
}

/* Wait until every id published OK arrived ("complete"), or idle_s
 * passed without a new one ("idle"), or max_s in all ("cap").  With wait_first, the idle clock starts only
 * at the first delivery: a subscription may take seconds to become live
 * (a Kafka consumer group joining), and the measured run must not start
 * before it is. */
static const char *drain(uint64_t want, double max_s, double idle_s, int wait_first)
{
    uint64_t start = pb_now_ns(), last_change = start, last = UINT64_MAX;
    for (;;) {
        pthread_mutex_lock(&stats_mu);
        uint64_t have = stats.distinct;
        pthread_mutex_unlock(&stats_mu);
        uint64_t now = pb_now_ns();
        if (have >= want)
            return "complete";
        if (have != last) {
            last = have;
            last_change = now;
        }
        if ((double)(now - start) / 1e9 >= max_s)
            return "cap";
        if ((have > 0 || !wait_first) && (double)(now - last_change) / 1e9 >= idle_s)
            return "idle";
        sleep_ns(20000000);
    }
}

/* ---- main ---------------------------------------------------------------- */

static double num_arg(const char *name, const char *s, double min, double max)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= min && v <= max))
        die("%s: '%s' is not a number in %g..%g", name, s, min, max);
    return v;
}

static void parse_args(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"type", required_argument, NULL, 't'},       {"metadata", required_argument, NULL, 'm'},
        {"topic", required_argument, NULL, 'T'},      {"app-id", required_argument, NULL, 'a'},
        {"duration", required_argument, NULL, 'd'},   {"warmup", required_argument, NULL, 'w'},
        {"concurrency", required_argument, NULL, 'c'}, {"rate", required_argument, NULL, 'r'},
        {"max-in-flight", required_argument, NULL, 'f'}, {"drain", required_argument, NULL, 'D'},
        {"idle", required_argument, NULL, 'i'},       {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},             {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
        switch (c) {
        case 't': opt.type = optarg; break;
        case 'm': {
            char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg)
                die("--metadata wants NAME=VALUE, got '%s'", optarg);
            char **n = realloc(opt.names, (opt.n_meta + 1) * sizeof *n);
            if (n)
                opt.names = n;
            char **v = realloc(opt.values, (opt.n_meta + 1) * sizeof *v);
            if (v)
                opt.values = v;
            if (!n || !v)
                die("out of memory");
            *eq = '\0';
            opt.names[opt.n_meta] = optarg;
            opt.values[opt.n_meta] = eq + 1;
            opt.n_meta++;
            break;
        }
        case 'T': opt.topic = optarg; break;
        case 'a': opt.app_id = optarg; break;
        case 'd': opt.duration = num_arg("--duration", optarg, 0.1, 3600); break;
        case 'w': opt.warmup = num_arg("--warmup", optarg, 0, 3600); break;
        case 'c': opt.concurrency = (int)num_arg("--concurrency", optarg, 1, 1024); break;
        case 'r': opt.rate = num_arg("--rate", optarg, 0, 1e7); break;
        case 'f': opt.max_in_flight = (uint32_t)num_arg("--max-in-flight", optarg, 0, 1e6); break;
        case 'D': opt.drain = num_arg("--drain", optarg, 0, 3600); break;
        case 'i': opt.idle = num_arg("--idle", optarg, 0.1, 3600); break;
        case 'v': opt.verbose = 1; break;
        case 'h':
            printf("usage: pubsub-direct [--type T] [--metadata N=V]... [--topic T] [--app-id ID]\n"
                   "       [--duration S] [--warmup S] [--concurrency N] [--rate N]\n"
                   "       [--max-in-flight N] [--drain S] [--idle S] [--verbose] PLUGIN.so\n");
            exit(0);
        default:
            exit(2);
        }
    }
    if (optind != argc - 1)
        die("one plugin .so expected (--help)");
    opt.plugin = argv[optind];
}

static const dapr_component_def *load(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s%s", strchr(opt.plugin, '/') ? "" : "./", opt.plugin);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        die("dlopen: %s", dlerror());
    dapr_plugin_entry_fn entry;
    *(void **)&entry = dlsym(h, DAPR_PLUGIN_ENTRY_SYMBOL);
    if (!entry)
        die("%s: no %s symbol", path, DAPR_PLUGIN_ENTRY_SYMBOL);
    const dapr_plugin_descriptor *d = entry();
    if (!d || d->abi_major != DAPR_PLUGIN_ABI_MAJOR || d->abi_minor > DAPR_PLUGIN_ABI_MINOR)
        die("%s: no descriptor, or an ABI this program does not know", path);
    const dapr_component_def *pick = NULL;
    int n_pubsub = 0;
    for (size_t i = 0; i < d->n_components; i++) {
        const dapr_component_def *c = d->components[i];
        if (!c || c->kind != DAPR_KIND_PUBSUB || !c->type)
            continue;
        n_pubsub++;
        if (!pick && (!opt.type || strcmp(opt.type, c->type) == 0))
            pick = c;
    }
    if (!pick)
        die("%s has no pubsub component%s%s", path, opt.type ? " of type " : "",
            opt.type ? opt.type : "");
    if (!opt.type && n_pubsub > 1)
        die("%s has several pubsub components: choose one with --type", path);
    const dapr_pubsub_vtable *v = pick->vtable;
    if (!v || v->size < offsetof(dapr_pubsub_vtable, unsubscribe) + sizeof(void *) ||
        !v->publish || !v->subscribe || !v->unsubscribe)
        die("%s: %s has an incomplete pubsub vtable", path, pick->type);
    /* Not dlclose()d at the end: the plugin's libraries may keep
     * thread-local destructors, and the process ends anyway. */
    return pick;
}

/* A hung plugin must not hang the benchmark after the result is out. */
static void *watchdog_main(void *arg)
{
    (void)arg;
    sleep(30);
    fprintf(stderr, "pubsub-direct: unsubscribe/close did not finish in 30 s; exiting\n");
    fflush(NULL);
    _exit(3);
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    def = load();
    vt = def->vtable;
    nonblocking = (def->flags & DAPR_COMPONENT_NONBLOCKING) != 0;
    all_meta = calloc(opt.n_meta + 1, sizeof *all_meta);
    if (!all_meta)
        die("out of memory");
    for (size_t i = 0; i < opt.n_meta; i++)
        all_meta[i] = (dapr_kv){opt.names[i], opt.values[i]};
    for (size_t i = 0; i < def->n_metadata_schema; i++) {
        const dapr_metadata_field *f = &def->metadata_schema[i];
        if (f->name && (f->flags & DAPR_META_REQUIRED) && !svc_metadata_get(HOST, f->name))
            die("%s needs metadata %s (--metadata %s=...)", def->type, f->name, f->name);
    }
    pool.n = 8; /* as daprd's default --worker-threads */
    for (int i = 0; i < pool.n; i++)
        if (pthread_create(&pool.threads[i], NULL, pool_main, NULL) != 0)
            die("cannot start a worker thread");
    if (pthread_create(&acker.thread, NULL, ack_main, NULL) != 0)
        die("cannot start the ack thread");
    pb_reset(&stats, 0);

    char errbuf[512] = "";
    dapr_status st = def->init(HOST, &host_api, &inst, errbuf, sizeof errbuf);
    if (st != DAPR_OK)
        die("init of %s failed (status %d): %s", def->type, (int)st, errbuf);

    waiter w;
    waiter_init(&w);
    uint64_t sub_id = 0;
    dapr_pubsub_subscribe_req sreq = {.topic = opt.topic,
                                      .metadata = {NULL, 0},
                                      .handler = handler,
                                      .handler_ctx = NULL,
                                      .max_in_flight = opt.max_in_flight};
    lock_loop();
    vt->subscribe(inst, &sreq, &sub_id, on_result, &w);
    unlock_loop();
    if (waiter_wait(&w, 30) != 0)
        die("subscribe did not complete within 30 s");
    if (w.status != DAPR_OK)
        die("subscribe failed (status %d): %s", (int)w.status, w.message);

    if (opt.warmup > 0) {
        publish_for(opt.warmup, 0, opt.rate);
        drain(run.ok, opt.drain, 2, 1);
    }
    pthread_mutex_lock(&stats_mu);
    pb_reset(&stats, MEASURED_BASE);
    pthread_mutex_unlock(&stats_mu);

    double elapsed = publish_for(opt.duration, MEASURED_BASE, opt.rate);
    const char *drained = drain(run.ok, opt.drain, opt.idle, 0);

    char line[512];
    pthread_mutex_lock(&stats_mu);
    pb_format(&stats, line, sizeof line);
    pthread_mutex_unlock(&stats_mu);
    printf("PB sent=%llu ok=%llu failed=%llu duration_s=%.3f published_per_s=%.1f"
           " pub_p50_us=%.1f pub_p99_us=%.1f drain=%s %s\n",
           (unsigned long long)run.sent, (unsigned long long)run.ok,
           (unsigned long long)run.failed, elapsed, (double)run.ok / elapsed,
           run_quantile_us(0.50), run_quantile_us(0.99), drained, line);
    if (run.failed)
        fprintf(stderr, "pubsub-direct: %llu publishes failed; the first: %s\n",
                (unsigned long long)run.failed, run.first_error);
    fflush(stdout);

    pthread_t dog;
    if (pthread_create(&dog, NULL, watchdog_main, NULL) == 0)
        pthread_detach(dog);
    w.done = 0;
    lock_loop();
    vt->unsubscribe(inst, sub_id, on_result, &w);
    unlock_loop();
    if (waiter_wait(&w, 20) != 0)
        die("unsubscribe did not complete within 20 s");
    waiter_destroy(&w);
    /* Acks still queued go out before close, as daprd's would. */
    pthread_mutex_lock(&acker.mu);
    acker.stop = 1;
    pthread_cond_signal(&acker.cv);
    pthread_mutex_unlock(&acker.mu);
    pthread_join(acker.thread, NULL);
    def->close(inst);

    pthread_mutex_lock(&pool.mu);
    pool.stop = 1;
    pthread_cond_broadcast(&pool.cv);
    pthread_mutex_unlock(&pool.mu);
    for (int i = 0; i < pool.n; i++)
        pthread_join(pool.threads[i], NULL);
    pthread_mutex_lock(&timers_mu);
    while (timers) {
        timer *t = timers;
        pthread_mutex_unlock(&timers_mu);
        fprintf(stderr, "pubsub-direct: a plugin timer was still running after close\n");
        svc_timer_stop(HOST, t->id);
        pthread_mutex_lock(&timers_mu);
    }
    pthread_mutex_unlock(&timers_mu);
    pb_free(&stats);
    free(all_meta);
    free(opt.names);
    free(opt.values);
    return 0;
}
