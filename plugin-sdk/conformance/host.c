/*
 * host.c - the services table the kit hands to the plugin under test.
 *
 * It behaves like daprd's: logs go to stderr, metadata comes from the
 * --metadata options (names matched case-insensitively, schema defaults
 * as fallback), submit() runs work on a small bounded thread pool, timers
 * run on their own thread, metrics are accepted and dropped.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "conformance.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- a small thread pool ------------------------------------------ */

typedef struct task {
    dapr_task_fn fn;
    void *arg;
    struct task *next;
} task;

typedef struct pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    task *head, *tail;
    size_t len, cap;           /* cap 0: unbounded */
    int stop;
    pthread_t *threads;
    int n_threads;
} pool;

static void *pool_worker(void *arg)
{
    pool *p = arg;

    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->head && !p->stop)
            pthread_cond_wait(&p->cv, &p->mu);
        if (!p->head)
            break; /* stopping and drained */
        task *t = p->head;
        p->head = t->next;
        if (!p->head)
            p->tail = NULL;
        p->len--;
        pthread_mutex_unlock(&p->mu);
        t->fn(t->arg);
        free(t);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void pool_init(pool *p, int n, size_t cap)
{
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->cap = cap;
    p->threads = calloc((size_t)n, sizeof *p->threads);
    if (!p->threads) {
        fprintf(stderr, "dapr-plugin-conformance: out of memory\n");
        exit(2);
    }
    for (int i = 0; i < n; i++) {
        if (pthread_create(&p->threads[i], NULL, pool_worker, p) != 0) {
            fprintf(stderr, "dapr-plugin-conformance: cannot start a thread\n");
            exit(2);
        }
        p->n_threads++;
    }
}

static int pool_push(pool *p, dapr_task_fn fn, void *arg)
{
    task *t = malloc(sizeof *t);
    if (!t)
        return -1;
    t->fn = fn;
    t->arg = arg;
    t->next = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->stop || (p->cap && p->len >= p->cap)) {
        pthread_mutex_unlock(&p->mu);
        free(t);
        return -1;
    }
    if (p->tail)
        p->tail->next = t;
    else
        p->head = t;
    p->tail = t;
    p->len++;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

/* Runs what is queued, then joins the workers. */
static void pool_destroy(pool *p)
{
    if (!p->threads)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    free(p->threads);
    p->threads = NULL;
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
}

/* ---- timers: one thread each, so a slow run never piles up -------- */

typedef struct timer {
    uint64_t id;
    uint64_t interval_ms;
    dapr_task_fn fn;
    void *arg;
    pthread_t thread;
    int stop;
    int self_stopped;          /* stopped from inside fn: thread frees it */
    pthread_cond_t cv;
    struct timer *next;
} timer;

static pthread_mutex_t timers_mu = PTHREAD_MUTEX_INITIALIZER;
static timer *timers;
static uint64_t next_timer_id = 1;
static int live_timers_at_shutdown;

static void *timer_thread(void *arg)
{
    timer *t = arg;

    pthread_mutex_lock(&timers_mu);
    while (!t->stop) {
        struct timespec deadline;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += (time_t)(t->interval_ms / 1000);
        deadline.tv_nsec += (long)(t->interval_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        int rc = 0;
        while (!t->stop && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&t->cv, &timers_mu, &deadline);
        if (t->stop)
            break;
        pthread_mutex_unlock(&timers_mu);
        t->fn(t->arg);
        pthread_mutex_lock(&timers_mu);
    }
    int self_stopped = t->self_stopped;
    pthread_mutex_unlock(&timers_mu);
    if (self_stopped) {
        pthread_cond_destroy(&t->cv);
        free(t);
    }
    return NULL;
}

/* ---- the services table ------------------------------------------- */

static const dapr_component_def *cur_def;
static dapr_kv *all_meta;
static pool submit_pool;
static pool op_pool;

static void svc_log(dapr_host *host, dapr_log_level level, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    if (level < DAPR_LOG_WARN && !ck_opt.verbose)
        return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* One fprintf per line, so lines from several threads do not mix. */
    fprintf(stderr, "# plugin %s: %s\n",
            (unsigned)level < 4 ? names[level] : "?", line);
}

static int svc_log_enabled(dapr_host *host, dapr_log_level level)
{
    return level >= DAPR_LOG_WARN || ck_opt.verbose;
}

static const char *svc_metadata_get(dapr_host *host, const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < ck_opt.n_meta; i++)
        if (strcasecmp(ck_opt.meta_names[i], name) == 0)
            return ck_opt.meta_values[i];
    for (size_t i = 0; cur_def && i < cur_def->n_metadata_schema; i++) {
        const dapr_metadata_field *f = &cur_def->metadata_schema[i];
        if (f->name && strcasecmp(f->name, name) == 0)
            return f->default_value;
    }
    return NULL;
}

static dapr_kvs svc_metadata_all(dapr_host *host)
{
    dapr_kvs kvs = {all_meta, ck_opt.n_meta};
    return kvs;
}

static const char *svc_component_name(dapr_host *host) { return "conformance"; }
static const char *svc_app_id(dapr_host *host) { return "conformance"; }

static int svc_submit(dapr_host *host, dapr_task_fn fn, void *arg)
{
    if (!fn)
        return -1;
    return pool_push(&submit_pool, fn, arg);
}

static uint64_t svc_timer_start(dapr_host *host, uint64_t interval_ms,
                                dapr_task_fn fn, void *arg)
{
    if (!fn || interval_ms == 0)
        return 0;
    timer *t = calloc(1, sizeof *t);
    if (!t)
        return 0;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->cv, &ca);
    pthread_condattr_destroy(&ca);
    t->interval_ms = interval_ms;
    t->fn = fn;
    t->arg = arg;

    pthread_mutex_lock(&timers_mu);
    t->id = next_timer_id++;
    if (pthread_create(&t->thread, NULL, timer_thread, t) != 0) {
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

static void stop_timer(timer *t)
{
    /* Called with timers_mu held and t already unlinked. */
    t->stop = 1;
    pthread_cond_signal(&t->cv);
    if (pthread_equal(t->thread, pthread_self())) {
        /* timer_stop from inside the timer's own fn: it cannot join
         * itself; the thread frees the timer when fn returns. */
        t->self_stopped = 1;
        pthread_detach(t->thread);
        return;
    }
    pthread_mutex_unlock(&timers_mu);
    pthread_join(t->thread, NULL);
    pthread_cond_destroy(&t->cv);
    free(t);
    pthread_mutex_lock(&timers_mu);
}

static void svc_timer_stop(dapr_host *host, uint64_t timer_id)
{
    pthread_mutex_lock(&timers_mu);
    for (timer **pp = &timers; *pp; pp = &(*pp)->next) {
        if ((*pp)->id == timer_id) {
            timer *t = *pp;
            *pp = t->next;
            stop_timer(t);
            break;
        }
    }
    pthread_mutex_unlock(&timers_mu);
}

static void svc_metric_add(dapr_host *host, const char *name, double value) {}

static const dapr_host_api api = {
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

/* The host handle is opaque to plugins; any unique address will do. */
static char host_token;

dapr_host *host_handle(void) { return (dapr_host *)&host_token; }
const dapr_host_api *host_api(void) { return &api; }

void host_setup(const dapr_component_def *def)
{
    cur_def = def;
    all_meta = calloc(ck_opt.n_meta ? ck_opt.n_meta : 1, sizeof *all_meta);
    if (!all_meta) {
        fprintf(stderr, "dapr-plugin-conformance: out of memory\n");
        exit(2);
    }
    for (size_t i = 0; i < ck_opt.n_meta; i++) {
        all_meta[i].name = ck_opt.meta_names[i];
        all_meta[i].value = ck_opt.meta_values[i];
    }
    pool_init(&submit_pool, 4, 4096);
    /* Operations run here.  Blocking plugins: enough workers for every
     * test thread to have one operation in flight.  Non-blocking plugins
     * (DAPR_COMPONENT_NONBLOCKING): one thread, as daprd's event loop. */
    int nonblocking = (def->flags & DAPR_COMPONENT_NONBLOCKING) != 0;
    pool_init(&op_pool, nonblocking ? 1 : ck_opt.threads + 2, 0);
}

void host_run_op(dapr_task_fn fn, void *arg)
{
    if (pool_push(&op_pool, fn, arg) != 0)
        fn(arg); /* cannot happen with an unbounded queue; stay correct */
}

char *host_missing_required(void)
{
    char *out = NULL;
    size_t len = 0;
    for (size_t i = 0; cur_def && i < cur_def->n_metadata_schema; i++) {
        const dapr_metadata_field *f = &cur_def->metadata_schema[i];
        if (!(f->flags & DAPR_META_REQUIRED) || !f->name)
            continue;
        int given = 0;
        for (size_t j = 0; j < ck_opt.n_meta; j++)
            if (strcasecmp(ck_opt.meta_names[j], f->name) == 0)
                given = 1;
        if (given)
            continue;
        size_t add = strlen(f->name) + 2;
        char *n = realloc(out, len + add + 1);
        if (!n)
            break;
        out = n;
        len += (size_t)sprintf(out + len, "%s%s", len ? ", " : "", f->name);
    }
    return out;
}

int host_live_timers(void) { return live_timers_at_shutdown; }

/* After close: drain the pools and stop the timers the plugin forgot. */
void host_shutdown(void)
{
    pool_destroy(&op_pool);
    pool_destroy(&submit_pool);
    pthread_mutex_lock(&timers_mu);
    while (timers) {
        timer *t = timers;
        timers = t->next;
        live_timers_at_shutdown++;
        stop_timer(t);
    }
    pthread_mutex_unlock(&timers_mu);
    free(all_meta);
    all_meta = NULL;
}
