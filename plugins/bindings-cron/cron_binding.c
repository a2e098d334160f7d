/*
 * cron_binding.c - bindings.cron: an input binding that fires on a
 * schedule (Dapr's cron format: cron_schedule.h), evaluated in UTC.
 *
 * Each firing hands the host an event with an empty body and the metadata
 * Dapr's binding sends: timeZone ("UTC") and readTimeUTC (Go's time
 * format, "2024-05-01 12:00:00.123456789 +0000 UTC").
 *
 * One thread per started instance sleeps until the next activation on the
 * wall clock (pthread_cond_timedwait on CLOCK_REALTIME, so a clock step
 * moves the schedule with it, as cron users expect).  The next activation
 * is computed from the time the thread woke up, as Dapr's cron runner
 * does, so @every intervals do not queue up after a stall.
 *
 * A tick is a fact, not a message: the source cannot redeliver it.  A
 * failed delivery (the app answered non-2xx, or was unreachable) is logged
 * at debug level and forgotten, as in Dapr.  When the host's in-flight
 * bound is reached (a slow app), the tick is skipped rather than queued.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <dapr/plugin.h>

#include "cron_schedule.h"

typedef struct cron_inst {
    dapr_host *host;
    const dapr_host_api *api;
    cron_schedule sched;
    char *spec;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    int running;          /* the thread exists */
    int stop;             /* asks it to leave */
    dapr_binding_handler handler;
    void *handler_ctx;
    uint32_t max_in_flight;
    uint32_t in_flight;   /* ticks handed to the host, not acked yet */
    uint64_t fired, skipped;
} cron_inst;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Go's time.Time.String() of a UTC time: trailing zeros of the
 * nanoseconds dropped, no fraction at all when they are zero. */
static void go_utc_string(const struct timespec *ts, char *out, size_t n)
{
    struct tm tm;
    time_t secs = ts->tv_sec;
    gmtime_r(&secs, &tm);
    char frac[16] = "";
    if (ts->tv_nsec) {
        snprintf(frac, sizeof frac, ".%09ld", ts->tv_nsec);
        size_t l = strlen(frac);
        while (frac[l - 1] == '0')
            frac[--l] = '\0';
    }
    snprintf(out, n, "%04d-%02d-%02d %02d:%02d:%02d%s +0000 UTC", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

static void tick_acked(void *ctx, dapr_status st, const char *msg, dapr_bytes resp)
{
    cron_inst *c = ctx;
    (void)resp;
    if (st != DAPR_OK && c->api->log_enabled(c->host, DAPR_LOG_DEBUG))
        c->api->log(c->host, DAPR_LOG_DEBUG, "schedule fired but the delivery failed: %s",
                    msg ? msg : "error");
    pthread_mutex_lock(&c->mu);
    c->in_flight--;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* Called with mu held; drops it around the handler call. */
static void fire(cron_inst *c)
{
    if (c->in_flight >= c->max_in_flight) {
        c->skipped++;
        if (c->api->log_enabled(c->host, DAPR_LOG_DEBUG))
            c->api->log(c->host, DAPR_LOG_DEBUG, "schedule fired while %u deliveries are still out: skipped",
                        c->in_flight);
        return;
    }
    c->in_flight++;
    c->fired++;
    dapr_binding_handler h = c->handler;
    void *hctx = c->handler_ctx;
    pthread_mutex_unlock(&c->mu);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char when[64];
    go_utc_string(&ts, when, sizeof when);
    const dapr_kv meta[] = {{"timeZone", "UTC"}, {"readTimeUTC", when}};
    dapr_binding_event ev = {.data = {NULL, 0}, .metadata = {meta, 2}, .content_type = NULL};
    if (c->api->log_enabled(c->host, DAPR_LOG_DEBUG))
        c->api->log(c->host, DAPR_LOG_DEBUG, "schedule fired: %s", when);
    h(hctx, &ev, tick_acked, c);

    pthread_mutex_lock(&c->mu);
}

static void *run(void *arg)
{
    cron_inst *c = arg;
    pthread_mutex_lock(&c->mu);
    int64_t next = cron_next(&c->sched, now_ms());
    if (next < 0)
        c->api->log(c->host, DAPR_LOG_WARN, "schedule '%s' has no activation in the next five years", c->spec);
    while (!c->stop && next >= 0) {
        struct timespec until = {.tv_sec = (time_t)(next / 1000), .tv_nsec = (long)(next % 1000) * 1000000};
        int rc = 0;
        while (!c->stop && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&c->cv, &c->mu, &until);
        if (c->stop)
            break;
        int64_t now = now_ms();
        if (now < next)
            continue; /* the clock was stepped back: wait for the same activation */
        fire(c);
        next = cron_next(&c->sched, now);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static void cron_start(void *inst, const dapr_binding_read_req *req, dapr_result_cb cb, void *ctx)
{
    cron_inst *c = inst;
    dapr_result res = {DAPR_OK, NULL};
    pthread_mutex_lock(&c->mu);
    if (c->running) {
        pthread_mutex_unlock(&c->mu);
        res = (dapr_result){DAPR_ERR_INTERNAL, "already started"};
        cb(ctx, &res);
        return;
    }
    c->handler = req->handler;
    c->handler_ctx = req->handler_ctx;
    c->max_in_flight = req->max_in_flight ? req->max_in_flight : 1;
    c->stop = 0;
    if (pthread_create(&c->thread, NULL, run, c) != 0) {
        pthread_mutex_unlock(&c->mu);
        res = (dapr_result){DAPR_ERR_INTERNAL, "cannot start the scheduler thread"};
        cb(ctx, &res);
        return;
    }
    c->running = 1;
    pthread_mutex_unlock(&c->mu);
    c->api->log(c->host, DAPR_LOG_DEBUG, "schedule '%s' started", c->spec);
    cb(ctx, &res);
}

static void cron_stop(void *inst, dapr_result_cb cb, void *ctx)
{
    cron_inst *c = inst;
    pthread_mutex_lock(&c->mu);
    int running = c->running;
    c->stop = 1;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    if (running)
        pthread_join(c->thread, NULL);
    pthread_mutex_lock(&c->mu);
    c->running = 0;
    pthread_mutex_unlock(&c->mu);
    dapr_result res = {DAPR_OK, NULL};
    cb(ctx, &res);
}

static void inst_free(cron_inst *c)
{
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c->spec);
    free(c);
}

static dapr_status cron_init(dapr_host *host, const dapr_host_api *api, void **instance, char *errbuf,
                             size_t errlen)
{
    const char *spec = api->metadata_get(host, "schedule");
    if (!spec || !*spec) {
        snprintf(errbuf, errlen, "schedule not set");
        return DAPR_ERR_INVALID_ARGUMENT;
    }
    cron_inst *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(errbuf, errlen, "out of memory");
        return DAPR_ERR_INTERNAL;
    }
    char why[256] = "";
    if (cron_parse(spec, &c->sched, why, sizeof why) != 0) {
        snprintf(errbuf, errlen, "invalid schedule format '%s': %s", spec, why);
        free(c);
        return DAPR_ERR_INVALID_ARGUMENT;
    }
    c->host = host;
    c->api = api;
    c->spec = strdup(spec);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL); /* CLOCK_REALTIME: activations are wall-clock times */
    if (!c->spec) {
        inst_free(c);
        snprintf(errbuf, errlen, "out of memory");
        return DAPR_ERR_INTERNAL;
    }
    *instance = c;
    return DAPR_OK;
}

static void cron_close(void *inst)
{
    cron_inst *c = inst;
    /* The host stopped the binding and saw every ack before closing. */
    pthread_mutex_lock(&c->mu);
    c->stop = 1;
    int running = c->running;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    if (running)
        pthread_join(c->thread, NULL);
    inst_free(c);
}

/* ---- descriptor ------------------------------------------------------------ */

static const dapr_metadata_field cron_schema[] = {
    {"schedule", DAPR_META_STRING, DAPR_META_REQUIRED, NULL,
     "when to fire: 5 or 6 cron fields (seconds first when 6), @every <duration>, @hourly, @daily, ... (UTC)"},
};

static const dapr_input_binding_vtable cron_vtable = {
    .size = sizeof(dapr_input_binding_vtable),
    .start = cron_start,
    .stop = cron_stop,
};

static const dapr_component_def cron_component = {
    .size = sizeof(dapr_component_def),
    .kind = DAPR_KIND_INPUT_BINDING,
    .type = "bindings.cron",
    .version = "v1",
    .features = 0,
    .flags = 0, /* stop joins the scheduler thread: run on the worker pool */
    .metadata_schema = cron_schema,
    .n_metadata_schema = sizeof cron_schema / sizeof *cron_schema,
    .init = cron_init,
    .close = cron_close,
    .vtable = &cron_vtable,
};

static const dapr_component_def *const cron_components[] = {&cron_component};

static const dapr_plugin_descriptor cron_descriptor = {
    DAPR_PLUGIN_DESCRIPTOR_HEADER,
    .name = "bindings-cron",
    .version = "1.0.0",
    .description = "bindings.cron: input binding firing on a cron schedule (UTC)",
    .components = cron_components,
    .n_components = 1,
};

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void);

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void)
{
    return &cron_descriptor;
}
