/*
 * app_channel.c - the channel to the sidecar's own app.
 */
#include "config.h"
#include "app_channel.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "tracing.h"
#include "util.h"

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SCOPE "dapr.runtime.channel"
#define APP_QUEUE_MAX 1024          /* requests waiting for a free slot */
#define APP_UNLIMITED_CONNS 512     /* pool size when concurrency is unlimited */
#define APP_TIMEOUT_MS (300 * 1000) /* no Dapr default; resiliency policies come later */

static app_channel_opts opt;
static http_pool *pool, *probe_pool;
static int healthy = 1;
static int consecutive_failures;
static struct event *wait_timer, *probe_timer;
static struct bufferevent *wait_bev;
static void (*on_ready)(void);
static struct sockaddr_storage app_addr;
static int app_addr_len;
static int waited_ms;

int app_channel_init(const app_channel_opts *o)
{
    opt = *o;
    if (!opt.port)
        return 0;
    if (strcmp(opt.protocol, "http") != 0 && strcmp(opt.protocol, "https") != 0) {
        fprintf(stderr, "daprd: --app-protocol %s is not supported (http or https)\n", opt.protocol);
        return -1;
    }
    /* The address is resolved once: start-up may block on DNS, serving
     * never does. */
    struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", opt.port);
    if (evutil_getaddrinfo(opt.address, port, &hints, &res) != 0 || !res) {
        fprintf(stderr, "daprd: --app-channel-address %s cannot be resolved\n", opt.address);
        return -1;
    }
    memcpy(&app_addr, res->ai_addr, res->ai_addrlen);
    app_addr_len = (int)res->ai_addrlen;
    evutil_freeaddrinfo(res);
    size_t conns = opt.max_concurrency > 0 ? (size_t)opt.max_concurrency : APP_UNLIMITED_CONNS;
    int tls = strcmp(opt.protocol, "https") == 0;
    pool = http_pool_new(opt.address, opt.port, tls, conns, APP_QUEUE_MAX, APP_TIMEOUT_MS, 0);
    if (opt.health_check)
        probe_pool = http_pool_new(opt.address, opt.port, tls, 1, 1, opt.health_timeout_ms, 64 * 1024);
    return 0;
}

int app_channel_enabled(void) { return pool != NULL; }
int app_channel_healthy(void) { return healthy; }
int app_channel_max_concurrency(void) { return opt.max_concurrency; }

/* ---- waiting for the app port -------------------------------------------- */

static void try_connect(evutil_socket_t fd, short what, void *arg);

static void connect_event(struct bufferevent *bev, short events, void *arg)
{
    (void)arg;
    bufferevent_free(bev);
    wait_bev = NULL;
    if (events & BEV_EVENT_CONNECTED) {
        log_info(SCOPE, "application discovered on port %d", opt.port);
        event_free(wait_timer);
        wait_timer = NULL;
        on_ready();
        return;
    }
    if (waited_ms > 0 && waited_ms % 5000 == 0)
        log_info(SCOPE, "waiting for the application to listen on port %d", opt.port);
    struct timeval tv = {0, 100000};
    waited_ms += 100;
    evtimer_add(wait_timer, &tv);
}

static void try_connect(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what; (void)arg;
    wait_bev = bufferevent_socket_new(loop_base(), -1, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(wait_bev, NULL, NULL, connect_event, NULL);
    if (bufferevent_socket_connect(wait_bev, (struct sockaddr *)&app_addr, app_addr_len) != 0) {
        bufferevent_free(wait_bev);
        wait_bev = NULL;
        struct timeval tv = {0, 100000};
        evtimer_add(wait_timer, &tv);
    }
}

/* ---- health probes ----------------------------------------------------------- */

static void probe_done(void *arg, const http_response *r)
{
    (void)arg;
    int ok = r->status >= 200 && r->status < 300;
    if (ok) {
        if (!healthy)
            log_info(SCOPE, "application is healthy again");
        healthy = 1;
        consecutive_failures = 0;
        return;
    }
    if (++consecutive_failures >= opt.health_threshold && healthy) {
        healthy = 0;
        log_warn(SCOPE, "application is unhealthy: %d probes of %s failed (last: %s)", consecutive_failures,
                 opt.health_path, r->status ? "non-2xx status" : r->error);
    }
}

static void probe(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what; (void)arg;
    /* Probes carry no API token (reference §1.4). */
    if (http_pool_active(probe_pool) == 0)
        http_pool_send(probe_pool, EVHTTP_REQ_GET, opt.health_path, NULL, NULL, probe_done, NULL);
}

void app_channel_wait_for_app(void (*ready)(void))
{
    on_ready = ready;
    if (!pool) {
        ready();
        return;
    }
    if (opt.health_check) {
        struct timeval tv = {.tv_sec = (time_t)(opt.health_interval_ms / 1000),
                             .tv_usec = (suseconds_t)((opt.health_interval_ms % 1000) * 1000)};
        probe_timer = event_new(loop_base(), -1, EV_PERSIST, probe, NULL);
        event_add(probe_timer, &tv);
    }
    wait_timer = evtimer_new(loop_base(), try_connect, NULL);
    try_connect(-1, 0, NULL);
}

/* dapr_http_client_*: the caller's callback wrapped to see the outcome. */
struct metered {
    http_response_cb cb;
    void *arg;
    struct timespec started;
    enum evhttp_cmd_type method;
    size_t sent;
    char uri[];
};

static void metered_done(void *arg, const http_response *r)
{
    struct metered *m = arg;
    static const struct { enum evhttp_cmd_type m; const char *name; } names[] = {
        {EVHTTP_REQ_GET, "GET"}, {EVHTTP_REQ_POST, "POST"}, {EVHTTP_REQ_PUT, "PUT"},
        {EVHTTP_REQ_DELETE, "DELETE"}, {EVHTTP_REQ_PATCH, "PATCH"}, {EVHTTP_REQ_OPTIONS, "OPTIONS"},
        {EVHTTP_REQ_HEAD, "HEAD"}};
    const char *method = "";
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].m == m->method)
            method = names[i].name;
    metrics_http_client(method, m->uri, r->status, m->sent, r->body ? evbuffer_get_length(r->body) : 0,
                        metrics_elapsed_ms(&m->started, NULL));
    m->cb(m->arg, r);
    free(m);
}

int app_channel_send(enum evhttp_cmd_type method, const char *uri, struct evkeyvalq *headers,
                     struct evbuffer *body, http_response_cb cb, void *arg)
{
    if (opt.app_token && *opt.app_token) {
        evhttp_remove_header(headers, "dapr-api-token");
        evhttp_add_header(headers, "dapr-api-token", opt.app_token);
    }
    void *traced = tracing_app_call_begin(method, uri, headers, &cb, &arg); /* a CLIENT span */
    if (!metrics_enabled()) {
        if (http_pool_send(pool, method, uri, headers, body, cb, arg) != 0) {
            tracing_app_call_cancel(traced);
            return -1;
        }
        return 0;
    }
    size_t ulen = strlen(uri);
    struct metered *m = xmalloc(sizeof *m + ulen + 1);
    m->cb = cb;
    m->arg = arg;
    m->method = method;
    m->sent = body ? evbuffer_get_length(body) : 0;
    memcpy(m->uri, uri, ulen + 1);
    clock_gettime(CLOCK_MONOTONIC, &m->started);
    if (http_pool_send(pool, method, uri, headers, body, metered_done, m) != 0) {
        free(m);
        tracing_app_call_cancel(traced);
        return -1;
    }
    return 0;
}

json_t *app_channel_metadata(void)
{
    if (!pool)
        return NULL;
    json_t *o = json_pack("{s:i, s:s, s:s}", "port", opt.port, "protocol", opt.protocol,
                          "channelAddress", opt.address);
    if (opt.max_concurrency > 0)
        json_object_set_new(o, "maxConcurrency", json_integer(opt.max_concurrency));
    if (opt.health_check) {
        char interval[32], timeout[32];
        snprintf(interval, sizeof interval, "%gs", (double)opt.health_interval_ms / 1000);
        snprintf(timeout, sizeof timeout, "%lldms", (long long)opt.health_timeout_ms);
        json_object_set_new(o, "health",
                            json_pack("{s:s, s:s, s:s, s:i, s:s}", "healthCheckPath", opt.health_path,
                                      "healthProbeInterval", interval, "healthProbeTimeout", timeout,
                                      "healthThreshold", opt.health_threshold,
                                      "healthStatus", healthy ? "HEALTHY" : "UNHEALTHY"));
    }
    return o;
}

void app_channel_free(void)
{
    if (wait_bev) bufferevent_free(wait_bev);
    if (wait_timer) event_free(wait_timer);
    if (probe_timer) event_free(probe_timer);
    wait_bev = NULL;
    wait_timer = probe_timer = NULL;
    http_pool_free(pool);
    http_pool_free(probe_pool);
    pool = probe_pool = NULL;
}

int app_channel_cancel(const void *tag)
{
    return http_pool_cancel(pool, tag);
}
