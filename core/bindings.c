/*
 * bindings.c - input bindings (reference §5.2) and the `direction` rule.
 *
 * Each input binding component goes through a small state machine on the
 * loop thread:
 *
 *   IDLE --(app healthy)--> PROBING --(2xx/405)--> STARTING --> RUNNING
 *     ^                        |  (other status, error, timeout)      |
 *     |                        v                                      |
 *     +--(app unhealthy)-- UNSUBSCRIBED      (app unhealthy) STOPPING <+
 *     +------------------------------------------------------------+
 *
 * PROBING is Dapr's discovery: OPTIONS /{route} on the app channel, where
 * 2xx or 405 means the app takes the events; `direction` listing "input"
 * skips it.  Like Dapr, the sidecar stops reading while the app is
 * unhealthy and starts again (re-probing) when it recovers; a health timer
 * re-evaluates every binding, and every finished start/stop/probe does too.
 *
 * An event travels: plugin thread -> handler() copies it and posts it to
 * the loop -> deliver() POSTs it to the app with the metadata as headers
 * and Content-Type application/json -> the app's status becomes the ack
 * (2xx: DAPR_OK with the body).  Back-pressure: the plugin is told how many
 * unacked events it may hand over (--app-max-concurrency when set, at most
 * MAX_IN_FLIGHT); the host acks anything beyond that with
 * DAPR_ERR_UNAVAILABLE at once rather than queueing without bound.
 */
#include "config.h"
#include "bindings.h"
#include "app_channel.h"
#include "component.h"
#include "kv_list.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "resiliency.h"
#include "plugin_loader.h"
#include "runtime.h"
#include "trace.h"
#include "tracing.h"
#include "util.h"

#include <ctype.h>
#include <event2/event.h>
#include <event2/keyvalq_struct.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <time.h>

#define SCOPE "dapr.runtime.processor.binding"
#define MAX_IN_FLIGHT 32          /* unacked events per input binding */
#define HEALTH_RECHECK_MS 500     /* how often the app's health is looked at */
#define TEARDOWN_WAIT_MS 5000     /* bound on waiting for a plugin's stop at exit */

/* ---- direction ---------------------------------------------------------- */

/* Does a `direction` value ("input, output") list dir?  Dapr splits on
 * commas, trims and lower-cases each entry. */
static int value_lists(const char *value, const char *dir)
{
    size_t dl = strlen(dir);
    for (const char *p = value; p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *s = p;
        while (n && isspace((unsigned char)*s)) { s++; n--; }
        while (n && isspace((unsigned char)s[n - 1])) n--;
        if (n == dl && strncasecmp(s, dir, n) == 0)
            return 1;
        p = end ? end + 1 : NULL;
    }
    return 0;
}

static int kvs_direction_lists(const dapr_kv *meta, size_t n, const char *dir, int *found)
{
    *found = 0;
    for (size_t i = 0; i < n; i++)
        if (meta[i].name && meta[i].value && strcasecmp(meta[i].name, "direction") == 0) {
            *found = 1;
            if (value_lists(meta[i].value, dir))
                return 1;
        }
    return 0;
}

size_t bindings_kinds_of_spec(const component_spec *s, dapr_component_kind kinds[2])
{
    const dapr_component_def *in = plugins_find_type(DAPR_KIND_INPUT_BINDING, s->type, s->version, NULL);
    const dapr_component_def *out = plugins_find_type(DAPR_KIND_OUTPUT_BINDING, s->type, s->version, NULL);
    if (out && out->kind != DAPR_KIND_OUTPUT_BINDING)
        out = NULL; /* the loader's fallback found the input definition */
    if (!in && !out) {
        kinds[0] = DAPR_KIND_OUTPUT_BINDING; /* the caller reports the missing plugin */
        return 1;
    }
    int found = 0, want_in = 0, want_out = 0;
    for (size_t i = 0; i < s->n_meta; i++) {
        const manifest_meta *m = &s->meta[i];
        if (!m->value || strcasecmp(m->name, "direction") != 0)
            continue;
        found = 1;
        want_in |= value_lists(m->value, "input");
        want_out |= value_lists(m->value, "output");
    }
    size_t n = 0;
    if (in && (!found || want_in))
        kinds[n++] = DAPR_KIND_INPUT_BINDING;
    if (out && (!found || want_out))
        kinds[n++] = DAPR_KIND_OUTPUT_BINDING;
    if (n == 0)
        log_warn(SCOPE, "%s: component '%s' (%s) is not used: its direction metadata lists no direction "
                 "the type supports (%s)", s->file, s->name, s->type,
                 in && out ? "input, output" : in ? "input" : "output");
    return n;
}

/* ---- input bindings ------------------------------------------------------ */

enum ib_state { IB_IDLE, IB_PROBING, IB_STARTING, IB_RUNNING, IB_STOPPING, IB_UNSUBSCRIBED };

struct probe;

struct ib {
    component *comp;
    char *route;              /* as configured (for messages) */
    char *uri;                /* "/route" */
    int explicit_input;       /* `direction` lists input: no OPTIONS probe */
    enum ib_state state;
    uint32_t max_in_flight;
    size_t inflight;          /* events at the app, not answered yet */
    int counted;              /* still counts toward start-up's done() */
    struct probe *probe;      /* the OPTIONS in flight, if any */
};

struct delivery {
    struct ib *b;
    unsigned char *data;
    size_t len;
    kv_list meta;
    dapr_binding_ack_fn ack;
    void *ack_ctx;
    LIST_ENTRY(delivery) link; /* in flight at the app */
    struct timespec sent_at;   /* metrics: when the app was called */
    resil_run *rs;             /* the binding's inbound resiliency policy, or NULL */
};

struct probe {
    struct ib *b;             /* NULL once abandoned (timed out) */
    struct event *timer;
    LIST_ENTRY(probe) link;
};

static struct ib *ibs;
static size_t n_ibs;
static int stopping;
static int64_t options_timeout_ms = 3000;
static void (*start_done)(void);
static size_t start_pending;
static size_t ops_running;    /* start/stop calls on plugins not completed */
static size_t total_inflight;
static struct event *health_timer;
static LIST_HEAD(, delivery) at_app = LIST_HEAD_INITIALIZER(at_app);
static LIST_HEAD(, probe) probes = LIST_HEAD_INITIALIZER(probes);

static const dapr_input_binding_vtable *vt(const struct ib *b)
{
    return (const dapr_input_binding_vtable *)b->comp->def->vtable;
}

static void evaluate(struct ib *b);

/* One binding settled its first attempt: start-up may go on when all did. */
static void first_done(struct ib *b)
{
    if (!b->counted)
        return;
    b->counted = 0;
    if (--start_pending == 0 && start_done) {
        void (*done)(void) = start_done;
        start_done = NULL;
        done();
    }
}

/* ---- deliveries ---------------------------------------------------------- */

static void delivery_finish(struct delivery *d, dapr_status st, const char *msg, const void *resp, size_t len)
{
    dapr_bytes r = {.ptr = resp, .len = resp ? len : 0};
    d->ack(d->ack_ctx, st, msg, r);
    kv_list_free(&d->meta);
    free(d->data);
    free(d);
}

static void on_app_answer(void *arg, const http_response *r)
{
    struct delivery *d = arg;
    LIST_REMOVE(d, link);
    d->b->inflight--;
    total_inflight--;
    size_t len = r->body ? evbuffer_get_length(r->body) : 0;
    const void *body = len ? evbuffer_pullup(r->body, -1) : NULL;
    char msg[200];
    metrics_input_binding(d->b->comp->name, r->status >= 200 && r->status < 300,
                          metrics_elapsed_ms(&d->sent_at, NULL));
    if (d->rs) {
        int failed = !(r->status >= 200 && r->status < 300);
        if (resil_complete(d->rs, failed, r->status, 0) != RESIL_FINISH)
            return; /* retried later, or a cancelled attempt */
        d->rs = NULL;
    }
    if (r->status >= 200 && r->status < 300) {
        delivery_finish(d, DAPR_OK, NULL, body, len);
    } else if (r->status) {
        snprintf(msg, sizeof msg, "the app answered HTTP %d", r->status);
        log_debug(SCOPE, "error from app consumer for binding [%s]: %s", d->b->comp->name, msg);
        delivery_finish(d, DAPR_ERR_INTERNAL, msg, body, len);
    } else {
        snprintf(msg, sizeof msg, "the app could not be reached: %s", r->error ? r->error : "error");
        log_debug(SCOPE, "error from app consumer for binding [%s]: %s", d->b->comp->name, msg);
        delivery_finish(d, DAPR_ERR_UNAVAILABLE, msg, NULL, 0);
    }
}

static int header_name_ok(const char *n)
{
    if (!*n)
        return 0;
    for (const char *p = n; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f || strchr("()<>@,;:\\\"/[]?={}", *p))
            return 0;
    return 1;
}

static int header_value_ok(const char *v)
{
    for (const char *p = v; *p; p++)
        if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
            return 0;
    return 1;
}

/* Event metadata the app sees as headers: everything except what the
 * request itself defines. */
static int meta_is_header(const dapr_kv *kv)
{
    static const char *reserved[] = {"Content-Type", "Content-Length", "Transfer-Encoding", "Host",
                                     "Connection", "traceparent", "tracestate", "dapr-api-token"};
    if (!header_name_ok(kv->name) || !header_value_ok(kv->value))
        return 0;
    for (size_t i = 0; i < sizeof reserved / sizeof *reserved; i++)
        if (strcasecmp(kv->name, reserved[i]) == 0)
            return 0;
    return 1;
}

static void send_event(void *arg);

static int event_cancel(void *arg)
{
    app_channel_cancel(arg); /* on_app_answer() runs inside */
    return 1;
}

static void event_fail(void *arg, const char *err, int late_pending)
{
    (void)late_pending; /* app calls are always cancelled */
    struct delivery *d = arg;
    d->rs = NULL;
    delivery_finish(d, DAPR_ERR_UNAVAILABLE, err, NULL, 0);
}

static const resil_hooks event_hooks = {send_event, event_cancel, event_fail};

static void deliver(void *arg)
{
    struct delivery *d = arg;
    struct ib *b = d->b;
    if (stopping) {
        delivery_finish(d, DAPR_ERR_UNAVAILABLE, "daprd is shutting down", NULL, 0);
        return;
    }
    if (!app_channel_healthy()) {
        delivery_finish(d, DAPR_ERR_UNAVAILABLE, "the app is not healthy", NULL, 0);
        return;
    }
    if (b->inflight >= b->max_in_flight) {
        log_debug(SCOPE, "input binding %s: more than %u events in flight: event refused", b->comp->name,
                  b->max_in_flight);
        delivery_finish(d, DAPR_ERR_UNAVAILABLE, "too many events in flight", NULL, 0);
        return;
    }
    /* The binding's inbound policy (timeouts, retries, breaker). */
    resil_policy pol;
    if (resiliency_component_policy(b->comp->name, RESIL_KIND_BINDING, 1, &pol)) {
        d->rs = resil_run_new(&pol, NULL, &event_hooks, d);
        resil_run_go(d->rs);
        return;
    }
    send_event(d);
}

/* One attempt: POST the event to the app. */
static void send_event(void *arg)
{
    struct delivery *d = arg;
    struct ib *b = d->b;
    struct evkeyvalq headers;
    TAILQ_INIT(&headers);
    for (size_t i = 0; i < d->meta.n; i++)
        if (meta_is_header(&d->meta.items[i]))
            evhttp_add_header(&headers, d->meta.items[i].name, d->meta.items[i].value);
    evhttp_add_header(&headers, "Content-Type", "application/json");
    /* A span per event, child of the event's own trace context if any. */
    const char *ts = kv_list_get(&d->meta, "tracestate");
    /* Dapr's "bindings/{name}" span; the app call below adopts it. */
    char next[TRACEPARENT_LEN + 1], span_name[300];
    snprintf(span_name, sizeof span_name, "bindings/%s", b->comp->name);
    const char *attrs[] = {"db.name", b->comp->name, "rpc.service", "Dapr", "db.system", "bindings",
                           "db.connection_string", b->uri, NULL, NULL};
    tracing_callback_span(span_name, kv_list_get(&d->meta, "traceparent"), ts, attrs, next);
    evhttp_add_header(&headers, "traceparent", next);
    if (ts && *ts && header_value_ok(ts))
        evhttp_add_header(&headers, "tracestate", ts);
    struct evbuffer *buf = evbuffer_new();
    if (d->len)
        evbuffer_add(buf, d->data, d->len);
    b->inflight++;
    total_inflight++;
    LIST_INSERT_HEAD(&at_app, d, link);
    clock_gettime(CLOCK_MONOTONIC, &d->sent_at);
    http_client_tag_next(d);
    int rc = app_channel_send(EVHTTP_REQ_POST, b->uri, &headers, buf, on_app_answer, d);
    http_client_tag_next(NULL);
    evhttp_clear_headers(&headers);
    evbuffer_free(buf);
    if (rc != 0) {
        LIST_REMOVE(d, link);
        b->inflight--;
        total_inflight--;
        if (resil_complete(d->rs, 1, 0, 1) == RESIL_FINISH) {
            d->rs = NULL;
            delivery_finish(d, DAPR_ERR_UNAVAILABLE, "the app channel is saturated", NULL, 0);
        }
    }
}

/* The plugin's handler: any thread.  Copy and hand to the loop. */
static void handler(void *ctx, const dapr_binding_event *ev, dapr_binding_ack_fn ack, void *ack_ctx)
{
    struct delivery *d = xcalloc(1, sizeof *d);
    d->b = ctx;
    d->len = ev->data.ptr ? ev->data.len : 0;
    d->data = xmalloc(d->len + 1);
    if (d->len)
        memcpy(d->data, ev->data.ptr, d->len);
    d->meta = kv_list_copy(ev->metadata);
    d->ack = ack;
    d->ack_ctx = ack_ctx;
    loop_post(deliver, d);
}

/* ---- start and stop ------------------------------------------------------ */

struct op_job {
    struct ib *b;
    uint32_t max_in_flight;
    dapr_status st;
    char *msg;
};

static void op_job_free(struct op_job *j)
{
    free(j->msg);
    free(j);
}

static void start_finish(void *arg)
{
    struct op_job *j = arg;
    struct ib *b = j->b;
    atomic_fetch_sub(&b->comp->inflight, 1);
    ops_running--;
    if (j->st == DAPR_OK) {
        b->state = IB_RUNNING;
        log_info(SCOPE, "input binding %s (%s) started: events go to %s", b->comp->name, b->comp->type, b->uri);
    } else {
        /* As Dapr: logged, and the binding stays off until the app goes
         * through unhealthy and healthy again. */
        log_error(SCOPE, "error reading from input binding %s: %s", b->comp->name, j->msg ? j->msg : "error");
        b->state = IB_UNSUBSCRIBED;
    }
    op_job_free(j);
    first_done(b);
    evaluate(b);
}

static void op_done(void *ctx, const dapr_result *res, void (*finish)(void *))
{
    struct op_job *j = ctx;
    j->st = res->status;
    j->msg = res->status != DAPR_OK && res->message ? xstrdup(res->message) : NULL;
    loop_post(finish, j);
}

static void started(void *ctx, const dapr_result *res) { op_done(ctx, res, start_finish); }

static void start_run(void *arg)
{
    struct op_job *j = arg;
    dapr_binding_read_req req = {.handler = handler, .handler_ctx = j->b, .max_in_flight = j->max_in_flight};
    vt(j->b)->start(j->b->comp->instance, &req, started, j);
}

static void begin_start(struct ib *b)
{
    struct op_job *j = xcalloc(1, sizeof *j);
    j->b = b;
    j->max_in_flight = b->max_in_flight;
    b->state = IB_STARTING;
    ops_running++;
    atomic_fetch_add(&b->comp->inflight, 1);
    if (component_dispatch(b->comp, start_run, j) != 0) {
        /* Pool saturated: the health timer tries again. */
        atomic_fetch_sub(&b->comp->inflight, 1);
        ops_running--;
        op_job_free(j);
        b->state = IB_IDLE;
        log_warn(SCOPE, "input binding %s: worker pool saturated, start retried later", b->comp->name);
        first_done(b);
    }
}

static void stop_finish(void *arg)
{
    struct op_job *j = arg;
    struct ib *b = j->b;
    atomic_fetch_sub(&b->comp->inflight, 1);
    ops_running--;
    if (j->st != DAPR_OK)
        log_warn(SCOPE, "stopping input binding %s: %s", b->comp->name, j->msg ? j->msg : "error");
    b->state = IB_IDLE;
    log_info(SCOPE, "input binding %s stopped%s", b->comp->name, stopping ? "" : " while the app is unhealthy");
    op_job_free(j);
    evaluate(b);
}

static void stopped(void *ctx, const dapr_result *res) { op_done(ctx, res, stop_finish); }

static void stop_run(void *arg)
{
    struct op_job *j = arg;
    vt(j->b)->stop(j->b->comp->instance, stopped, j);
}

static void begin_stop(struct ib *b)
{
    struct op_job *j = xcalloc(1, sizeof *j);
    j->b = b;
    b->state = IB_STOPPING;
    ops_running++;
    atomic_fetch_add(&b->comp->inflight, 1);
    if (component_dispatch(b->comp, stop_run, j) != 0) {
        atomic_fetch_sub(&b->comp->inflight, 1);
        ops_running--;
        op_job_free(j);
        b->state = IB_RUNNING; /* the health timer tries again */
    }
}

/* ---- discovery ------------------------------------------------------------- */

static void probe_free(struct probe *p)
{
    LIST_REMOVE(p, link);
    if (p->timer)
        event_free(p->timer);
    free(p);
}

static void probe_result(struct ib *b, int subscribed, const char *error)
{
    b->probe = NULL;
    if (error) {
        log_error(SCOPE, "could not invoke OPTIONS method on input binding subscription endpoint \"%s\": %s",
                  b->route, error);
        b->state = IB_UNSUBSCRIBED;
    } else if (!subscribed) {
        log_info(SCOPE, "app has not subscribed to binding %s.", b->comp->name);
        b->state = IB_UNSUBSCRIBED;
    } else if (stopping || !app_channel_healthy()) {
        b->state = IB_IDLE;
    } else {
        begin_start(b);
        return; /* start_finish settles the start-up count */
    }
    first_done(b);
    evaluate(b);
}

static void on_probe_answer(void *arg, const http_response *r)
{
    struct probe *p = arg;
    struct ib *b = p->b;
    probe_free(p);
    if (!b)
        return; /* timed out earlier */
    if (!r->status) {
        probe_result(b, 0, r->error ? r->error : "error");
        return;
    }
    log_debug(SCOPE, "OPTIONS %s answered %d", b->uri, r->status);
    probe_result(b, (r->status >= 200 && r->status < 300) || r->status == 405, NULL);
}

static void probe_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    struct probe *p = arg;
    struct ib *b = p->b;
    /* The request stays with the app channel; its answer is ignored. */
    event_free(p->timer);
    p->timer = NULL;
    p->b = NULL;
    if (!b)
        return; /* abandoned at shutdown */
    char why[96];
    snprintf(why, sizeof why, "no answer within %lld ms (--app-binding-options-timeout)",
             (long long)options_timeout_ms);
    probe_result(b, 0, why);
}

static void begin_probe(struct ib *b)
{
    struct probe *p = xcalloc(1, sizeof *p);
    p->b = b;
    LIST_INSERT_HEAD(&probes, p, link);
    b->probe = p;
    b->state = IB_PROBING;
    /* The timer first: the answer may come before app_channel_send
     * returns (an immediate failure), and it frees the probe. */
    p->timer = evtimer_new(loop_base(), probe_timeout, p);
    struct timeval tv = {.tv_sec = (time_t)(options_timeout_ms / 1000),
                         .tv_usec = (suseconds_t)((options_timeout_ms % 1000) * 1000)};
    evtimer_add(p->timer, &tv);
    struct evkeyvalq h;
    TAILQ_INIT(&h);
    evhttp_add_header(&h, "Content-Type", "application/json");
    int rc = app_channel_send(EVHTTP_REQ_OPTIONS, b->uri, &h, NULL, on_probe_answer, p);
    evhttp_clear_headers(&h);
    if (rc != 0) {
        probe_free(p);
        probe_result(b, 0, "the app channel is saturated");
    }
}

/* ---- the state machine --------------------------------------------------- */

static void evaluate(struct ib *b)
{
    int want = !stopping && app_channel_healthy();
    switch (b->state) {
    case IB_IDLE:
        if (!want) {
            first_done(b);
        } else if (b->explicit_input) {
            begin_start(b);
        } else {
            begin_probe(b);
        }
        break;
    case IB_RUNNING:
        if (!want)
            begin_stop(b);
        break;
    case IB_UNSUBSCRIBED:
        /* Re-probed after the app went unhealthy and recovered, as Dapr
         * re-runs its discovery then. */
        if (!want && !stopping)
            b->state = IB_IDLE;
        break;
    default:
        break; /* an operation is running: evaluated again when it ends */
    }
}

static void health_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what; (void)arg;
    for (size_t i = 0; i < n_ibs; i++)
        evaluate(&ibs[i]);
}

void bindings_start(int64_t timeout_ms, void (*done)(void))
{
    options_timeout_ms = timeout_ms > 0 ? timeout_ms : 3000;
    size_t n = components_count_kind(DAPR_KIND_INPUT_BINDING);
    if (n == 0) {
        done();
        return;
    }
    if (!app_channel_enabled()) {
        log_warn(SCOPE, "failed to read from bindings: app channel not initialized (no --app-port)");
        done();
        return;
    }
    int mc = app_channel_max_concurrency();
    uint32_t bound = mc > 0 && mc < MAX_IN_FLIGHT ? (uint32_t)mc : MAX_IN_FLIGHT;
    ibs = xcalloc(n, sizeof *ibs);
    for (size_t i = 0; i < components_count(); i++) {
        component *c = component_at(i);
        if (c->kind != DAPR_KIND_INPUT_BINDING)
            continue;
        struct ib *b = &ibs[n_ibs++];
        b->comp = c;
        /* Dapr matches the `route` name exactly (case-sensitive). */
        const char *route = NULL;
        for (size_t k = 0; k < c->n_meta && !route; k++)
            if (strcmp(c->meta[k].name, "route") == 0 && c->meta[k].value && *c->meta[k].value)
                route = c->meta[k].value;
        b->route = xstrdup(route ? route : c->name);
        b->uri = b->route[0] == '/' ? xstrdup(b->route) : xasprintf("/%s", b->route);
        int found;
        b->explicit_input = kvs_direction_lists(c->meta, c->n_meta, "input", &found);
        b->max_in_flight = bound;
        b->state = IB_IDLE;
        b->counted = 1;
    }
    start_done = done;
    start_pending = n_ibs + 1; /* held until every binding was looked at */
    for (size_t i = 0; i < n_ibs; i++)
        evaluate(&ibs[i]);
    health_timer = event_new(loop_base(), -1, EV_PERSIST, health_tick, NULL);
    struct timeval tv = {.tv_sec = 0, .tv_usec = HEALTH_RECHECK_MS * 1000};
    event_add(health_timer, &tv);
    if (--start_pending == 0 && start_done) {
        start_done = NULL;
        done();
    }
}

void bindings_stop(void)
{
    if (stopping)
        return;
    stopping = 1;
    for (size_t i = 0; i < n_ibs; i++) {
        struct ib *b = &ibs[i];
        if (b->probe) {
            /* Its answer no longer matters. */
            if (b->probe->timer)
                event_free(b->probe->timer);
            b->probe->timer = NULL;
            b->probe->b = NULL;
            b->probe = NULL;
            b->state = IB_IDLE;
        }
        evaluate(b);
    }
}

size_t bindings_inflight(void) { return total_inflight + ops_running; }

static int any_busy(void)
{
    for (size_t i = 0; i < n_ibs; i++)
        if (ibs[i].state == IB_STARTING || ibs[i].state == IB_STOPPING)
            return 1;
    return 0;
}

/* Run what plugins post back until nothing is starting or stopping, or
 * the bound passes.  Returns 1 when settled. */
static int settle(void)
{
    int64_t deadline = now_monotonic_ms() + TEARDOWN_WAIT_MS;
    for (;;) {
        loop_drain();
        if (!any_busy())
            return 1;
        if (now_monotonic_ms() >= deadline)
            return 0;
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
    }
}

static void stop_inline(void *arg)
{
    stop_run(arg);
}

void bindings_free(void)
{
    stopping = 1;
    if (health_timer)
        event_free(health_timer);
    health_timer = NULL;
    /* The worker pool is gone by now: whatever still reads is stopped
     * here, on this thread, and waited for, so that no plugin thread calls
     * the handler once the bindings are freed. */
    int settled = settle();
    for (size_t i = 0; settled && i < n_ibs; i++) {
        struct ib *b = &ibs[i];
        if (b->state != IB_RUNNING)
            continue;
        struct op_job *j = xcalloc(1, sizeof *j);
        j->b = b;
        b->state = IB_STOPPING;
        ops_running++;
        atomic_fetch_add(&b->comp->inflight, 1);
        stop_inline(j);
    }
    if (settled)
        settled = settle();
    /* Deliveries still at the app can no longer be answered: the app
     * channel is closed. */
    while (!LIST_EMPTY(&at_app)) {
        struct delivery *d = LIST_FIRST(&at_app);
        LIST_REMOVE(d, link);
        d->b->inflight--;
        total_inflight--;
        delivery_finish(d, DAPR_ERR_UNAVAILABLE, "daprd is shutting down", NULL, 0);
    }
    while (!LIST_EMPTY(&probes))
        probe_free(LIST_FIRST(&probes));
    if (!settled) {
        /* A plugin did not confirm its stop: it may still call the
         * handler, so the bindings stay allocated (a leak, not a crash). */
        log_error(SCOPE, "an input binding did not stop within %d ms", TEARDOWN_WAIT_MS);
        return;
    }
    for (size_t i = 0; i < n_ibs; i++) {
        free(ibs[i].route);
        free(ibs[i].uri);
    }
    free(ibs);
    ibs = NULL;
    n_ibs = 0;
}
